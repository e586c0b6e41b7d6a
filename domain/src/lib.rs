//! The Federation Gateway's problem language: newtypes parsed at the boundary, entities,
//! policy rules and the ports (repository traits, clock) that outer layers implement.
//!
//! Nothing here knows about HTTP, SQL or OpenAPI.

pub mod access;
pub mod accreditation;
pub mod agreement;
pub mod audit;
pub mod calendar;
pub mod category;
pub mod clock;
pub mod contact;
pub mod directory;
pub mod dns;
pub mod evidence;
pub mod exchange;
pub mod keys;
pub mod merkle;
pub mod ods;
pub mod organisation;
pub mod ports;
pub mod registration_token;
pub mod services;
pub mod session;
pub mod text;
pub mod validation;

pub use access::{ReviewerIdentity, Role, Scope};
pub use accreditation::SecureDomainPattern;
pub use agreement::{Agreement, AgreementId, AgreementState, Grant};
pub use audit::{Actor, AuditAction, AuditEvent, NewAuditEvent};
pub use category::CareCategory;
pub use clock::{Clock, FixedClock, SystemClock};
pub use contact::{Contact, ContactRole, Contacts, EmailAddress};
pub use dns::EmailDomain;
pub use evidence::{Evidence, EvidenceId, EvidenceKind};
pub use exchange::ExchangeVersion;
pub use keys::{KeyLifecycle, KeyType, PartnerKey};
pub use ods::OdsCode;
pub use organisation::{
    ClaimedDomain, NewOrganisation, Organisation, OrganisationChange, OrganisationId,
    OrganisationStatus, Version,
};
pub use ports::{
    AgreementRepository, AuditFilter, AuditKey, AuditRepository, CalendarRepository, ChangesPage,
    Checkpoint, Conflict, CredentialDigest, DirectoryRepository, EvidenceRepository, FeedHead,
    HealthCheck, IdempotentAnswer, Issuance, MailboxCalendar, OrganisationRepository,
    PartnerKeyRepository, RateLimitStore, Replaced, ReplayCache, RepositoryError, SealedRecord,
    SecureDomainRepository, SigningKeyRepository, StoredCredential, StoredSigningKey, WindowCount,
};
pub use session::{ReviewerSession, SessionEnd, SessionPolicy, SessionRepository};
pub use validation::{FieldError, ValidationErrors};
