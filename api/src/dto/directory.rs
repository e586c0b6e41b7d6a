//! The national directory on the wire: the publisher's batches (and the import file's lines,
//! which are the same operations) and the partners' sync pages.

use gateway_domain::agreement::AddressBookAttribute as Attr;
use gateway_domain::directory::{
    AddressBookView, DirectoryEntry, EntryForm, FeedItem, OperationForm,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The national organisation an entry belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryOrganisation {
    /// ODS code, e.g. `RR8` (3 to 10 letters and digits).
    #[schema(
        min_length = 3,
        max_length = 10,
        pattern = "^\\s*[A-Za-z0-9]{3,10}\\s*$"
    )]
    pub ods_code: String,
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
}

/// A whole directory entry as the publisher sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntryBody {
    /// Stable UUID (like LDAP's entryUUID).
    #[schema(format = Uuid)]
    pub id: String,
    /// Unique among entries that are not deleted.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 256)]
    pub display_name: String,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub given_name: Option<String>,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub surname: Option<String>,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub job_title: Option<String>,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub department: Option<String>,
    pub organisation: EntryOrganisation,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 64)]
    pub office_phone: Option<String>,
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, min_length = 1, max_length = 64)]
    pub mobile_phone: Option<String>,
    /// Never shown to any partner.
    pub hidden_from_address_book: bool,
}

/// A field that must be present, though it may be null: an upsert replaces the whole entry,
/// so a field left out would silently clear what the entry had.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::deserialize(d)
}

/// The most operations a batch may hold.
pub const MAX_OPERATIONS: usize = gateway_domain::directory::MAX_BATCH;

/// Reads at most `MAX_OPERATIONS` operations, refusing the batch at the next one, so an
/// oversized body is never held whole in memory.
fn bounded_operations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<DirectoryOperationBody>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<DirectoryOperationBody>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_OPERATIONS} operations")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut operations =
                Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_OPERATIONS));
            while let Some(operation) = seq.next_element()? {
                if operations.len() == MAX_OPERATIONS {
                    return Err(serde::de::Error::custom(format!(
                        "a batch holds at most {MAX_OPERATIONS} operations"
                    )));
                }
                operations.push(operation);
            }
            Ok(operations)
        }
    }
    d.deserialize_seq(Bounded)
}

/// One operation: a whole entry to create or replace, or an entry to delete.
// Nearly every item is an upsert: boxing the entry would add an allocation to each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DirectoryOperationBody {
    Upsert {
        entry: DirectoryEntryBody,
    },
    Delete {
        #[schema(format = Uuid)]
        id: String,
    },
}

/// Read as a plain object rather than serde's internally tagged enum, which buffers the
/// operation and so loses the path of an error inside it: a missing field is then named
/// `operations[3].entry.surname`, not `operations[3].surname`.
impl<'de> Deserialize<'de> for DirectoryOperationBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Op {
            Upsert,
            Delete,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Flat {
            op: Op,
            entry: Option<DirectoryEntryBody>,
            id: Option<String>,
        }
        match Flat::deserialize(d)? {
            Flat {
                op: Op::Upsert,
                id: Some(_),
                ..
            } => Err(D::Error::unknown_field("id", &["op", "entry"])),
            Flat {
                op: Op::Upsert,
                entry: None,
                ..
            } => Err(D::Error::missing_field("entry")),
            Flat {
                op: Op::Upsert,
                entry: Some(entry),
                ..
            } => Ok(Self::Upsert { entry }),
            Flat {
                op: Op::Delete,
                entry: Some(_),
                ..
            } => Err(D::Error::unknown_field("entry", &["op", "id"])),
            Flat {
                op: Op::Delete,
                id: None,
                ..
            } => Err(D::Error::missing_field("id")),
            Flat {
                op: Op::Delete,
                id: Some(id),
                ..
            } => Ok(Self::Delete { id }),
        }
    }
}

impl From<DirectoryOperationBody> for OperationForm {
    fn from(body: DirectoryOperationBody) -> Self {
        match body {
            DirectoryOperationBody::Upsert { entry } => OperationForm::Upsert(EntryForm {
                id: entry.id,
                email: entry.email,
                display_name: entry.display_name,
                given_name: entry.given_name,
                surname: entry.surname,
                job_title: entry.job_title,
                department: entry.department,
                ods_code: entry.organisation.ods_code,
                organisation_name: entry.organisation.name,
                office_phone: entry.office_phone,
                mobile_phone: entry.mobile_phone,
                hidden_from_address_book: entry.hidden_from_address_book,
            }),
            DirectoryOperationBody::Delete { id } => OperationForm::Delete { id },
        }
    }
}

