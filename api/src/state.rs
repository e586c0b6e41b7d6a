//! What handlers share: the ports and services, wired once at start-up.

use std::sync::Arc;

use chrono::Duration;
use gateway_domain::{
    AuditRepository, Clock, HealthCheck, KeyLifecycle, OrganisationRepository, PartnerKey,
    PartnerKeyRepository, ReplayCache,
};

use gateway_domain::services::Services;

use crate::abuse::AbuseGuard;
use crate::auth::assertion::AssertionRules;
use crate::auth::oidc::Oidc;
use crate::auth::session::{SessionCodec, SessionStore};
use crate::auth::signing::SigningKeys;

/// The internal directory publisher: a client configured rather than registered.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub client_id: String,
    pub keys: Vec<PartnerKey>,
}

/// Token rules from configuration.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub assertion: AssertionRules,
    pub access_token_lifetime: Duration,
    pub key_lifecycle: KeyLifecycle,
}

#[derive(Clone)]
pub struct AppState {
    pub organisations: Arc<dyn OrganisationRepository>,
    pub keys: Arc<dyn PartnerKeyRepository>,
    pub replay: Arc<dyn ReplayCache>,
    pub audit: Arc<dyn AuditRepository>,
    pub health: Arc<dyn HealthCheck>,
    pub clock: Arc<dyn Clock>,
    /// This gateway's public address (configured, or the bound address).
    pub public_base_url: String,
    /// Rate limits and failed-attempt lock-outs per client address.
    pub abuse: Arc<AbuseGuard>,
    pub backend_name: &'static str,
    pub signing: Arc<SigningKeys>,
    pub auth: AuthPolicy,
    pub publisher: Option<Arc<Publisher>>,
    pub oidc: Option<Arc<Oidc>>,
    /// The login-state and session cookies.
    pub sessions: Arc<SessionCodec>,
    /// Reviewer sessions, server-side.
    pub session_store: Arc<SessionStore>,
    /// The use cases, over the same ports.
    pub services: Services,
    /// Which stored audit keys a gateway put there (MAC'd under the key-encryption key).
    pub audit_keys: crate::auth::checkpoint::AuditKeyRing,
    /// Opaque, MAC'd page tokens (cursors).
    pub page_tokens: crate::page_token::PageTokens,
    /// The national directory: ingest and address-book sync.
    pub directory: gateway_domain::services::directory::DirectoryService,
    /// Calendars: busy-block ingest and free/busy.
    pub calendars: gateway_domain::services::calendars::CalendarService,
    /// Free/busy queries per partner organisation (`free_busy.queries_per_minute`).
    pub free_busy_limiter: Arc<crate::rate_limit::RateLimiter<gateway_domain::OrganisationId>>,
    /// Address-book pages per partner organisation (`address_book.pages_per_minute`).
    pub page_limiter: Arc<crate::rate_limit::RateLimiter<gateway_domain::OrganisationId>>,
    /// Group-commit audit recording for data endpoints' disclosures.
    pub recorder: crate::audit_log::AuditRecorder,
    /// Group commit of token issuances (replay cache, key use, audit record): `true` when
    /// recorded, `false` for a replayed jti.
    pub issuances: crate::group_commit::GroupCommit<gateway_domain::Issuance, bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend_name)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}
