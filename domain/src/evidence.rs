//! Information-governance evidence: what an organisation shows reviewers (DSPT assessment,
//! ICO registration, policies, DPIA), the reviewers' verdicts, and which items are current.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::organisation::OrganisationId;
use crate::text::{Reason, ShortText};
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EvidenceId(Uuid);

impl EvidenceId {
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

impl Default for EvidenceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EvidenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, $crate::validation::RuleViolation> {
                Self::ALL.iter().copied().find(|v| v.as_str() == raw).ok_or_else(|| {
                    $crate::validation::RuleViolation::new(
                        "one_of",
                        format!(
                            "must be one of: {}",
                            Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// The kinds of evidence. DSPT assessment and ICO registration are required for approval.
    EvidenceKind {
        DsptAssessment = "dspt_assessment",
        IcoRegistration = "ico_registration",
        IgPolicy = "ig_policy",
        Dpia = "dpia",
        Other = "other",
    }
);

impl EvidenceKind {
    /// What approval needs, accepted and unexpired.
    pub const REQUIRED: [EvidenceKind; 2] = [Self::DsptAssessment, Self::IcoRegistration];
}

string_enum!(
    /// The Data Security and Protection Toolkit's published status.
    DsptStatus {
        StandardsMet = "standards_met",
        StandardsExceeded = "standards_exceeded",
        ApproachingStandards = "approaching_standards",
    }
);

string_enum!(
    /// A reviewer's judgement of one item.
    VerdictKind {
        Accepted = "accepted",
        Rejected = "rejected",
    }
);

/// Where an item stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceStatus {
    /// Not judged yet.
    Pending,
    Accepted,
    Rejected,
    /// Accepted, but past its expiry date.
    Expired,
    /// A newer item of the same kind was accepted (or uploaded, for an unjudged one).
    Superseded,
}

impl EvidenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
        }
    }
}

/// A stored document: checked to be a PDF by its content, its digest recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInfo {
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub size: u64,
    /// The file name the uploader gave (sanitised), for the download.
    pub filename: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub verdict: VerdictKind,
    pub reason: Reason,
    /// The reviewer's subject.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One item of evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub id: EvidenceId,
    pub organisation_id: OrganisationId,
    pub details: EvidenceDetails,
    pub document: Option<DocumentInfo>,
    pub submitted_at: DateTime<Utc>,
    pub verdict: Option<Verdict>,
    pub superseded_by: Option<EvidenceId>,
}

/// What an item says, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceDetails {
    pub kind: EvidenceKind,
    pub title: Option<ShortText>,
    /// DSPT only.
    pub dspt_status: Option<DsptStatus>,
    /// ICO only: the data protection register number (e.g. `ZA123456`).
    pub registration_number: Option<String>,
    /// DSPT only: when the assessment was published.
    pub published_on: Option<NaiveDate>,
    /// DSPT and ICO: the last day the item is valid.
    pub expires_on: Option<NaiveDate>,
}

/// The raw metadata of an upload; checked by [`EvidenceDetails::parse`].
#[derive(Debug, Clone, Default)]
pub struct EvidenceForm {
    pub kind: String,
    pub title: Option<String>,
    pub dspt_status: Option<String>,
    pub registration_number: Option<String>,
    pub published_on: Option<NaiveDate>,
    pub expires_on: Option<NaiveDate>,
}

fn registration_number(raw: &str) -> Result<String, RuleViolation> {
    let value = raw.trim().to_ascii_uppercase();
    if (6..=12).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(value)
    } else {
        Err(RuleViolation::new(
            "ico_registration_number",
            "must be an ICO registration number: 6 to 12 letters and digits, e.g. ZA123456",
        ))
    }
}

