//! Organisations: the external care organisations that register to federate with the platform.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::category::CareCategory;
use crate::contact::{Contact, Contacts};
use crate::dns::{DomainStatus, EmailDomain, Verification, VerificationToken};
use crate::exchange::ExchangeVersion;
use crate::ods::OdsCode;
use crate::text::{BusinessNeed, OrganisationName};
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct OrganisationId(Uuid);

impl OrganisationId {
    /// A new, time-ordered id.
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

impl Default for OrganisationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrganisationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The optimistic-concurrency version of a record; every change increments it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub i64);

impl Version {
    pub const FIRST: Version = Version(1);

    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

/// A domain an organisation has claimed: whether it is on the secure-email accredited list,
/// and how far its ownership is proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDomain {
    pub name: EmailDomain,
    pub accredited: bool,
    /// What the organisation publishes at `_federation-gateway.<name>`.
    pub token: VerificationToken,
    /// Set once the organisation proved the claim (or a reviewer verified it by hand).
    pub verification: Option<Verification>,
    /// A DNS-verified domain whose TXT record maintenance no longer found, since when.
    pub record_missing_since: Option<DateTime<Utc>>,
    /// Another active organisation holds a verified claim on this name or a parent of it
    /// (computed when read, never stored).
    pub held_elsewhere: bool,
}

impl ClaimedDomain {
    /// A new, unverified claim with a fresh token.
    pub fn unverified(name: EmailDomain) -> Self {
        Self {
            name,
            accredited: false,
            token: VerificationToken::generate(),
            verification: None,
            record_missing_since: None,
            held_elsewhere: false,
        }
    }

    pub fn status(&self) -> DomainStatus {
        if self.verification.is_some() {
            DomainStatus::Verified
        } else if self.held_elsewhere {
            DomainStatus::Conflict
        } else {
            DomainStatus::Unverified
        }
    }
}

/// Whether a registration stands. Nothing is deleted to free a name: a rejected registration
/// stays on record, and its ODS code and domains stop counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationStatus {
    Active,
    Rejected,
}

impl OrganisationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub id: OrganisationId,
    pub status: OrganisationStatus,
    /// Why reviewers rejected the registration.
    pub status_reason: Option<crate::text::Reason>,
    pub ods_code: OdsCode,
    pub name: OrganisationName,
    pub category: CareCategory,
    pub exchange_version: ExchangeVersion,
    pub domains: Vec<ClaimedDomain>,
    pub contacts: Contacts,
    pub business_need: BusinessNeed,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Organisation {
    pub fn domain_names(&self) -> Vec<EmailDomain> {
        self.domains.iter().map(|d| d.name.clone()).collect()
    }
}

/// The raw contents of a registration, as received; every field is checked by
/// [`NewOrganisation::parse`].
#[derive(Debug, Clone, Default)]
pub struct RegistrationForm {
    pub ods_code: String,
    pub name: String,
    pub category: String,
    pub exchange_version: String,
    pub domains: Vec<String>,
    pub ig_lead: ContactForm,
    pub technical: ContactForm,
    pub business_need: String,
}

#[derive(Debug, Clone, Default)]
pub struct ContactForm {
    pub name: String,
    pub email: String,
}

/// A registration whose every field has passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrganisation {
    pub ods_code: OdsCode,
    pub name: OrganisationName,
    pub category: CareCategory,
    pub exchange_version: ExchangeVersion,
    pub domains: Vec<EmailDomain>,
    pub contacts: Contacts,
    pub business_need: BusinessNeed,
}

/// How many domains one organisation may claim (the platform's limit on accepted domains).
pub const MAX_DOMAINS: usize = 238;

fn parse_domains(raw: &[String]) -> Result<Vec<EmailDomain>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    if raw.is_empty() || raw.len() > MAX_DOMAINS {
        errors.push(FieldError::new(
            "",
            "count",
            format!("must list 1 to {MAX_DOMAINS} domains (got {})", raw.len()),
        ));
        return Err(errors);
    }
    let mut seen = HashSet::new();
    let mut domains = Vec::with_capacity(raw.len());
    for (index, raw) in raw.iter().enumerate() {
        let at = format!("[{index}]");
        let parsed = EmailDomain::parse(raw).and_then(|domain| {
            domain.check_claimable()?;
            if !seen.insert(domain.clone()) {
                return Err(RuleViolation::new(
                    "unique",
                    format!("{domain} is listed more than once"),
                ));
            }
            Ok(domain)
        });
        if let Some(domain) = errors.check(&at, parsed) {
            domains.push(domain);
        }
    }
    errors.finish(|| Some(domains))
}

fn parse_contact(form: &ContactForm) -> Result<Contact, ValidationErrors> {
    Contact::parse(&form.name, &form.email)
}

