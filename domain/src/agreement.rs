//! Partner agreements: what an organisation asks for (scopes, term, signatory), its signature,
//! the review lifecycle, and the grants an approved agreement gives.

use std::fmt;

use chrono::{DateTime, Months, NaiveDate, Utc};
use uuid::Uuid;

use crate::contact::EmailAddress;
use crate::evidence::{string_enum, EvidenceSet};
use crate::exchange::ExchangeVersion;
use crate::ods::OdsCode;
use crate::organisation::{OrganisationId, Version};
use crate::text::{PersonName, Reason, ShortText};
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgreementId(Uuid);

impl AgreementId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for AgreementId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AgreementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_enum!(
    /// Where an agreement is in its lifecycle.
    AgreementState {
        Draft = "draft",
        Submitted = "submitted",
        Approved = "approved",
        Rejected = "rejected",
        Suspended = "suspended",
        Revoked = "revoked",
        Expired = "expired",
    }
);

impl AgreementState {
    /// Rejected, revoked and expired are final: a partner starts a new agreement instead.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Revoked | Self::Expired)
    }
}

string_enum!(
    /// What a reviewer (or the gateway) does to an agreement.
    Action {
        Check = "check",
        Approve = "approve",
        Reject = "reject",
        Suspend = "suspend",
        Reinstate = "reinstate",
        Revoke = "revoke",
    }
);

impl Action {
    /// The state the action leads to from `from`, or `None` when it is not allowed there.
    pub fn next_state(self, from: AgreementState) -> Option<AgreementState> {
        use AgreementState::*;
        match (self, from) {
            (Self::Check, Submitted) => Some(Submitted),
            (Self::Approve, Submitted) => Some(Approved),
            (Self::Reject, Submitted) => Some(Rejected),
            (Self::Suspend, Approved) => Some(Suspended),
            (Self::Reinstate, Suspended) => Some(Approved),
            (Self::Revoke, Approved | Suspended) => Some(Revoked),
            _ => None,
        }
    }

    pub fn needs_reason(self) -> bool {
        matches!(self, Self::Reject | Self::Suspend | Self::Revoke)
    }

    /// The reviewer role the action needs (checking is the reviewer's; the rest the approver's).
    pub fn role(self) -> crate::access::Role {
        match self {
            Self::Check => crate::access::Role::Reviewer,
            _ => crate::access::Role::Approver,
        }
    }
}

string_enum!(
    /// Directory entry attributes a partner may be granted (`id` and `email` always are).
    AddressBookAttribute {
        DisplayName = "display_name",
        GivenName = "given_name",
        Surname = "surname",
        JobTitle = "job_title",
        Department = "department",
        Organisation = "organisation",
        OfficePhone = "office_phone",
        MobilePhone = "mobile_phone",
    }
);

string_enum!(
    /// How much of a calendar a partner sees.
    FreeBusyDetail {
        AvailabilityOnly = "availability_only",
        LimitedDetails = "limited_details",
    }
);

/// Which national organisations' entries a scope covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OdsSelection {
    All,
    /// Sorted, without repeats.
    Only(Vec<OdsCode>),
}

impl OdsSelection {
    pub fn covers(&self, code: &OdsCode) -> bool {
        match self {
            Self::All => true,
            Self::Only(codes) => codes.binary_search(code).is_ok(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBookScope {
    /// Sorted, without repeats.
    pub attributes: Vec<AddressBookAttribute>,
    pub organisations: OdsSelection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeBusyScope {
    pub detail: FreeBusyDetail,
    pub organisations: OdsSelection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    pub address_book: Option<AddressBookScope>,
    pub free_busy: Option<FreeBusyScope>,
}

/// The agreement's term, both days included (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

impl Term {
    pub const MAX_MONTHS: u32 = 36;

    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let today = now.date_naive();
        self.starts_on <= today && today <= self.ends_on
    }

    pub fn ended(&self, now: DateTime<Utc>) -> bool {
        now.date_naive() > self.ends_on
    }
}

/// The named person who signs for the organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatory {
    pub name: PersonName,
    pub role: ShortText,
    pub email: EmailAddress,
}

/// A verified detached JWS over the agreement's signing payload, kept so anyone can verify
/// it again later, also after the key was rotated away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementSignature {
    /// The detached compact JWS (`header..signature`).
    pub jws: String,
    pub kid: String,
    pub alg: String,
    /// The signer's public JWK at signing time.
    pub jwk: serde_json::Value,
    /// The exact bytes signed (the canonical payload).
    pub payload: String,
    pub signed_at: DateTime<Utc>,
}

/// The first of the two people on an approval, bound to what they saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCheck {
    /// The reviewer's subject.
    pub by: String,
    pub at: DateTime<Utc>,
    /// The agreement's version right after the check: any later change voids the check.
    pub version: Version,
    /// The registration's version and the organisation's evidence as they stood (see
    /// `EvidenceSet::fingerprint`): a change to either voids the check.
    pub evidence: String,
}

/// Why a stored suspension happened; a lapse lifts itself once evidence is in order again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspensionCause {
    Reviewer,
    EvidenceLapsed,
}