impl EvidenceDetails {
    /// Checks every rule of the kind and reports all that fail. `today` bounds the dates.
    pub fn parse(form: &EvidenceForm, today: NaiveDate) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let kind = errors.check("kind", EvidenceKind::parse(&form.kind));
        let title = form
            .title
            .as_deref()
            .and_then(|t| errors.check("title", ShortText::parse(t)));
        let required = |errors: &mut ValidationErrors, field: &str, present: bool, kind: &str| {
            if !present {
                errors.push(FieldError::new(
                    field,
                    "required",
                    format!("is required for {kind} evidence"),
                ));
            }
        };
        let not_allowed =
            |errors: &mut ValidationErrors, field: &str, present: bool, kind: &str| {
                if present {
                    errors.push(FieldError::new(
                        field,
                        "not_allowed",
                        format!("does not apply to {kind} evidence"),
                    ));
                }
            };
        let mut dspt_status = None;
        let mut number = None;
        if let Some(kind) = kind {
            let k = kind.as_str();
            match kind {
                EvidenceKind::DsptAssessment => {
                    required(&mut errors, "dspt_status", form.dspt_status.is_some(), k);
                    required(&mut errors, "published_on", form.published_on.is_some(), k);
                    required(&mut errors, "expires_on", form.expires_on.is_some(), k);
                    not_allowed(
                        &mut errors,
                        "registration_number",
                        form.registration_number.is_some(),
                        k,
                    );
                    if let Some(raw) = &form.dspt_status {
                        dspt_status = errors.check("dspt_status", DsptStatus::parse(raw));
                    }
                    if let (Some(published), Some(expires)) = (form.published_on, form.expires_on) {
                        if expires <= published {
                            errors.push(FieldError::new(
                                "expires_on",
                                "after_published_on",
                                "must be after published_on",
                            ));
                        }
                    }
                    if form.published_on.is_some_and(|p| p > today) {
                        errors.push(FieldError::new(
                            "published_on",
                            "not_in_future",
                            "must not be in the future",
                        ));
                    }
                }
                EvidenceKind::IcoRegistration => {
                    required(
                        &mut errors,
                        "registration_number",
                        form.registration_number.is_some(),
                        k,
                    );
                    required(&mut errors, "expires_on", form.expires_on.is_some(), k);
                    not_allowed(&mut errors, "dspt_status", form.dspt_status.is_some(), k);
                    not_allowed(&mut errors, "published_on", form.published_on.is_some(), k);
                    if let Some(raw) = &form.registration_number {
                        number = errors.check("registration_number", registration_number(raw));
                    }
                }
                EvidenceKind::IgPolicy | EvidenceKind::Dpia | EvidenceKind::Other => {
                    not_allowed(&mut errors, "dspt_status", form.dspt_status.is_some(), k);
                    not_allowed(
                        &mut errors,
                        "registration_number",
                        form.registration_number.is_some(),
                        k,
                    );
                    not_allowed(&mut errors, "published_on", form.published_on.is_some(), k);
                    if kind == EvidenceKind::Other && title.is_none() {
                        required(&mut errors, "title", false, k);
                    }
                }
            }
        }
        errors.finish(|| {
            Some(Self {
                kind: kind?,
                title,
                dspt_status,
                registration_number: number,
                published_on: form.published_on,
                expires_on: form.expires_on,
            })
        })
    }
}

impl Evidence {
    /// Where the item stands at `now`: a verdict, then supersession, then expiry.
    pub fn status(&self, now: DateTime<Utc>) -> EvidenceStatus {
        if self.superseded_by.is_some() {
            return EvidenceStatus::Superseded;
        }
        match &self.verdict {
            None => EvidenceStatus::Pending,
            Some(v) if v.verdict == VerdictKind::Rejected => EvidenceStatus::Rejected,
            Some(_) if self.expired_at(now) => EvidenceStatus::Expired,
            Some(_) => EvidenceStatus::Accepted,
        }
    }

    /// Valid through its expiry date (UTC), expired from the day after.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.details
            .expires_on
            .is_some_and(|last_day| now.date_naive() > last_day)
    }

    pub fn kind(&self) -> EvidenceKind {
        self.details.kind
    }
}

/// Why one required kind of evidence is not in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceGap {
    Missing,
    /// Submitted, not judged yet.
    Pending,
    Rejected,
    Expired,
}

impl EvidenceGap {
    pub fn rule(self) -> &'static str {
        match self {
            Self::Missing => "evidence_missing",
            Self::Pending => "evidence_not_judged",
            Self::Rejected => "evidence_rejected",
            Self::Expired => "evidence_expired",
        }
    }
}

/// An organisation's evidence, to answer "is the required evidence in order?".
#[derive(Debug, Clone, Copy)]
pub struct EvidenceSet<'a>(pub &'a [Evidence]);