/// A batch of directory changes, applied all or nothing, in order (only the batch's end
/// state is ever visible).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operations": [
    {"op": "upsert", "entry": {"id": "6f1c2a7e-0000-4000-8000-000000000001",
        "email": "ada.lovelace@nhs.net", "display_name": "Ada Lovelace", "given_name": "Ada",
        "surname": "Lovelace", "job_title": "Staff Nurse", "department": "Cardiology",
        "organisation": {"ods_code": "RR8", "name": "Leeds Teaching Hospitals NHS Trust"},
        "office_phone": "0113 243 3144", "mobile_phone": null, "hidden_from_address_book": false}},
    {"op": "delete", "id": "6f1c2a7e-0000-4000-8000-000000000002"}
]}))]
pub struct DirectoryChangesRequest {
    #[serde(deserialize_with = "bounded_operations")]
    #[schema(min_items = 1, max_items = 10000)]
    pub operations: Vec<DirectoryOperationBody>,
}

/// What a batch did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectoryChangesResponse {
    pub operations: u64,
    pub upserted: u64,
    pub deleted: u64,
    /// Operations that changed nothing (an identical upsert, a delete of an absent entry).
    pub unchanged: u64,
}

/// Paging through the address book.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AddressBookQuery {
    /// From the previous page's `next_cursor`; without one, a snapshot of your whole view
    /// begins (its first page says `reset: true`).
    pub cursor: Option<String>,
    /// Items per page: default 1000, at most 5000.
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<i64>,
}

/// An entry as a partner sees it: `id` and `email` always, the other attributes only when the
/// agreement grants them (a granted attribute with no value is `null`; one not granted is
/// absent).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerEntry {
    pub id: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub given_name: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub surname: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub job_title: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub department: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<EntryOrganisation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub office_phone: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub mobile_phone: Option<Option<String>>,
}

impl PartnerEntry {
    /// Only what `view` grants of `entry`.
    pub fn of(view: &AddressBookView, entry: DirectoryEntry) -> Self {
        let granted = |attr: Attr, value: Option<String>| view.grants(attr).then_some(value);
        Self {
            id: entry.id.to_string(),
            email: entry.email.as_str().to_owned(),
            display_name: view.grants(Attr::DisplayName).then_some(entry.display_name),
            given_name: granted(Attr::GivenName, entry.given_name),
            surname: granted(Attr::Surname, entry.surname),
            job_title: granted(Attr::JobTitle, entry.job_title),
            department: granted(Attr::Department, entry.department),
            organisation: view.grants(Attr::Organisation).then(|| EntryOrganisation {
                ods_code: entry.organisation.ods_code.as_str().to_owned(),
                name: entry.organisation.name,
            }),
            office_phone: granted(Attr::OfficePhone, entry.office_phone),
            mobile_phone: granted(Attr::MobilePhone, entry.mobile_phone),
        }
    }
}

/// Why an entry left your view.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    Deleted,
    LeftScope,
    Hidden,
}

/// One item of a page: an entry to store (replacing any copy with its id), or an id to remove.
// Nearly every item is an upsert: boxing the entry would add an allocation to each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SyncItem {
    Upsert { entry: PartnerEntry },
    Delete { id: String, reason: RemovalReason },
}

impl SyncItem {
    pub fn of(view: &AddressBookView, item: FeedItem) -> Self {
        match item {
            FeedItem::Upsert(entry) => Self::Upsert {
                entry: PartnerEntry::of(view, entry),
            },
            FeedItem::Delete { id, reason } => Self::Delete {
                id: id.to_string(),
                reason: match reason {
                    gateway_domain::directory::RemovalReason::Deleted => RemovalReason::Deleted,
                    gateway_domain::directory::RemovalReason::LeftScope => RemovalReason::LeftScope,
                    gateway_domain::directory::RemovalReason::Hidden => RemovalReason::Hidden,
                },
            },
        }
    }
}

/// One page of your view: a snapshot page, or changes since your cursor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AddressBookPage {
    pub items: Vec<SyncItem>,
    /// Where to continue: always present; keep it, and ask again later for new changes.
    pub next_cursor: String,
    /// More items are waiting now: ask again at once with `next_cursor`.
    pub has_more: bool,
    /// The first page of a snapshot: discard any local copy before applying it.
    pub reset: bool,
}
