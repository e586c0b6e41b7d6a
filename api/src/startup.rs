//! Building and running the service: `Application::build` wires storage into the routes and
//! binds the listener, so tests can run it on port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use anyhow::Context;
use chrono::Duration;
use gateway_domain::{Clock, KeyLifecycle, SystemClock};
use gateway_persistence::{Database, PoolOptions};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use gateway_domain::services::Services;

use crate::abuse::{AbuseGuard, AbuseLimits, Flusher};
use crate::auth::assertion::AssertionRules;
use crate::auth::detached::JoseSignatures;
use crate::auth::jwk::check_key_set;
use crate::auth::oidc::Oidc;
use crate::auth::session::{SessionCodec, SessionJanitor, SessionStore};
use crate::auth::signing::{KeyEncryptionKey, SigningKeys};
use crate::client_address::TrustedProxies;
use crate::config::Settings;
use crate::error::ApiError;
use crate::extract::JsonLimit;
use crate::security_headers::SecurityHeaders;
use crate::state::{AppState, AuthPolicy, Publisher};
use crate::telemetry;

/// Opens (creating if needed) and migrates the configured database.
pub fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let url = settings.database_url()?;
    let options = PoolOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: std::time::Duration::from_secs(settings.database.connect_timeout_seconds),
    };
    let db =
        Database::connect(&url, &options).with_context(|| format!("opening the database {url}"))?;
    let applied = db
        .migrate()
        .with_context(|| format!("migrating the database {url}"))?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied database migrations");
    }
    Ok(db)
}

/// The use cases over the database's ports.
pub fn services(db: Arc<Database>, clock: Arc<dyn Clock>) -> Services {
    Services {
        organisations: db.clone(),
        keys: db.clone(),
        evidence: db.clone(),
        agreements: db.clone(),
        audit: db,
        signatures: Arc::new(JoseSignatures),
        templates: Arc::new(crate::templates::agreement_templates()),
        clock,
        hasher: Arc::new(gateway_persistence::Sha256Hasher),
        dns: Arc::new(crate::dns::NoTxtResolver),
        public_suffixes: Arc::new(crate::dns::PslSuffixes),
        domain_proof: Arc::new(gateway_domain::services::domains::DomainProofLimits::default()),
    }
}

/// The use cases, resolving domain proofs through the configured nameservers.
pub fn services_with_dns(
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    settings: &Settings,
) -> anyhow::Result<Services> {
    let mut services = services(db, clock);
    services.dns = Arc::new(crate::dns::HickoryTxtResolver::from_settings(
        &settings.dns,
    )?);
    services.domain_proof = Arc::new(crate::dns::proof_limits(&settings.dns));
    Ok(services)
}

/// The configured public address, or the bound one.
fn public_base_url(settings: &Settings, port: u16) -> String {
    let configured = settings.server.public_base_url.trim_end_matches('/');
    if configured.is_empty() {
        format!("http://{}:{port}", settings.server.host)
    } else {
        configured.to_owned()
    }
}

pub fn key_lifecycle(settings: &Settings) -> KeyLifecycle {
    KeyLifecycle {
        unused_after: Duration::days(i64::from(settings.auth.key_unused_after_days)),
        removal_grace: Duration::days(i64::from(settings.auth.key_removal_grace_days)),
    }
}