impl EvidenceSet<'_> {
    /// The accepted, unsuperseded item of `kind` (expired or not), if any.
    pub fn accepted(&self, kind: EvidenceKind) -> Option<&Evidence> {
        self.0.iter().find(|e| {
            e.kind() == kind
                && e.superseded_by.is_none()
                && e.verdict
                    .as_ref()
                    .is_some_and(|v| v.verdict == VerdictKind::Accepted)
        })
    }

    /// What is wrong with the required kind `kind` at `now`; `None` when it is in order.
    pub fn gap(&self, kind: EvidenceKind, now: DateTime<Utc>) -> Option<EvidenceGap> {
        if let Some(accepted) = self.accepted(kind) {
            return accepted.expired_at(now).then_some(EvidenceGap::Expired);
        }
        let latest = self
            .0
            .iter()
            .filter(|e| e.kind() == kind && e.superseded_by.is_none())
            .max_by_key(|e| e.submitted_at);
        Some(match latest.map(|e| e.status(now)) {
            None | Some(EvidenceStatus::Superseded) => EvidenceGap::Missing,
            Some(EvidenceStatus::Pending) => EvidenceGap::Pending,
            Some(EvidenceStatus::Rejected) => EvidenceGap::Rejected,
            Some(EvidenceStatus::Expired | EvidenceStatus::Accepted) => EvidenceGap::Expired,
        })
    }

    /// Every required kind that is not in order, as field errors (`evidence.dspt_assessment`).
    pub fn required_gaps(&self, now: DateTime<Utc>) -> Vec<FieldError> {
        EvidenceKind::REQUIRED
            .iter()
            .filter_map(|kind| {
                self.gap(*kind, now).map(|gap| {
                    FieldError::new(
                        format!("evidence.{kind}"),
                        gap.rule(),
                        match gap {
                            EvidenceGap::Missing => {
                                format!("no {kind} evidence has been submitted")
                            }
                            EvidenceGap::Pending => {
                                format!("the {kind} evidence has not been judged yet")
                            }
                            EvidenceGap::Rejected => format!(
                                "the latest {kind} evidence was rejected; submit a new item"
                            ),
                            EvidenceGap::Expired => format!(
                                "the accepted {kind} evidence has expired; submit a new item"
                            ),
                        },
                    )
                })
            })
            .collect()
    }

    /// Whether required evidence is in order at `now`.
    pub fn required_in_order(&self, now: DateTime<Utc>) -> bool {
        EvidenceKind::REQUIRED
            .iter()
            .all(|kind| self.gap(*kind, now).is_none())
    }

    /// A fingerprint of every item and its judgement: a reviewer's check is bound to it, so a
    /// new item or a new verdict voids the check.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<String> = self
            .0
            .iter()
            .map(|e| {
                let verdict = e.verdict.as_ref().map_or("-", |v| v.verdict.as_str());
                let superseded = if e.superseded_by.is_some() { "s" } else { "" };
                format!("{}:{verdict}{superseded}", e.id)
            })
            .collect();
        parts.sort();
        parts.join(",")
    }

    /// Accepted items whose expiry falls within `days` of `now` (for reviewers' warnings).
    pub fn expiring_within(&self, now: DateTime<Utc>, days: i64) -> Vec<&Evidence> {
        let horizon = now.date_naive() + chrono::Duration::days(days);
        self.0
            .iter()
            .filter(|e| e.status(now) == EvidenceStatus::Accepted)
            .filter(|e| e.details.expires_on.is_some_and(|d| d <= horizon))
            .collect()
    }
}

/// Recognises a PDF by its content: the `%PDF-` header within the first 1024 bytes (as
/// readers accept it) and an `%%EOF` marker near the end. Names and declared types are not
/// trusted.
pub fn is_pdf(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let has_header = head.windows(5).any(|w| w == b"%PDF-");
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    let has_trailer = tail.windows(5).any(|w| w == b"%%EOF");
    has_header && has_trailer
}