impl NewOrganisation {
    /// Checks every rule on every field, and reports all that fail.
    pub fn parse(form: &RegistrationForm) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let ods_code = errors.check("ods_code", OdsCode::parse(&form.ods_code));
        let name = errors.check("name", OrganisationName::parse(&form.name));
        let category = errors.check("category", CareCategory::parse(&form.category));
        let exchange_version = errors.check(
            "exchange_version",
            ExchangeVersion::parse(&form.exchange_version),
        );
        let domains = errors.nested("domains", parse_domains(&form.domains));
        let ig_lead = errors.nested("contacts.ig_lead", parse_contact(&form.ig_lead));
        let technical = errors.nested("contacts.technical", parse_contact(&form.technical));
        let business_need = errors.check("business_need", BusinessNeed::parse(&form.business_need));
        errors.finish(|| {
            Some(Self {
                ods_code: ods_code?,
                name: name?,
                category: category?,
                exchange_version: exchange_version?,
                domains: domains?,
                contacts: Contacts {
                    ig_lead: ig_lead?,
                    technical: technical?,
                },
                business_need: business_need?,
            })
        })
    }
}

/// The raw contents of a change (JSON merge patch): absent fields stay as they are.
/// The ODS code is the organisation's identity and cannot change.
#[derive(Debug, Clone, Default)]
pub struct ChangeForm {
    pub name: Option<String>,
    pub category: Option<String>,
    pub exchange_version: Option<String>,
    pub domains: Option<Vec<String>>,
    pub ig_lead: Option<ContactForm>,
    pub technical: Option<ContactForm>,
    pub business_need: Option<String>,
}

/// A checked change to an organisation's registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationChange {
    pub name: Option<OrganisationName>,
    pub category: Option<CareCategory>,
    pub exchange_version: Option<ExchangeVersion>,
    pub domains: Option<Vec<EmailDomain>>,
    pub ig_lead: Option<Contact>,
    pub technical: Option<Contact>,
    pub business_need: Option<BusinessNeed>,
}

