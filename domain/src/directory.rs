//! The national directory as the gateway federates it: entries parsed at the boundary, the
//! publisher's operations, and what one change means to one partner's view.
//!
//! How the change feed stays exact: every committed change records where its entry stood for
//! scoping before and after it ([`EntryState`]: which ODS organisation, hidden or not, or
//! absent). For a partner's [`AddressBookView`], a change whose after-state is in the view
//! sends the entry (as it is now); one whose before-state was in the view but whose
//! after-state is not sends a delete with the reason; any other change is none of the
//! partner's business and is never sent (not even as a delete, which would tell them an id
//! exists). Consecutive changes of one entry chain (one's after-state is the next one's
//! before-state), so replaying the changes after any position onto the view at that position
//! ends in exactly the view of the current directory.

use std::collections::HashMap;

use uuid::Uuid;

use crate::agreement::{AddressBookAttribute, AddressBookScope, OdsSelection};
use crate::contact::EmailAddress;
use crate::ods::OdsCode;
use crate::text::bounded_text;
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

/// The most operations one publisher batch may carry.
pub const MAX_BATCH: usize = 10_000;

/// A directory entry's stable identifier (like LDAP's entryUUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(Uuid);

impl EntryId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    pub fn parse(raw: &str) -> Result<Self, RuleViolation> {
        Uuid::parse_str(raw.trim())
            .map(Self)
            .map_err(|_| RuleViolation::new("uuid", "must be a UUID"))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The national organisation an entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOrganisation {
    pub ods_code: OdsCode,
    pub name: String,
}

/// One person or mailbox in the national address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub id: EntryId,
    /// Unique among entries that are not deleted.
    pub email: EmailAddress,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub organisation: EntryOrganisation,
    pub office_phone: Option<String>,
    pub mobile_phone: Option<String>,
    /// Never shown to any partner (Exchange's `HiddenFromAddressListsEnabled`).
    pub hidden_from_address_book: bool,
}

impl DirectoryEntry {
    pub fn state(&self) -> EntryState {
        EntryState::Present {
            ods_code: self.organisation.ods_code.clone(),
            hidden: self.hidden_from_address_book,
        }
    }
}

/// An entry as the publisher sends it, before its rules are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryForm {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub ods_code: String,
    pub organisation_name: String,
    pub office_phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub hidden_from_address_book: bool,
}

/// An operation as the publisher sends it.
// Nearly every item is an upsert: boxing the entry would add an allocation to each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationForm {
    Upsert(EntryForm),
    Delete { id: String },
}

/// A checked operation.
// Nearly every item is an upsert: boxing the entry would add an allocation to each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryOperation {
    /// Creates the entry, or replaces it whole (a deleted entry comes back).
    Upsert(DirectoryEntry),
    /// Deletes the entry (a tombstone stays for the feed's retention); deleting an unknown or
    /// deleted entry changes nothing.
    Delete(EntryId),
}

impl DirectoryOperation {
    pub fn id(&self) -> EntryId {
        match self {
            Self::Upsert(entry) => entry.id,
            Self::Delete(id) => *id,
        }
    }
}

const NAME_MAX: usize = 256;
const PHONE_MAX: usize = 64;

fn optional_text(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &Option<String>,
    max: usize,
) -> Option<Option<String>> {
    match raw {
        None => Some(None),
        Some(text) if text.trim().is_empty() => {
            errors.push(FieldError::new(
                field,
                "not_blank",
                "must not be blank: send null for no value",
            ));
            None
        }
        Some(text) => errors
            .check(field, bounded_text(text, 1, max, false))
            .map(Some),
    }
}

fn phone(
    errors: &mut ValidationErrors,
    field: &str,
    raw: &Option<String>,
) -> Option<Option<String>> {
    let value = optional_text(errors, field, raw, PHONE_MAX)?;
    if let Some(number) = &value {
        let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c) || c == 'x';
        if !number.chars().all(allowed) || !number.chars().any(|c| c.is_ascii_digit()) {
            errors.push(FieldError::new(
                field,
                "phone",
                "must be a telephone number: digits, spaces and + - ( ) . x",
            ));
            return None;
        }
    }
    Some(value)
}