/// The most a document may weigh.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// A file name safe to put in a `Content-Disposition` header: letters, digits, `.-_`,
/// at most 100 characters, `document.pdf` when nothing is left.
pub fn safe_filename(raw: Option<&str>) -> String {
    let cleaned: String = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_matches(['.', '_']).to_owned();
    if cleaned.is_empty() {
        "document.pdf".to_owned()
    } else if cleaned.to_ascii_lowercase().ends_with(".pdf") {
        cleaned
    } else {
        format!("{cleaned}.pdf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rules(form: &EvidenceForm) -> Vec<(String, &'static str)> {
        EvidenceDetails::parse(form, day("2026-11-29"))
            .err()
            .map(|e| e.0.into_iter().map(|e| (e.field, e.rule)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn each_kind_has_its_own_required_fields() {
        let dspt = EvidenceForm {
            kind: "dspt_assessment".into(),
            dspt_status: Some("standards_met".into()),
            published_on: Some(day("2026-06-30")),
            expires_on: Some(day("2027-06-30")),
            ..EvidenceForm::default()
        };
        assert!(rules(&dspt).is_empty());
        let mut bad = dspt.clone();
        bad.dspt_status = Some("great".into());
        bad.expires_on = Some(day("2026-01-01"));
        bad.registration_number = Some("Z1".into());
        assert_eq!(
            rules(&bad),
            [
                ("registration_number".into(), "not_allowed"),
                ("dspt_status".into(), "one_of"),
                ("expires_on".into(), "after_published_on"),
            ]
        );
        let ico = EvidenceForm {
            kind: "ico_registration".into(),
            ..EvidenceForm::default()
        };
        assert_eq!(
            rules(&ico),
            [
                ("registration_number".into(), "required"),
                ("expires_on".into(), "required")
            ]
        );
        assert_eq!(
            rules(&EvidenceForm {
                kind: "x".into(),
                ..EvidenceForm::default()
            }),
            [("kind".into(), "one_of")]
        );
    }

    fn item(kind: EvidenceKind, verdict: Option<VerdictKind>, expires: &str) -> Evidence {
        Evidence {
            id: EvidenceId::new(),
            organisation_id: OrganisationId::new(),
            details: EvidenceDetails {
                kind,
                title: None,
                dspt_status: None,
                registration_number: None,
                published_on: None,
                expires_on: Some(day(expires)),
            },
            document: None,
            submitted_at: at("2026-01-01T00:00:00Z"),
            verdict: verdict.map(|verdict| Verdict {
                verdict,
                reason: Reason::parse("ok").unwrap(),
                by: "r".into(),
                at: at("2026-01-02T00:00:00Z"),
            }),
            superseded_by: None,
        }
    }

    #[test]
    fn required_evidence_gaps_are_named() {
        let now = at("2026-11-29T12:00:00Z");
        let items = vec![
            item(
                EvidenceKind::DsptAssessment,
                Some(VerdictKind::Accepted),
                "2026-11-29",
            ),
            item(EvidenceKind::IcoRegistration, None, "2027-01-01"),
        ];
        let set = EvidenceSet(&items);
        assert_eq!(
            set.gap(EvidenceKind::DsptAssessment, now),
            None,
            "valid through its last day"
        );
        assert_eq!(
            set.gap(EvidenceKind::IcoRegistration, now),
            Some(EvidenceGap::Pending)
        );
        let later = at("2026-11-30T00:00:00Z");
        assert_eq!(
            set.gap(EvidenceKind::DsptAssessment, later),
            Some(EvidenceGap::Expired)
        );
        assert!(!set.required_in_order(now));
        assert_eq!(set.required_gaps(now)[0].field, "evidence.ico_registration");
    }

    #[test]
    fn pdfs_are_recognised_by_content() {
        assert!(is_pdf(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\ntrailer\n%%EOF\n"));
        assert!(!is_pdf(b"<html>%PDF-</html>"));
        assert!(!is_pdf(b"MZ\x90\x00 not a pdf %%EOF"));
        assert!(!is_pdf(b""));
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(safe_filename(Some("../../etc/pass wd")), "pass_wd.pdf");
        assert_eq!(safe_filename(Some("DSPT 2026.PDF")), "DSPT_2026.PDF");
        assert_eq!(safe_filename(Some("\"\r\n")), "document.pdf");
        assert_eq!(safe_filename(None), "document.pdf");
    }
}