impl OrganisationChange {
    pub fn parse(form: &ChangeForm) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut change = OrganisationChange::default();
        if let Some(raw) = &form.name {
            change.name = errors.check("name", OrganisationName::parse(raw));
        }
        if let Some(raw) = &form.category {
            change.category = errors.check("category", CareCategory::parse(raw));
        }
        if let Some(raw) = &form.exchange_version {
            change.exchange_version = errors.check("exchange_version", ExchangeVersion::parse(raw));
        }
        if let Some(raw) = &form.domains {
            change.domains = errors.nested("domains", parse_domains(raw));
        }
        if let Some(raw) = &form.ig_lead {
            change.ig_lead = errors.nested("contacts.ig_lead", parse_contact(raw));
        }
        if let Some(raw) = &form.technical {
            change.technical = errors.nested("contacts.technical", parse_contact(raw));
        }
        if let Some(raw) = &form.business_need {
            change.business_need = errors.check("business_need", BusinessNeed::parse(raw));
        }
        errors.finish(|| Some(change))
    }

    /// Applies the change, returning the new state and the names of the fields that really
    /// changed (for the audit trail). Kept domains keep their accreditation, token and
    /// verification; new domains start unaccredited (until the store looks them up) and
    /// unverified, with a fresh token.
    pub fn apply(
        &self,
        current: &Organisation,
        at: DateTime<Utc>,
    ) -> (Organisation, Vec<&'static str>) {
        let mut next = current.clone();
        let mut changed = Vec::new();
        if let Some(name) = &self.name {
            if *name != next.name {
                next.name = name.clone();
                changed.push("name");
            }
        }
        if let Some(category) = self.category {
            if category != next.category {
                next.category = category;
                changed.push("category");
            }
        }
        if let Some(version) = self.exchange_version {
            if version != next.exchange_version {
                next.exchange_version = version;
                changed.push("exchange_version");
            }
        }
        if let Some(domains) = &self.domains {
            if *domains != current.domain_names() {
                next.domains = domains
                    .iter()
                    .map(|name| {
                        current
                            .domains
                            .iter()
                            .find(|d| d.name == *name)
                            .cloned()
                            .unwrap_or_else(|| ClaimedDomain::unverified(name.clone()))
                    })
                    .collect();
                changed.push("domains");
            }
        }
        if let Some(contact) = &self.ig_lead {
            if *contact != next.contacts.ig_lead {
                next.contacts.ig_lead = contact.clone();
                changed.push("contacts.ig_lead");
            }
        }
        if let Some(contact) = &self.technical {
            if *contact != next.contacts.technical {
                next.contacts.technical = contact.clone();
                changed.push("contacts.technical");
            }
        }
        if let Some(need) = &self.business_need {
            if *need != next.business_need {
                next.business_need = need.clone();
                changed.push("business_need");
            }
        }
        if !changed.is_empty() {
            next.version = current.version.next();
            next.updated_at = at;
        }
        (next, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn valid_form() -> RegistrationForm {
        RegistrationForm {
            ods_code: "ab123".into(),
            name: "Leeds Community Care".into(),
            category: "social_care_provider".into(),
            exchange_version: "exchange_2016".into(),
            domains: vec!["leedscare.org.uk".into(), "Mail.LeedsCare.org.uk".into()],
            ig_lead: ContactForm {
                name: "Ada Lovelace".into(),
                email: "ada@leedscare.org.uk".into(),
            },
            technical: ContactForm {
                name: "Alan Turing".into(),
                email: "alan@leedscare.org.uk".into(),
            },
            business_need: "District nurses need to find GP practice staff.".into(),
        }
    }

    fn rules(form: &RegistrationForm) -> Vec<(String, &'static str)> {
        NewOrganisation::parse(form)
            .err()
            .map(|e| e.0.into_iter().map(|e| (e.field, e.rule)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_registration_parses_and_normalises() {
        let org = NewOrganisation::parse(&valid_form()).unwrap();
        assert_eq!(org.ods_code.as_str(), "AB123");
        assert_eq!(org.domains[1].as_str(), "mail.leedscare.org.uk");
    }

    #[test]
    fn every_broken_field_is_reported_with_its_path() {
        let mut form = valid_form();
        form.ods_code = "A-1".into();
        form.exchange_version = "exchange_2007".into();
        form.domains = vec![
            "ok.org.uk".into(),
            "x.nhs.net".into(),
            "OK.org.uk".into(),
            "y.gcsx.gov.uk".into(),
        ];
        form.technical.email = "nope".into();
        form.business_need = String::new();
        assert_eq!(
            rules(&form),
            [
                ("ods_code".to_owned(), "alphanumeric"),
                ("exchange_version".to_owned(), "minimum_version"),
                ("domains[1]".to_owned(), "reserved_domain"),
                ("domains[2]".to_owned(), "unique"),
                ("domains[3]".to_owned(), "retired_domain"),
                ("contacts.technical.email".to_owned(), "email"),
                ("business_need".to_owned(), "required"),
            ]
        );
    }

    #[test]
    fn domain_count_is_bounded() {
        let mut form = valid_form();
        form.domains.clear();
        assert_eq!(rules(&form), [("domains".to_owned(), "count")]);
        form.domains = (0..=MAX_DOMAINS)
            .map(|i| format!("d{i}.example.org"))
            .collect();
        assert_eq!(rules(&form), [("domains".to_owned(), "count")]);
        form.domains.pop();
        assert!(rules(&form).is_empty());
    }

    fn organisation() -> Organisation {
        let new = NewOrganisation::parse(&valid_form()).unwrap();
        let at = DateTime::<Utc>::UNIX_EPOCH;
        Organisation {
            id: OrganisationId::new(),
            status: OrganisationStatus::Active,
            status_reason: None,
            ods_code: new.ods_code,
            name: new.name,
            category: new.category,
            exchange_version: new.exchange_version,
            domains: new
                .domains
                .into_iter()
                .map(|name| ClaimedDomain {
                    accredited: true,
                    ..ClaimedDomain::unverified(name)
                })
                .collect(),
            contacts: new.contacts,
            business_need: new.business_need,
            version: Version::FIRST,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn apply_reports_only_real_changes_and_bumps_the_version() {
        let current = organisation();
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(5);
        let same = OrganisationChange::parse(&ChangeForm {
            name: Some(" Leeds Community Care ".into()),
            ..ChangeForm::default()
        })
        .unwrap();
        let (next, changed) = same.apply(&current, at);
        assert!(changed.is_empty());
        assert_eq!(next.version, current.version);

        let change = OrganisationChange::parse(&ChangeForm {
            name: Some("Leeds Care CIC".into()),
            domains: Some(vec!["leedscare.org.uk".into(), "new.example.org".into()]),
            ..ChangeForm::default()
        })
        .unwrap();
        let (next, changed) = change.apply(&current, at);
        assert_eq!(changed, ["name", "domains"]);
        assert_eq!(next.version, Version(2));
        assert_eq!(next.updated_at, at);
        assert!(
            next.domains[0].accredited,
            "kept domain keeps its accreditation"
        );
        assert_eq!(
            next.domains[0].token, current.domains[0].token,
            "kept domain keeps its token"
        );
        assert!(!next.domains[1].accredited);
        assert_eq!(next.domains[1].status(), DomainStatus::Unverified);
    }

    #[test]
    fn change_fields_follow_the_same_rules() {
        let errors = OrganisationChange::parse(&ChangeForm {
            exchange_version: Some("exchange_2003".into()),
            domains: Some(vec!["nhs.net".into()]),
            ..ChangeForm::default()
        })
        .unwrap_err();
        let got: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.field.as_str(), e.rule))
            .collect();
        assert_eq!(
            got,
            [
                ("exchange_version", "minimum_version"),
                ("domains[0]", "reserved_domain")
            ]
        );
    }
}