impl SuspensionCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reviewer => "reviewer",
            Self::EvidenceLapsed => "evidence_lapsed",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "reviewer" => Some(Self::Reviewer),
            "evidence_lapsed" => Some(Self::EvidenceLapsed),
            _ => None,
        }
    }
}

/// An agreement template: its text is in the repository, its identity the SHA-256 of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementTemplate {
    pub version: String,
    pub title: String,
    /// Hex SHA-256 of `text`.
    pub sha256: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub id: AgreementId,
    pub organisation_id: OrganisationId,
    /// The template version name (e.g. `2026-11`) and its SHA-256.
    pub template_version: String,
    pub template_sha256: String,
    pub scopes: Scopes,
    pub term: Term,
    pub signatory: Signatory,
    pub state: AgreementState,
    /// The reason given with the last transition that needed one.
    pub state_reason: Option<Reason>,
    pub suspension: Option<SuspensionCause>,
    pub signature: Option<AgreementSignature>,
    pub check: Option<ReviewCheck>,
    /// Set on approval: whether `limited_details` was granted explicitly.
    pub limited_details_granted: bool,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The raw draft, as received; checked by [`AgreementDraft::parse`].
#[derive(Debug, Clone, Default)]
pub struct AgreementForm {
    pub template_version: String,
    pub address_book: Option<ScopeForm>,
    pub free_busy: Option<ScopeForm>,
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<NaiveDate>,
    pub signatory_name: String,
    pub signatory_role: String,
    pub signatory_email: String,
}

#[derive(Debug, Clone, Default)]
pub struct ScopeForm {
    pub attributes: Option<Vec<String>>,
    pub detail: Option<String>,
    /// `None` means "all organisations".
    pub organisations: Option<Vec<String>>,
}

/// A checked draft: everything the organisation chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementDraft {
    pub template_version: String,
    pub scopes: Scopes,
    pub term: Term,
    pub signatory: Signatory,
}

fn parse_selection(raw: Option<&[String]>) -> Result<OdsSelection, ValidationErrors> {
    let Some(raw) = raw else {
        return Ok(OdsSelection::All);
    };
    let mut errors = ValidationErrors::default();
    if raw.is_empty() || raw.len() > 1000 {
        errors.push(FieldError::new(
            "",
            "count",
            "must list 1 to 1000 ODS codes, or be left out for all organisations",
        ));
        return Err(errors);
    }
    let mut codes: Vec<OdsCode> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, c)| errors.check(&format!("[{i}]"), OdsCode::parse(c)))
        .collect();
    codes.sort();
    codes.dedup();
    errors.finish(|| Some(OdsSelection::Only(codes)))
}

