//! Building and running the service: `Application::build` wires storage into the routes and
//! binds the listener, so tests can run it on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use anyhow::Context;
use gateway_domain::{Clock, SystemClock};
use gateway_persistence::{Database, PoolOptions};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Settings;
use crate::error::ApiError;
use crate::extract::JsonLimit;
use crate::rate_limit::RateLimiter;
use crate::state::AppState;
use crate::telemetry;

/// Opens (creating if needed) and migrates the configured database.
pub fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let url = settings.database_url()?;
    let options = PoolOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: Duration::from_secs(settings.database.connect_timeout_seconds),
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

pub struct Application {
    port: u16,
    server: Server,
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
        settings.validate()?;
        let db = Arc::new(open_database(settings)?);
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        let port = listener.local_addr()?.port();
        let state = AppState {
            organisations: db.clone(),
            health: db.clone(),
            clock,
            public_base_url: Some(
                settings
                    .server
                    .public_base_url
                    .trim_end_matches('/')
                    .to_owned(),
            )
            .filter(|url| !url.is_empty()),
            registration_limiter: Arc::new(RateLimiter::per_minute(
                settings.registration.rate_limit_per_minute,
                settings.registration.rate_limit_burst,
            )),
            backend_name: db.backend().name(),
        };
        let document = crate::openapi::document();
        let known_routes = crate::routes::fallback::KnownRoutes::from_document(&document);
        let limit = settings.server.json_body_limit_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .configure(crate::routes::configure)
                .into_app()
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document.clone()))
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
                .wrap(from_fn(telemetry::request_id))
        })
        .listen(listener)?
        .shutdown_timeout(settings.server.shutdown_timeout_seconds);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        tracing::info!(%address, port, database = %settings.database_url()?, "federation gateway listening");
        Ok(Self {
            port,
            server: server.run(),
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
        self.server.await
    }
}
