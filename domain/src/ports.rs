//! Ports: what the domain needs from storage. `persistence` implements them; each method's
//! documentation is its contract, and the repository contract tests check it on every backend.

use chrono::{DateTime, Utc};

use crate::accreditation::SecureDomainPattern;
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::dns::EmailDomain;
use crate::ods::OdsCode;
use crate::organisation::{NewOrganisation, Organisation, OrganisationId, Version};

/// A uniqueness rule that a write would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("the domain {0} is already registered to another organisation")]
    DomainTaken(EmailDomain),
    #[error("an organisation with ODS code {0} is already registered")]
    OdsCodeTaken(OdsCode),
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("not found")]
    NotFound,
    /// The record changed since the caller read it.
    #[error("version mismatch: the record is now at version {}", current.0)]
    VersionMismatch { current: Version },
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The store could not be reached or failed; the cause is for logs only.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data no longer passes the domain's rules: a bug or a manual edit.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// A registration access token as stored: a public selector to find it by, and the SHA-256
/// of its secret half (hex). The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDigest {
    pub selector: String,
    pub secret_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub organisation_id: OrganisationId,
    pub secret_sha256: String,
}

pub trait OrganisationRepository: Send + Sync {
    /// Stores a new organisation with version 1, its registration credential and `event`,
    /// atomically.
    ///
    /// MUST return `Conflict::DomainTaken(d)` naming a domain already claimed by another
    /// organisation, and `Conflict::OdsCodeTaken` when the ODS code is registered; then it
    /// stores nothing. Accreditation of the returned domains reflects the current list.
    fn create(
        &self,
        id: OrganisationId,
        organisation: &NewOrganisation,
        credential: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;

    /// MUST return `Ok(None)` for an unknown id.
    fn get(&self, id: OrganisationId) -> Result<Option<Organisation>, RepositoryError>;

    /// The credential with this selector, if any.
    fn find_credential(&self, selector: &str) -> Result<Option<StoredCredential>, RepositoryError>;

    /// Replaces the stored organisation by `next` (whose version is `expected.next()`) and
    /// appends `event`, atomically, only if the stored version is still `expected`.
    ///
    /// MUST return `NotFound` for an unknown id, `VersionMismatch` when the stored version is
    /// not `expected`, and `Conflict::DomainTaken` when a new domain belongs to another
    /// organisation; then it changes nothing.
    fn update(
        &self,
        expected: Version,
        next: &Organisation,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError>;
}

pub trait SecureDomainRepository: Send + Sync {
    /// Replaces the whole accredited list by `patterns` and appends `event`, atomically.
    /// Returns how many entries are stored.
    fn replace_secure_domains(
        &self,
        patterns: &[SecureDomainPattern],
        event: &NewAuditEvent,
    ) -> Result<usize, RepositoryError>;
}

pub trait AuditRepository: Send + Sync {
    /// Appends one event outside any other change.
    fn append(&self, event: &NewAuditEvent) -> Result<AuditEvent, RepositoryError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    fn list(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, RepositoryError>;
}

pub trait HealthCheck: Send + Sync {
    /// MUST fail when the store cannot answer a trivial query.
    fn ping(&self) -> Result<(), RepositoryError>;
}