fn load_publisher(
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<Publisher>> {
    if settings.publisher.client_id.is_empty() {
        return Ok(None);
    }
    let file = &settings.publisher.jwks_file;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading publisher.jwks_file {file}"))?;
    let set: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
    let keys = set["keys"].as_array().cloned().unwrap_or_default();
    let keys = check_key_set(&keys, now)
        .map_err(|e| anyhow::anyhow!("publisher.jwks_file {file}: {e}"))?;
    anyhow::ensure!(!keys.is_empty(), "publisher.jwks_file {file} has no keys");
    Ok(Some(Publisher {
        client_id: settings.publisher.client_id.clone(),
        keys,
    }))
}

/// How often the server flushes finished minutes of failure counters into audit records.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The abuse limits from configuration.
pub fn abuse_limits(settings: &Settings) -> anyhow::Result<AbuseLimits> {
    Ok(AbuseLimits {
        trusted_proxies: TrustedProxies::parse(&settings.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?,
        registrations_per_minute: settings.registration.rate_limit_per_minute,
        registration_burst: settings.registration.rate_limit_burst,
        failed_assertions_per_minute: settings.auth.failed_assertions_per_minute,
        failed_assertions_per_client_per_minute: settings
            .auth
            .failed_assertions_per_client_per_minute,
        failed_sign_ins_per_minute: settings.oidc.failed_sign_ins_per_minute,
        tracked_clients: settings.server.rate_limit_tracked_clients,
    })
}

/// How often the server purges ended reviewer sessions.
const SESSION_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Session lifetimes from configuration.
pub fn session_policy(settings: &Settings) -> gateway_domain::SessionPolicy {
    gateway_domain::SessionPolicy {
        idle_timeout: Duration::minutes(i64::from(settings.oidc.session_idle_minutes.max(1))),
        lifetime: Duration::minutes(i64::from(settings.oidc.session_lifetime_minutes.max(1))),
    }
}

/// How many transactions of token issuances may be in flight at once: one on SQLite (one
/// writer at a time anyway), a few on PostgreSQL (a batch forms while others wait for their
/// flush).
fn issuance_committers(backend: gateway_persistence::Backend) -> usize {
    match backend {
        gateway_persistence::Backend::Sqlite => 1,
        gateway_persistence::Backend::Postgres => 4,
    }
}

/// The most issuances one transaction takes.
const ISSUANCE_BATCH: usize = 256;

fn issuance_committer(
    db: Arc<gateway_persistence::Database>,
    clock: Arc<dyn Clock>,
) -> crate::group_commit::GroupCommit<gateway_domain::Issuance, bool> {
    crate::group_commit::GroupCommit::start(
        "token-commit",
        issuance_committers(db.backend()),
        ISSUANCE_BATCH,
        move |batch: Vec<gateway_domain::Issuance>| {
            gateway_domain::ReplayCache::record_issuances(&*db, &batch, clock.now())
        },
    )
}

pub struct Application {
    port: u16,
    server: Server,
    sequencer: crate::audit_log::Sequencer,
    /// Stops (when the application is dropped) after the server.
    _replay_purger: crate::housekeeping::ReplayPurger,
    flusher: Flusher,
    session_janitor: SessionJanitor,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the database and binds `server.host:server.port` (port 0 picks a free one).
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock))
    }

    pub fn build_with_clock(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        Self::build_with_listener(settings, listener, clock)
    }

    /// Serves on an already-bound listener (tests that must know the port in advance).
    pub fn build_with_listener(
        settings: &Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let db = Arc::new(open_database(settings)?);
        let port = listener.local_addr()?.port();
        let address = listener.local_addr()?.to_string();
        let public_base_url = public_base_url(settings, port);
        let kek = KeyEncryptionKey::load(
            &settings.auth.key_encryption_key,
            &settings.auth.key_encryption_key_file,
        )?;
        let page_tokens = crate::page_token::PageTokens::new(kek.derive("page-tokens"));
        let audit_keys = crate::auth::checkpoint::AuditKeyRing::new(kek.derive("audit-keys"));
        let signing = Arc::new(
            SigningKeys::open(db.clone(), kek, public_base_url.clone())
                .context("opening the gateway's signing keys")?
                .reloading_every(std::time::Duration::from_secs(
                    settings.auth.signing_key_reload_seconds,
                )),
        );
        let seconds = |n: u64| Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX));
        let services = services_with_dns(db.clone(), clock.clone(), settings)?;
        let directory = gateway_domain::services::directory::DirectoryService {
            directory: db.clone(),
            clock: clock.clone(),
        };
        let sequencer = crate::audit_log::Sequencer::start(
            services.clone(),
            Some(directory.clone()),
            signing.clone(),
            audit_keys.clone(),
            std::time::Duration::from_millis(settings.audit.seal_interval_ms),
            std::time::Duration::from_secs(settings.audit.checkpoint_interval_seconds.max(1)),
        );
        let replay_purger = crate::housekeeping::ReplayPurger::start(
            db.clone(),
            clock.clone(),
            std::time::Duration::from_secs(settings.auth.replay_purge_interval_seconds),
        );
        let flusher = Flusher::start(db.clone(), clock.clone(), FLUSH_INTERVAL);
        let session_store = Arc::new(SessionStore::new(
            db.clone(),
            session_policy(settings),
            clock.clone(),
        ));
        let session_janitor = SessionJanitor::start(session_store.clone(), SESSION_PURGE_INTERVAL);
        let state = AppState {
            session_store,
            page_tokens,
            audit_keys,
            recorder: crate::audit_log::AuditRecorder::start(db.clone()),
            directory,
            calendars: gateway_domain::services::calendars::CalendarService {
                calendars: db.clone(),
                clock: clock.clone(),
            },
            free_busy_limiter: Arc::new(crate::rate_limit::RateLimiter::per_minute(
                settings.free_busy.queries_per_minute,
                settings.free_busy.query_burst,
                settings.server.rate_limit_tracked_clients,
            )),
            page_limiter: Arc::new(crate::rate_limit::RateLimiter::per_minute(
                settings.address_book.pages_per_minute,
                settings.address_book.page_burst,
                settings.server.rate_limit_tracked_clients,
            )),
            issuances: issuance_committer(db.clone(), clock.clone()),
            services,
            organisations: db.clone(),
            keys: db.clone(),
            replay: db.clone(),
            audit: db.clone(),
            health: db.clone(),
            clock: clock.clone(),
            public_base_url: public_base_url.clone(),
            abuse: Arc::new(AbuseGuard::new(
                abuse_limits(settings)?,
                db.clone(),
                clock.clone(),
            )),
            backend_name: db.backend().name(),
            signing,
            auth: AuthPolicy {
                assertion: AssertionRules {
                    token_endpoint: format!("{public_base_url}/oauth2/token"),
                    max_lifetime: seconds(settings.auth.assertion_max_lifetime_seconds),
                    max_lifetime_with_iat: seconds(
                        settings.auth.assertion_max_lifetime_with_iat_seconds,
                    ),
                    skew_seconds: settings.auth.clock_skew_seconds,
                },
                access_token_lifetime: seconds(settings.auth.access_token_lifetime_seconds),
                key_lifecycle: key_lifecycle(settings),
            },
            publisher: load_publisher(settings, clock.now())?.map(Arc::new),
            oidc: if settings.oidc.enabled() {
                let oidc = Oidc::new(settings.oidc.clone())?;
                if !oidc.bearer_enabled() {
                    tracing::warn!("oidc.audience is empty or equals oidc.client_id: provider bearer tokens are refused, so reviewer automation is off (people still sign in); set oidc.audience to the audience your provider issues this API's access tokens for");
                }
                Some(Arc::new(oidc))
            } else {
                None
            },
            sessions: Arc::new(SessionCodec::new(
                &settings.oidc.session_key,
                settings.oidc.session_lifetime_minutes,
                settings.oidc.cookie_secure,
            )?),
        };
        let document = crate::openapi::document();
        let known_routes = crate::routes::fallback::KnownRoutes::from_document(&document);
        let limit = settings.server.json_body_limit_bytes;
        let body_timeout = std::time::Duration::from_secs(settings.server.body_timeout_seconds);
        let security_headers = SecurityHeaders::for_public_base_url(&public_base_url);
        let mut server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .configure(crate::routes::configure)
                .into_app()
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .url("/openapi.json", document.clone())
                        // The validator badge would load an image from swagger.io: the docs'
                        // Content-Security-Policy allows this origin only.
                        .config(utoipa_swagger_ui::Config::default().validator_url("none")),
                )
                .app_data(web::Data::new(state.clone()))
                .app_data(JsonLimit(limit))
                .app_data(web::PayloadConfig::new(limit))
                .app_data(
                    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()),
                )
                .app_data(
                    web::QueryConfig::default().error_handler(|error, _: &HttpRequest| {
                        ApiError::Malformed {
                            detail: error.to_string(),
                            errors: Vec::new(),
                        }
                        .into()
                    }),
                )
                .app_data(web::Data::new(known_routes.clone()))
                .default_service(web::to(crate::routes::fallback::fallback))
                .app_data(web::Data::new(security_headers))
                .app_data(web::Data::new(crate::body_deadline::BodyDeadline(
                    body_timeout,
                )))
                .wrap(from_fn(crate::body_deadline::refuse_encoded_bodies))
                .wrap(from_fn(crate::body_deadline::body_deadline))
                .wrap(from_fn(crate::security_headers::security_headers))
                .wrap(from_fn(telemetry::request_id))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout_seconds);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        tracing::info!(%address, port, %public_base_url, database = %settings.database_url()?, "federation gateway listening");
        Ok(Self {
            port,
            server: server.run(),
            sequencer,
            _replay_purger: replay_purger,
            flusher,
            session_janitor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (in-flight requests finish) when asked.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM or `handle().stop(..)`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            mut sequencer,
            _replay_purger: replay_purger,
            mut flusher,
            session_janitor,
            ..
        } = self;
        let served = server.await;
        drop(replay_purger);
        // Seal what the last requests wrote before the process goes.
        actix_web::rt::task::spawn_blocking(move || {
            flusher.stop();
            drop(session_janitor);
            sequencer.stop()
        })
        .await
        .ok();
        served
    }
}
