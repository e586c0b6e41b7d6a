//! The use cases: each one reads through the ports, checks its preconditions, applies the
//! change, builds the audit event and writes, in one function. Handlers parse, call one of
//! these and render; `maintenance` calls the same functions.

use std::sync::Arc;

use crate::access::{ReviewerIdentity, Role};
use crate::agreement::AgreementTemplate;
use crate::audit::{Actor, AuditAction, NewAuditEvent};
use crate::clock::Clock;
use crate::dns::{PublicSuffixes, TxtResolver};
use crate::keys::PartnerKey;
use crate::organisation::Version;
use crate::ports::{
    AgreementRepository, AuditRepository, EvidenceRepository, OrganisationRepository,
    PartnerKeyRepository, RepositoryError,
};
use crate::validation::{FieldError, ValidationErrors};

pub mod agreements;
pub mod audit;
pub mod calendars;
pub mod directory;
pub mod domains;
pub mod evidence;
pub mod registration;
pub mod registration_token;
pub mod review;

#[cfg(test)]
pub(crate) mod fakes;

/// The kinds of domain refusal; each becomes its own problem type at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The action is not allowed from the agreement's (effective) state.
    InvalidTransition,
    /// The action is allowed, but its preconditions are not met; `unmet` lists them all.
    PreconditionsUnmet,
    /// State changes need a person, not an automation token.
    PersonRequired,
    /// The caller lacks the reviewer role the action needs.
    RoleRequired,
    /// The detached JWS does not verify over the draft's signing payload.
    SignatureInvalid,
    /// Only a draft can be changed or signed.
    NotADraft,
    /// A judged evidence item is immutable.
    EvidenceAlreadyJudged,
    /// A registration with an approved agreement cannot be rejected (revoke the agreement).
    RegistrationNotRejectable,
    /// The organisation's registration was rejected.
    OrganisationRejected,
    /// The uploaded document is not a PDF (recognised by its content).
    DocumentNotPdf,
    /// The registration token's state does not allow this (revoking a revoked token, issuing
    /// a fresh one while one is in force).
    RegistrationTokenState,
}

/// A refusal by a domain rule: what kind, a sentence, and every unmet precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub detail: String,
    pub unmet: Vec<FieldError>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            unmet: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    #[error("refused ({:?}): {}", .0.kind, .0.detail)]
    Refused(Refusal),
    /// The caller's If-Match names an older version.
    #[error("the resource changed since it was read")]
    Stale,
    /// A change that needs If-Match came without it.
    #[error("If-Match is required")]
    PreconditionRequired,
    #[error(transparent)]
    Storage(RepositoryError),
    /// A service outside the store that the use case needs (DNS) did not answer; nothing
    /// was changed. The cause is for logs.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// Asked again too soon; nothing was done. Try again after this many seconds.
    #[error("rate limited for {retry_after_seconds}s")]
    RateLimited { retry_after_seconds: u64 },
    /// What the caller's cursor needs is gone (purged after the retention period, or its
    /// view changed): start again from scratch.
    #[error("resync needed")]
    Gone,
}

impl From<RepositoryError> for ServiceError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => Self::NotFound,
            RepositoryError::VersionMismatch { .. } => Self::Stale,
            other => Self::Storage(other),
        }
    }
}

impl From<Refusal> for ServiceError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl From<ValidationErrors> for ServiceError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Invalid(errors)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The versions an `If-Match` names (strong tags only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition(pub Vec<Version>);

impl Precondition {
    /// 428 without a precondition, 412 when it names another version.
    pub fn check(precondition: Option<&Precondition>, current: Version) -> ServiceResult<()> {
        match precondition {
            None => Err(ServiceError::PreconditionRequired),
            Some(p) if p.0.contains(&current) => Ok(()),
            Some(_) => Err(ServiceError::Stale),
        }
    }
}

/// Who asks, and the request to join the audit trail with the logs.
#[derive(Debug, Clone)]
pub struct Context {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Context {
    pub fn event(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        action: AuditAction,
        subject_type: &'static str,
        subject_id: String,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        NewAuditEvent {
            occurred_at: at,
            actor: self.actor.clone(),
            action,
            subject_type,
            subject_id: Some(subject_id),
            request_id: self.request_id.clone(),
            details,
        }
    }
}

/// A verified detached signature: which key made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub kid: String,
    pub alg: String,
    pub jwk: serde_json::Value,
}

/// Canonical JSON and detached JWS, which need libraries the domain does not carry.
pub trait SignatureScheme: Send + Sync {
    /// RFC 8785 (JCS) canonical form of `document`.
    fn canonicalise(&self, document: &serde_json::Value) -> Result<String, String>;

    /// Verifies a detached compact JWS (RFC 7515 appendix F) over `payload` with one of
    /// `keys` (the header's `kid` if it names one, otherwise each key allowed for the `alg`).
    /// The error says why, for the signer.
    fn verify_detached(
        &self,
        jws: &str,
        payload: &[u8],
        keys: &[PartnerKey],
    ) -> Result<VerifiedSignature, String>;
}

/// Everything the use cases need, wired once at start-up.
#[derive(Clone)]
pub struct Services {
    pub organisations: Arc<dyn OrganisationRepository>,
    pub keys: Arc<dyn PartnerKeyRepository>,
    pub evidence: Arc<dyn EvidenceRepository>,
    pub agreements: Arc<dyn AgreementRepository>,
    pub audit: Arc<dyn AuditRepository>,
    pub signatures: Arc<dyn SignatureScheme>,
    pub templates: Arc<Vec<AgreementTemplate>>,
    pub clock: Arc<dyn Clock>,
    /// Resolves the TXT records that prove domain ownership.
    pub dns: Arc<dyn TxtResolver>,
    /// The Public Suffix List: public suffixes can never be claimed.
    pub public_suffixes: Arc<dyn PublicSuffixes>,
    /// How often a claim's proof may be looked up, failures audited, and how long a vanished
    /// proof is tolerated (with the per-claim state those limits keep, in this process).
    pub domain_proof: Arc<domains::DomainProofLimits>,
    /// SHA-256 for the audit chain and tree.
    pub hasher: Arc<dyn crate::merkle::Sha256>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("templates", &self.templates.len())
            .finish_non_exhaustive()
    }
}

/// State changes by reviewers need a person holding `role`.
pub(crate) fn require_person(reviewer: &ReviewerIdentity, role: Role) -> ServiceResult<()> {
    if !reviewer.has(role) {
        return Err(Refusal::new(
            RefusalKind::RoleRequired,
            format!("this needs the {} role", role.as_str()),
        )
        .into());
    }
    if !reviewer.person {
        return Err(Refusal::new(
            RefusalKind::PersonRequired,
            "review actions that change state need a signed-in person; automation tokens are read-only",
        )
        .into());
    }
    Ok(())
}

/// The unmet precondition of every step once reviewers rejected the registration.
pub(crate) fn registration_rejected() -> FieldError {
    FieldError::new(
        "organisation.status",
        "registration_active",
        "the registration was rejected",
    )
}