impl EntryForm {
    /// Checks every rule; the errors name each field.
    pub fn parse(&self) -> Result<DirectoryEntry, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let id = errors.check("id", EntryId::parse(&self.id));
        let email = errors.check("email", EmailAddress::parse(&self.email));
        let display_name = errors.check(
            "display_name",
            bounded_text(&self.display_name, 1, NAME_MAX, false),
        );
        let given_name = optional_text(&mut errors, "given_name", &self.given_name, NAME_MAX);
        let surname = optional_text(&mut errors, "surname", &self.surname, NAME_MAX);
        let job_title = optional_text(&mut errors, "job_title", &self.job_title, NAME_MAX);
        let department = optional_text(&mut errors, "department", &self.department, NAME_MAX);
        let ods_code = errors.check("organisation.ods_code", OdsCode::parse(&self.ods_code));
        let organisation_name = errors.check(
            "organisation.name",
            bounded_text(&self.organisation_name, 1, NAME_MAX, false),
        );
        let office_phone = phone(&mut errors, "office_phone", &self.office_phone);
        let mobile_phone = phone(&mut errors, "mobile_phone", &self.mobile_phone);
        errors.finish(|| {
            Some(DirectoryEntry {
                id: id?,
                email: email?,
                display_name: display_name?,
                given_name: given_name?,
                surname: surname?,
                job_title: job_title?,
                department: department?,
                organisation: EntryOrganisation {
                    ods_code: ods_code?,
                    name: organisation_name?,
                },
                office_phone: office_phone?,
                mobile_phone: mobile_phone?,
                hidden_from_address_book: self.hidden_from_address_book,
            })
        })
    }
}

impl OperationForm {
    pub fn parse(&self) -> Result<DirectoryOperation, ValidationErrors> {
        match self {
            Self::Upsert(form) => form
                .parse()
                .map(DirectoryOperation::Upsert)
                .map_err(|e| ValidationErrors(e.0.into_iter().map(|f| f.under("entry")).collect())),
            Self::Delete { id } => EntryId::parse(id)
                .map(DirectoryOperation::Delete)
                .map_err(|v| ValidationErrors(vec![v.at("id")])),
        }
    }
}

/// A checked batch: at most one operation per entry (the last one the publisher sent for it,
/// since a batch applies in order and only its end state is ever visible), in first-seen order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryBatch {
    pub operations: Vec<DirectoryOperation>,
    /// For each kept operation, its index in what the publisher sent (for error messages).
    pub indexes: Vec<usize>,
}

impl DirectoryBatch {
    /// Checks every operation (errors under `operations[i]`), the batch size, and that no two
    /// entries of the batch's end state share an email address.
    pub fn parse(forms: &[OperationForm]) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if forms.is_empty() {
            errors.push(FieldError::new(
                "operations",
                "min_items",
                "must hold at least one operation",
            ));
        }
        if forms.len() > MAX_BATCH {
            errors.push(FieldError::new(
                "operations",
                "max_items",
                format!(
                    "must hold at most {MAX_BATCH} operations (got {})",
                    forms.len()
                ),
            ));
            return Err(errors);
        }
        let mut slot: HashMap<EntryId, usize> = HashMap::new();
        let mut operations: Vec<DirectoryOperation> = Vec::new();
        let mut indexes = Vec::new();
        for (i, form) in forms.iter().enumerate() {
            if let Some(operation) = errors.nested(&format!("operations[{i}]"), form.parse()) {
                match slot.get(&operation.id()) {
                    Some(&at) => {
                        operations[at] = operation;
                        indexes[at] = i;
                    }
                    None => {
                        slot.insert(operation.id(), operations.len());
                        operations.push(operation);
                        indexes.push(i);
                    }
                }
            }
        }
        // Emails compare without regard to case, as mailboxes do.
        let mut emails: HashMap<String, usize> = HashMap::new();
        for (operation, &i) in operations.iter().zip(&indexes) {
            if let DirectoryOperation::Upsert(entry) = operation {
                if let Some(first) = emails.insert(entry.email.as_str().to_lowercase(), i) {
                    errors.push(FieldError::new(
                        format!("operations[{}].entry.email", first.max(i)),
                        "email_unique",
                        format!(
                            "another entry of this batch (operations[{}]) has the same email address",
                            first.min(i)
                        ),
                    ));
                }
            }
        }
        errors.finish(|| {
            Some(Self {
                operations,
                indexes,
            })
        })
    }

    /// The index the publisher gave the operation on `id`.
    pub fn index_of(&self, id: EntryId) -> Option<usize> {
        self.operations
            .iter()
            .position(|op| op.id() == id)
            .map(|at| self.indexes[at])
    }
}

