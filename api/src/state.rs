//! What handlers share: the ports, wired once at start-up.

use std::sync::Arc;

use gateway_domain::{Clock, HealthCheck, OrganisationRepository};

use crate::rate_limit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub organisations: Arc<dyn OrganisationRepository>,
    pub health: Arc<dyn HealthCheck>,
    pub clock: Arc<dyn Clock>,
    /// Configured public address for links in responses; `None`: derive from the request.
    pub public_base_url: Option<String>,
    pub registration_limiter: Arc<RateLimiter>,
    pub backend_name: &'static str,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend_name)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}
