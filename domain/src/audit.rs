//! Audit events: who did what to which subject, when. Append-only; each stored event carries
//! room for the hash chain that makes the trail tamper-evident.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::organisation::OrganisationId;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An unauthenticated caller of a public endpoint (registration).
    Anonymous,
    /// An organisation, authenticated by its registration token or access token.
    Organisation(OrganisationId),
    /// An operator running a command of the `federation-gateway` binary.
    Operator(String),
    /// A national reviewer, by the identity provider's subject.
    Reviewer(String),
    /// The internal directory publisher, by its client id.
    Publisher(String),
    /// The gateway itself (maintenance).
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Organisation(_) => "organisation",
            Self::Operator(_) => "operator",
            Self::Reviewer(_) => "reviewer",
            Self::Publisher(_) => "publisher",
            Self::System => "system",
        }
    }

    pub fn id(&self) -> Option<String> {
        match self {
            Self::Anonymous | Self::System => None,
            Self::Organisation(id) => Some(id.to_string()),
            Self::Operator(name) | Self::Reviewer(name) | Self::Publisher(name) => {
                Some(name.clone())
            }
        }
    }
}

/// What happened. The string forms are stored and must stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    OrganisationRegistered,
    OrganisationUpdated,
    SecureDomainsImported,
    KeysReplaced,
    KeysRemoved,
    TokenIssued,
    AssertionRejected,
    ReviewerLogin,
    ReviewerLoginFailed,
    SigningKeyRotated,
    OrganisationRejected,
    EvidenceSubmitted,
    EvidenceJudged,
    AgreementDrafted,
    AgreementChanged,
    AgreementSigned,
    AgreementSubmitted,
    AgreementChecked,
    AgreementApproved,
    AgreementRejected,
    AgreementSuspended,
    AgreementReinstated,
    AgreementRevoked,
    AgreementExpired,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganisationRegistered => "organisation.registered",
            Self::OrganisationUpdated => "organisation.updated",
            Self::SecureDomainsImported => "secure_domains.imported",
            Self::KeysReplaced => "keys.replaced",
            Self::KeysRemoved => "keys.removed",
            Self::TokenIssued => "token.issued",
            Self::AssertionRejected => "token.assertion_rejected",
            Self::ReviewerLogin => "reviewer.login",
            Self::ReviewerLoginFailed => "reviewer.login_failed",
            Self::SigningKeyRotated => "signing_key.rotated",
            Self::OrganisationRejected => "organisation.rejected",
            Self::EvidenceSubmitted => "evidence.submitted",
            Self::EvidenceJudged => "evidence.judged",
            Self::AgreementDrafted => "agreement.drafted",
            Self::AgreementChanged => "agreement.changed",
            Self::AgreementSigned => "agreement.signed",
            Self::AgreementSubmitted => "agreement.submitted",
            Self::AgreementChecked => "agreement.checked",
            Self::AgreementApproved => "agreement.approved",
            Self::AgreementRejected => "agreement.rejected",
            Self::AgreementSuspended => "agreement.suspended",
            Self::AgreementReinstated => "agreement.reinstated",
            Self::AgreementRevoked => "agreement.revoked",
            Self::AgreementExpired => "agreement.expired",
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    pub subject_type: &'static str,
    pub subject_id: Option<String>,
    /// The request that caused it, to join the audit trail with the logs.
    pub request_id: Option<String>,
    /// What changed; never a secret.
    pub details: serde_json::Value,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Position in the trail: strictly increasing, the order of the hash chain.
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}