/// Where an entry stands for scoping: what a change records of its entry before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Not in the directory (never was, or deleted).
    Absent,
    Present {
        ods_code: OdsCode,
        hidden: bool,
    },
}

/// One committed change, at its feed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedChange {
    pub position: i64,
    pub entry: EntryId,
    pub before: EntryState,
    pub after: EntryState,
}

/// Why an entry left a partner's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    Deleted,
    /// Moved to an organisation the agreement does not cover.
    LeftScope,
    Hidden,
}

impl RemovalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::LeftScope => "left_scope",
            Self::Hidden => "hidden",
        }
    }
}

/// What a partner is told.
// Nearly every item is an upsert: boxing the entry would add an allocation to each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// The entry as it is now (the edge sends only the granted attributes).
    Upsert(DirectoryEntry),
    Delete {
        id: EntryId,
        reason: RemovalReason,
    },
}

/// One partner's view of the directory: the organisations its agreement covers (never hidden
/// entries) and the attributes it grants (`id` and `email` always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBookView {
    pub organisations: OdsSelection,
    /// Sorted, without repeats.
    pub attributes: Vec<AddressBookAttribute>,
}

impl AddressBookView {
    pub fn of(scope: &AddressBookScope) -> Self {
        Self {
            organisations: scope.organisations.clone(),
            attributes: scope.attributes.clone(),
        }
    }

    /// Whether an entry standing at `state` is in the view.
    pub fn lists(&self, state: &EntryState) -> bool {
        match state {
            EntryState::Absent => false,
            EntryState::Present { ods_code, hidden } => {
                !hidden && self.organisations.covers(ods_code)
            }
        }
    }

    pub fn grants(&self, attribute: AddressBookAttribute) -> bool {
        self.attributes.binary_search(&attribute).is_ok()
    }

