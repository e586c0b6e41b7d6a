//! Spawning the gateway for a test, and helpers to talk to it.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use gateway_api::{Application, Settings};
use gateway_client::types::{self, Problem};
use gateway_client::{Error as ClientError, ResponseValue};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{Backend, Database};
use secrecy::SecretString;
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub database: Arc<TestDatabase>,
    handle: ServerHandle,
}

pub fn settings_for(database: &TestDatabase) -> Settings {
    let mut settings = Settings::defaults().expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.shutdown_timeout_seconds = 1;
    settings.database.url = SecretString::from(database.url.expose());
    settings.database.max_connections = 4;
    // A test's database is dropped while its server may still be running: fail fast then.
    settings.database.connect_timeout_seconds = 1;
    settings.registration.rate_limit_per_minute = 10_000;
    settings.registration.rate_limit_burst = 10_000;
    // A fixed test key-encryption key, so nothing is written outside the test's database.
    settings.auth.key_encryption_key =
        SecretString::from("dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=");
    settings.oidc.cookie_secure = false;
    // Seal and checkpoint often, so tests see the sealed trail without waiting long.
    settings.audit.seal_interval_ms = 50;
    settings.audit.checkpoint_interval_seconds = 1;
    settings
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let database = Arc::new(TestDatabase::new(backend));
        let settings = settings_for(&database);
        Self::spawn_with(database, settings).await
    }

    pub async fn spawn_with(database: Arc<TestDatabase>, settings: Settings) -> TestApp {
        Self::spawn_with_clock(database, settings, Arc::new(gateway_domain::SystemClock)).await
    }

    pub async fn spawn_with_clock(
        database: Arc<TestDatabase>,
        settings: Settings,
        clock: Arc<dyn gateway_domain::Clock>,
    ) -> TestApp {
        let app = Application::build_with_clock(&settings, clock).expect("the application builds");
        Self::serve(app, database, settings)
    }

    /// Serves on a listener bound in advance (when the port must be known before start-up).
    pub fn spawn_on(
        listener: std::net::TcpListener,
        database: Arc<TestDatabase>,
        settings: Settings,
    ) -> TestApp {
        Self::spawn_on_with_clock(
            listener,
            database,
            settings,
            Arc::new(gateway_domain::SystemClock),
        )
    }

    /// [`Self::spawn_on`] with the clock the test controls.
    pub fn spawn_on_with_clock(
        listener: std::net::TcpListener,
        database: Arc<TestDatabase>,
        settings: Settings,
        clock: Arc<dyn gateway_domain::Clock>,
    ) -> TestApp {
        let app = Application::build_with_listener(&settings, listener, clock)
            .expect("the application builds");
        Self::serve(app, database, settings)
    }

    fn serve(app: Application, database: Arc<TestDatabase>, settings: Settings) -> TestApp {
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            client: reqwest::Client::new(),
            settings,
            database,
            handle,
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(self) -> (Arc<TestDatabase>, Settings) {
        self.handle.stop(true).await;
        (self.database, self.settings)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A direct handle on the test's database, to check what was (not) stored.
    pub fn open_database(&self) -> Database {
        self.database.open()
    }

    /// The generated client, unauthenticated.
    pub fn api(&self) -> gateway_client::Client {
        gateway_client::Client::new(&self.base)
    }

    /// The generated client, sending `token` as its bearer token.
    pub fn api_as(&self, token: &str) -> gateway_client::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("http client");
        gateway_client::Client::new_with_client(&self.base, http)
    }

    /// Registers through the generated client; returns the response with its headers.
    pub async fn register_typed(
        &self,
        body: types::RegistrationRequest,
    ) -> Result<ResponseValue<types::RegistrationResponse>, ClientError<Problem>> {
        self.api().register_organisation().body(body).send().await
    }

    /// Registers (generated client) and returns (id, token, response).
    pub async fn register_ok_typed(
        &self,
        body: types::RegistrationRequest,
    ) -> (uuid::Uuid, String, types::RegistrationResponse) {
        let response = self
            .register_typed(body)
            .await
            .expect("registered")
            .into_inner();
        (
            response.id,
            response.registration_access_token.clone(),
            response,
        )
    }

    /// This gateway's token endpoint URL (the audience of client assertions).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.public_base_url())
    }

    /// The gateway's public address: configured, or the bound one.
    pub fn public_base_url(&self) -> String {
        if self.settings.server.public_base_url.is_empty() {
            self.base.clone()
        } else {
            self.settings.server.public_base_url.clone()
        }
    }

    /// Registers `key` as the organisation's only key, with its registration token.
    pub async fn put_keys(
        &self,
        id: uuid::Uuid,
        token: &str,
        jwks: Vec<Value>,
    ) -> Result<ResponseValue<types::PartnerKeySetResponse>, ClientError<Problem>> {
        let keys = jwks
            .into_iter()
            .map(|k| k.as_object().expect("jwk object").clone())
            .collect();
        self.api_as(token)
            .put_organisation_jwks()
            .id(id)
            .body(types::JwksRequest { keys })
            .send()
            .await
    }

    /// Asks the token endpoint (through the generated client) with `assertion`.
    pub async fn request_token(
        &self,
        assertion: &str,
        scope: Option<&str>,
    ) -> Result<ResponseValue<types::TokenResponse>, ClientError<types::OAuthErrorResponse>> {
        self.api()
            .issue_token()
            .body(types::TokenRequest {
                grant_type: "client_credentials".parse().expect("the grant type"),
                client_assertion_type: crate::keys::ASSERTION_TYPE
                    .parse()
                    .expect("the assertion type"),
                client_assertion: assertion.parse().expect("a JWT's shape"),
                scope: scope.map(|s| s.parse().expect("scope names")),
            })
            .send()
            .await
    }

    /// An access token for organisation `id`, signed for with `key` (already registered).
    pub async fn access_token(&self, id: uuid::Uuid, key: &crate::keys::TestKey) -> String {
        let assertion = crate::keys::sign(
            key,
            &crate::keys::claims(&id.to_string(), &self.token_endpoint()),
        );
        self.request_token(&assertion, None)
            .await
            .expect("token issued")
            .into_inner()
            .access_token
    }

    /// Flushes every failure count into its aggregated audit record, as the server's periodic
    /// flush does once the minute is over.
    pub fn flush_failure_counts(&self) {
        gateway_api::abuse::flush_finished(
            &self.open_database(),
            chrono::Utc::now() + chrono::Duration::seconds(61),
        )
        .expect("flushed");
    }

    /// Raw HTTP, for malformed bodies the generated client cannot send.
    /// Every audit event.
    pub fn all_events(&self) -> Vec<gateway_domain::AuditEvent> {
        use gateway_domain::AuditRepository;
        self.open_database()
            .list_events(0, 10_000)
            .expect("audit events")
    }

    /// The audit events about organisations (leaving out the gateway's own, such as the
    /// signing key it creates at first start).
    pub fn organisation_events(&self) -> Vec<gateway_domain::AuditEvent> {
        use gateway_domain::AuditRepository;
        self.open_database()
            .list_events(0, 1000)
            .expect("audit events")
            .into_iter()
            .filter(|e| e.subject_type == "organisation")
            .collect()
    }

    pub async fn register(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/registrations"))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_organisation(&self, id: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.url(&format!("/v1/organisations/{id}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn patch_organisation(
        &self,
        id: &str,
        token: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .patch(self.url(&format!("/v1/organisations/{id}")))
            .bearer_auth(token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request sent")
    }
}

/// A valid registration, unique by `n` (ODS code and domain), as the generated client's type.
pub fn registration_typed(n: u32) -> types::RegistrationRequest {
    serde_json::from_value(registration(n)).expect("a valid registration")
}

/// The problem a generated-client call failed with, and its status.
pub fn problem_of<T: std::fmt::Debug>(
    result: Result<ResponseValue<T>, ClientError<Problem>>,
) -> (u16, Problem) {
    match result {
        Err(ClientError::ErrorResponse(response)) => {
            let status = response.status().as_u16();
            assert_eq!(
                response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json")
            );
            (status, response.into_inner())
        }
        other => panic!("expected a problem response, got {other:?}"),
    }
}

/// Asserts the problem has `status` and names `field` with `rule`.
pub fn assert_field_problem(got: &(u16, Problem), status: u16, field: &str, rule: &str) {
    assert_eq!(got.0, status, "for {field}/{rule}: {:?}", got.1);
    assert!(got.1.type_.starts_with("/problems/"));
    assert!(
        got.1
            .errors
            .iter()
            .flatten()
            .any(|e| e.field == field && e.rule == rule),
        "expected {field}/{rule} in {:?}",
        got.1
    );
}

/// A valid registration, unique by `n` (ODS code and domain), as raw JSON.
pub fn registration(n: u32) -> Value {
    json!({
        "ods_code": format!("ab{n:03}"),
        "name": format!("Care Organisation {n}"),
        "category": "social_care_provider",
        "exchange_version": "exchange_2016",
        "domains": [format!("care{n}.example.org")],
        "contacts": {
            "ig_lead": {"name": "Ada Lovelace", "email": format!("ada@care{n}.example.org")},
            "technical": {"name": "Alan Turing", "email": format!("alan@care{n}.example.org")}
        },
        "business_need": "Our district nurses need to find and email GP practice staff."
    })
}

/// Asserts a problem+json response with `status` whose `errors` name `field` with `rule`.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    field: &str,
    rule: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "for {field}/{rule}");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && e["rule"] == rule),
        "expected {field}/{rule} in {body}"
    );
    body
}

/// Declares an async test per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! e2e_tests {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($backend: gateway_persistence::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(gateway_persistence::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(gateway_persistence::Backend::Postgres).await
                }
            }
        )*
    };
}