impl AgreementDraft {
    /// Checks every rule; `templates` are the known template versions; `exchange` the
    /// organisation's current Exchange version.
    pub fn parse(
        form: &AgreementForm,
        templates: &[AgreementTemplate],
        exchange: &str,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let template = templates
            .iter()
            .find(|t| t.version == form.template_version);
        if template.is_none() {
            errors.push(FieldError::new(
                "template_version",
                "known_template",
                format!(
                    "must be one of the published templates: {}",
                    templates
                        .iter()
                        .map(|t| t.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if form.address_book.is_none() && form.free_busy.is_none() {
            errors.push(FieldError::new(
                "scopes",
                "at_least_one",
                "ask for address_book, free_busy or both",
            ));
        }
        let address_book = form.address_book.as_ref().and_then(|scope| {
            let mut inner = ValidationErrors::default();
            if let Err(violation) = exchange_supports_address_book(exchange) {
                inner.push(violation.at("exchange_version"));
            }
            if scope.detail.is_some() {
                inner.push(FieldError::new(
                    "detail",
                    "not_allowed",
                    "detail applies to free_busy only",
                ));
            }
            let mut attributes: Vec<AddressBookAttribute> = scope
                .attributes
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    inner.check(&format!("attributes[{i}]"), AddressBookAttribute::parse(a))
                })
                .collect();
            attributes.sort();
            attributes.dedup();
            let organisations = inner.nested(
                "organisations",
                parse_selection(scope.organisations.as_deref()),
            );
            errors.nested(
                "scopes.address_book",
                inner.finish(|| {
                    Some(AddressBookScope {
                        attributes,
                        organisations: organisations?,
                    })
                }),
            )
        });
        let free_busy = form.free_busy.as_ref().and_then(|scope| {
            let mut inner = ValidationErrors::default();
            if scope.attributes.is_some() {
                inner.push(FieldError::new(
                    "attributes",
                    "not_allowed",
                    "attributes apply to address_book only",
                ));
            }
            let detail = match scope.detail.as_deref() {
                None => Some(FreeBusyDetail::AvailabilityOnly),
                Some(raw) => inner.check("detail", FreeBusyDetail::parse(raw)),
            };
            let organisations = inner.nested(
                "organisations",
                parse_selection(scope.organisations.as_deref()),
            );
            errors.nested(
                "scopes.free_busy",
                inner.finish(|| {
                    Some(FreeBusyScope {
                        detail: detail?,
                        organisations: organisations?,
                    })
                }),
            )
        });
        let term = match (form.starts_on, form.ends_on) {
            (Some(starts_on), Some(ends_on)) => {
                let longest = starts_on.checked_add_months(Months::new(Term::MAX_MONTHS));
                if ends_on < starts_on {
                    errors.push(FieldError::new(
                        "term.ends_on",
                        "after_starts_on",
                        "must not be before term.starts_on",
                    ));
                    None
                } else if longest.is_none_or(|longest| ends_on > longest) {
                    errors.push(FieldError::new(
                        "term.ends_on",
                        "max_term",
                        "a term is at most 3 years",
                    ));
                    None
                } else {
                    Some(Term { starts_on, ends_on })
                }
            }
            (starts, ends) => {
                if starts.is_none() {
                    errors.push(FieldError::new("term.starts_on", "required", "is required"));
                }
                if ends.is_none() {
                    errors.push(FieldError::new("term.ends_on", "required", "is required"));
                }
                None
            }
        };
        let name = errors.check("signatory.name", PersonName::parse(&form.signatory_name));
        let role = errors.check("signatory.role", ShortText::parse(&form.signatory_role));
        let email = errors.check(
            "signatory.email",
            EmailAddress::parse(&form.signatory_email),
        );
        let has_scope = form.address_book.is_some() || form.free_busy.is_some();
        errors.finish(|| {
            let scopes = Scopes {
                address_book: if form.address_book.is_some() {
                    Some(address_book?)
                } else {
                    None
                },
                free_busy: if form.free_busy.is_some() {
                    Some(free_busy?)
                } else {
                    None
                },
            };
            has_scope.then_some(())?;
            Some(Self {
                template_version: template?.version.clone(),
                scopes,
                term: term?,
                signatory: Signatory {
                    name: name?,
                    role: role?,
                    email: email?,
                },
            })
        })
    }
}

/// Address-book federation needs Exchange 2010 or later: registration refuses older versions,
/// and the agreement checks the organisation's current one again.
/// It reads the version by name, so it also judges names that registration would refuse.
pub fn exchange_supports_address_book(version: &str) -> Result<(), RuleViolation> {
    match ExchangeVersion::parse(version) {
        Ok(_) => Ok(()),
        Err(_) => Err(RuleViolation::new(
            "address_book_needs_exchange_2010",
            format!("address-book federation needs Exchange 2010 or later; the organisation runs {version}"),
        )),
    }
}

impl Agreement {
    /// The state in force at `now`: a stored approved or suspended agreement whose term has
    /// ended is expired; an approved one whose required evidence lapsed is suspended; one
    /// suspended for a lapse is approved again once the evidence is back in order.
    pub fn effective_state(&self, evidence: EvidenceSet<'_>, now: DateTime<Utc>) -> AgreementState {
        match self.state {
            AgreementState::Approved | AgreementState::Suspended if self.term.ended(now) => {
                AgreementState::Expired
            }
            AgreementState::Approved if !evidence.required_in_order(now) => {
                AgreementState::Suspended
            }
            AgreementState::Suspended
                if self.suspension == Some(SuspensionCause::EvidenceLapsed)
                    && evidence.required_in_order(now) =>
            {
                AgreementState::Approved
            }
            state => state,
        }
    }

    /// The grant this agreement gives at `now`, if it gives one.
    pub fn grant(&self, evidence: EvidenceSet<'_>, now: DateTime<Utc>) -> Option<Grant> {
        if self.effective_state(evidence, now) != AgreementState::Approved
            || !self.term.contains(now)
        {
            return None;
        }
        Some(Grant {
            agreement_id: self.id,
            address_book: self.scopes.address_book.clone(),
            free_busy: self.scopes.free_busy.as_ref().map(|scope| FreeBusyScope {
                detail: if self.limited_details_granted {
                    scope.detail
                } else {
                    FreeBusyDetail::AvailabilityOnly
                },
                organisations: scope.organisations.clone(),
            }),
            ends_on: self.term.ends_on,
        })
    }
}

/// What an organisation may read at an instant: one approved agreement's scopes, with the
/// detail level actually granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub agreement_id: AgreementId,
    pub address_book: Option<AddressBookScope>,
    pub free_busy: Option<FreeBusyScope>,
    pub ends_on: NaiveDate,
}

impl Grant {
    /// The data scopes for access tokens.
    pub fn scopes(&self) -> Vec<crate::access::Scope> {
        let mut scopes = Vec::new();
        if self.address_book.is_some() {
            scopes.push(crate::access::Scope::AddressBookRead);
        }
        if self.free_busy.is_some() {
            scopes.push(crate::access::Scope::FreeBusyRead);
        }
        scopes
    }
}

/// The organisation's effective grant at `now`: from its one agreement in force, if any.
pub fn effective_grant(
    agreements: &[Agreement],
    evidence: EvidenceSet<'_>,
    now: DateTime<Utc>,
) -> Option<Grant> {
    agreements.iter().find_map(|a| a.grant(evidence, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{
        Evidence, EvidenceDetails, EvidenceId, EvidenceKind, Verdict, VerdictKind,
    };

    pub(crate) fn template() -> AgreementTemplate {
        AgreementTemplate {
            version: "2026-11".into(),
            title: "Partner agreement".into(),
            sha256: "ab".repeat(32),
            text: "text".into(),
        }
    }

    pub(crate) fn form() -> AgreementForm {
        AgreementForm {
            template_version: "2026-11".into(),
            address_book: Some(ScopeForm {
                attributes: Some(vec![
                    "surname".into(),
                    "display_name".into(),
                    "surname".into(),
                ]),
                detail: None,
                organisations: Some(vec!["rr8".into(), "AB1".into()]),
            }),
            free_busy: Some(ScopeForm {
                detail: Some("limited_details".into()),
                ..ScopeForm::default()
            }),
            starts_on: NaiveDate::from_ymd_opt(2026, 1, 1),
            ends_on: NaiveDate::from_ymd_opt(2028, 12, 31),
            signatory_name: "Ada Lovelace".into(),
            signatory_role: "Caldicott Guardian".into(),
            signatory_email: "ada@leedscare.org.uk".into(),
        }
    }

    fn rules(form: &AgreementForm, exchange: &str) -> Vec<(String, &'static str)> {
        AgreementDraft::parse(form, &[template()], exchange)
            .err()
            .map(|e| e.0.into_iter().map(|e| (e.field, e.rule)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_draft_parses_with_sorted_unique_lists() {
        let draft = AgreementDraft::parse(&form(), &[template()], "exchange_2016").unwrap();
        let ab = draft.scopes.address_book.unwrap();
        assert_eq!(
            ab.attributes,
            [
                AddressBookAttribute::DisplayName,
                AddressBookAttribute::Surname
            ]
        );
        assert_eq!(
            ab.organisations,
            OdsSelection::Only(vec![
                OdsCode::parse("AB1").unwrap(),
                OdsCode::parse("RR8").unwrap()
            ])
        );
        assert_eq!(
            draft.scopes.free_busy.unwrap().organisations,
            OdsSelection::All
        );
    }

    #[test]
    fn draft_rules_are_all_reported() {
        let mut bad = form();
        bad.template_version = "1999".into();
        bad.ends_on = NaiveDate::from_ymd_opt(2029, 1, 2);
        bad.signatory_email = "nope".into();
        if let Some(fb) = bad.free_busy.as_mut() {
            fb.detail = Some("everything".into());
        }
        assert_eq!(
            rules(&bad, "exchange_2016"),
            [
                ("template_version".into(), "known_template"),
                ("scopes.free_busy.detail".into(), "one_of"),
                ("term.ends_on".into(), "max_term"),
                ("signatory.email".into(), "email"),
            ]
        );
        let mut none = form();
        none.address_book = None;
        none.free_busy = None;
        assert_eq!(
            rules(&none, "exchange_2016"),
            [("scopes".into(), "at_least_one")]
        );
    }

    #[test]
    fn address_book_needs_exchange_2010_or_later() {
        assert_eq!(
            rules(&form(), "exchange_2007"),
            [(
                "scopes.address_book.exchange_version".into(),
                "address_book_needs_exchange_2010"
            )]
        );
        let mut fb_only = form();
        fb_only.address_book = None;
        assert!(rules(&fb_only, "exchange_2007").is_empty());
    }

    #[test]
    fn the_lifecycle_allows_exactly_the_designed_transitions() {
        use AgreementState::*;
        let allowed: Vec<(Action, AgreementState, AgreementState)> = Action::ALL
            .iter()
            .flat_map(|a| {
                AgreementState::ALL
                    .iter()
                    .filter_map(move |s| a.next_state(*s).map(|n| (*a, *s, n)))
            })
            .collect();
        assert_eq!(
            allowed,
            [
                (Action::Check, Submitted, Submitted),
                (Action::Approve, Submitted, Approved),
                (Action::Reject, Submitted, Rejected),
                (Action::Suspend, Approved, Suspended),
                (Action::Reinstate, Suspended, Approved),
                (Action::Revoke, Approved, Revoked),
                (Action::Revoke, Suspended, Revoked),
            ]
        );
        for state in [Rejected, Revoked, Expired] {
            assert!(
                Action::ALL.iter().all(|a| a.next_state(state).is_none()),
                "{state} is final"
            );
        }
    }

    fn evidence(expires: &str) -> Vec<Evidence> {
        EvidenceKind::REQUIRED
            .iter()
            .map(|kind| Evidence {
                id: EvidenceId::new(),
                organisation_id: OrganisationId::new(),
                details: EvidenceDetails {
                    kind: *kind,
                    title: None,
                    dspt_status: None,
                    registration_number: None,
                    published_on: None,
                    expires_on: NaiveDate::parse_from_str(expires, "%Y-%m-%d").ok(),
                },
                document: None,
                submitted_at: DateTime::<Utc>::UNIX_EPOCH,
                verdict: Some(Verdict {
                    verdict: VerdictKind::Accepted,
                    reason: Reason::parse("fine").unwrap(),
                    by: "r1".into(),
                    at: DateTime::<Utc>::UNIX_EPOCH,
                }),
                superseded_by: None,
            })
            .collect()
    }

    fn approved(limited: bool) -> Agreement {
        let draft = AgreementDraft::parse(&form(), &[template()], "exchange_2016").unwrap();
        Agreement {
            id: AgreementId::new(),
            organisation_id: OrganisationId::new(),
            template_version: draft.template_version,
            template_sha256: "ab".repeat(32),
            scopes: draft.scopes,
            term: draft.term,
            signatory: draft.signatory,
            state: AgreementState::Approved,
            state_reason: None,
            suspension: None,
            signature: None,
            check: None,
            limited_details_granted: limited,
            version: Version(5),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn grants_follow_the_effective_state_at_the_instant() {
        let items = evidence("2027-06-30");
        let set = EvidenceSet(&items);
        let agreement = approved(false);
        let now = at("2026-11-29T10:00:00Z");
        let grant = agreement.grant(set, now).unwrap();
        assert_eq!(
            grant.free_busy.unwrap().detail,
            FreeBusyDetail::AvailabilityOnly,
            "limited details need the explicit flag"
        );
        assert_eq!(
            approved(true)
                .grant(set, now)
                .unwrap()
                .free_busy
                .unwrap()
                .detail,
            FreeBusyDetail::LimitedDetails
        );
        // Evidence lapses: suspended at once, with no job.
        let lapsed = at("2027-07-01T00:00:00Z");
        assert_eq!(
            agreement.effective_state(set, lapsed),
            AgreementState::Suspended
        );
        assert!(agreement.grant(set, lapsed).is_none());
        // The term ends: expired.
        let fresh = evidence("2030-01-01");
        assert_eq!(
            agreement.effective_state(EvidenceSet(&fresh), at("2029-01-01T00:00:00Z")),
            AgreementState::Expired
        );
        // Suspended by a reviewer: no grant; suspended for a lapse: lifts with new evidence.
        let mut suspended = approved(false);
        suspended.state = AgreementState::Suspended;
        suspended.suspension = Some(SuspensionCause::Reviewer);
        assert!(suspended.grant(set, now).is_none());
        suspended.suspension = Some(SuspensionCause::EvidenceLapsed);
        assert_eq!(
            suspended.effective_state(set, now),
            AgreementState::Approved
        );
    }
}