    /// A stable text naming exactly this view (for binding cursors to it).
    pub fn fingerprint(&self) -> String {
        let organisations = match &self.organisations {
            OdsSelection::All => "*".to_owned(),
            OdsSelection::Only(codes) => codes
                .iter()
                .map(OdsCode::as_str)
                .collect::<Vec<_>>()
                .join(","),
        };
        let attributes = self
            .attributes
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",");
        format!("ods={organisations};attributes={attributes}")
    }

    /// What `change` tells this view, given the entry as it is now (`None`: absent now).
    pub fn item(&self, change: &FeedChange, now: Option<DirectoryEntry>) -> Option<FeedItem> {
        if self.lists(&change.after) {
            // The entry as it is now, if it is still in the view; if it is not, a later change
            // took it out and will say so.
            return now
                .filter(|entry| {
                    !entry.hidden_from_address_book
                        && self.organisations.covers(&entry.organisation.ods_code)
                })
                .map(FeedItem::Upsert);
        }
        if self.lists(&change.before) {
            let reason = match &change.after {
                EntryState::Absent => RemovalReason::Deleted,
                EntryState::Present { hidden: true, .. } => RemovalReason::Hidden,
                EntryState::Present { .. } => RemovalReason::LeftScope,
            };
            return Some(FeedItem::Delete {
                id: change.entry,
                reason,
            });
        }
        None
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub upserted: u64,
    pub deleted: u64,
    /// Operations that changed nothing (an identical upsert, a delete of an absent entry).
    pub unchanged: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn form(n: u32, ods: &str) -> EntryForm {
        EntryForm {
            id: Uuid::from_u128(u128::from(n)).to_string(),
            email: format!("person{n}@nhs.net"),
            display_name: format!("Person {n}"),
            given_name: Some("Ada".into()),
            surname: Some(format!("Surname{n}")),
            job_title: None,
            department: None,
            ods_code: ods.into(),
            organisation_name: "Leeds Teaching Hospitals NHS Trust".into(),
            office_phone: Some("+44 113 243 3144".into()),
            mobile_phone: None,
            hidden_from_address_book: false,
        }
    }

    #[test]
    fn entries_name_every_broken_field() {
        let mut bad = form(1, "r!8");
        bad.id = "not-a-uuid".into();
        bad.email = "nobody".into();
        bad.surname = Some("  ".into());
        bad.office_phone = Some("call me".into());
        let errors = OperationForm::Upsert(bad).parse().unwrap_err();
        let fields: Vec<(&str, &str)> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.rule))
            .collect();
        assert_eq!(
            fields,
            [
                ("entry.id", "uuid"),
                ("entry.email", "email"),
                ("entry.surname", "not_blank"),
                ("entry.organisation.ods_code", "alphanumeric"),
                ("entry.office_phone", "phone"),
            ]
        );
    }

    #[test]
    fn a_batch_keeps_the_last_operation_per_entry_and_refuses_shared_emails() {
        let a = OperationForm::Upsert(form(1, "RR8"));
        let delete_a = OperationForm::Delete {
            id: form(1, "RR8").id,
        };
        let b = OperationForm::Upsert(form(2, "RR8"));
        let batch = DirectoryBatch::parse(&[a.clone(), b.clone(), delete_a]).unwrap();
        assert_eq!(batch.operations.len(), 2);
        assert!(matches!(batch.operations[0], DirectoryOperation::Delete(_)));
        assert_eq!(batch.indexes, [2, 1]);

        let mut clash = form(3, "RR8");
        clash.email = "person1@nhs.net".into();
        let errors = DirectoryBatch::parse(&[a, OperationForm::Upsert(clash)]).unwrap_err();
        assert_eq!(errors.0[0].field, "operations[1].entry.email");
        assert_eq!(errors.0[0].rule, "email_unique");
        let errors = DirectoryBatch::parse(&[]).unwrap_err();
        assert_eq!(errors.0[0].rule, "min_items");
        let many = vec![b; MAX_BATCH + 1];
        assert_eq!(
            DirectoryBatch::parse(&many).unwrap_err().0[0].rule,
            "max_items"
        );
    }

    fn view(codes: &[&str]) -> AddressBookView {
        let mut codes: Vec<OdsCode> = codes.iter().map(|c| OdsCode::parse(c).unwrap()).collect();
        codes.sort();
        AddressBookView {
            organisations: OdsSelection::Only(codes),
            attributes: vec![AddressBookAttribute::DisplayName],
        }
    }

    fn present(ods: &str, hidden: bool) -> EntryState {
        EntryState::Present {
            ods_code: OdsCode::parse(ods).unwrap(),
            hidden,
        }
    }

    #[test]
    fn changes_become_upserts_deletes_with_reasons_or_nothing() {
        let v = view(&["RR8"]);
        let entry = form(1, "RR8").parse().unwrap();
        let change = |before, after| FeedChange {
            position: 1,
            entry: entry.id,
            before,
            after,
        };
        let upsert = v.item(
            &change(EntryState::Absent, present("RR8", false)),
            Some(entry.clone()),
        );
        assert_eq!(upsert, Some(FeedItem::Upsert(entry.clone())));
        // In the view after the change, but out of it now: a later change says so.
        let mut moved = entry.clone();
        moved.organisation.ods_code = OdsCode::parse("RAE").unwrap();
        assert_eq!(
            v.item(
                &change(EntryState::Absent, present("RR8", false)),
                Some(moved)
            ),
            None
        );
        let reason = |after| match v.item(&change(present("RR8", false), after), None) {
            Some(FeedItem::Delete { reason, .. }) => Some(reason),
            _ => None,
        };
        assert_eq!(reason(EntryState::Absent), Some(RemovalReason::Deleted));
        assert_eq!(reason(present("RR8", true)), Some(RemovalReason::Hidden));
        assert_eq!(
            reason(present("RAE", false)),
            Some(RemovalReason::LeftScope)
        );
        // Changes outside the view tell the partner nothing, not even that the id exists.
        assert_eq!(
            v.item(&change(present("RAE", false), EntryState::Absent), None),
            None
        );
        assert_eq!(
            v.item(&change(present("RR8", true), EntryState::Absent), None),
            None
        );
    }

    #[test]
    fn views_have_stable_fingerprints() {
        assert_eq!(
            view(&["RR8", "AB1"]).fingerprint(),
            "ods=AB1,RR8;attributes=display_name"
        );
        assert_ne!(
            view(&["RR8"]).fingerprint(),
            view(&["RR8", "AB1"]).fingerprint()
        );
    }
}
