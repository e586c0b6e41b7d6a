//! Liveness, readiness, request ids, unknown routes, problem-type documents.

use std::sync::Arc;

use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;
use serde_json::Value;

use crate::e2e_tests;
use crate::support::{settings_for, TestApp};

const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

e2e_tests! {
    async fn health_and_readiness_answer(backend) {
        let app = TestApp::spawn(backend).await;
        let live = app.api().healthz().send().await.unwrap();
        assert_eq!(live.status(), 200);
        assert_eq!(live.into_inner().status, "ok");
        let ready = app.api().readyz().send().await.unwrap().into_inner();
        assert_eq!(ready.status, "ready");
        assert_eq!(ready.database.as_deref(), Some(backend.name()));
    }

    async fn every_response_carries_a_request_id(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

        let kept = app.client.get(app.url("/nope")).header("x-request-id", "trace-abc.123").send().await.unwrap();
        assert_eq!(kept.headers()["x-request-id"], "trace-abc.123");
        assert_eq!(kept.status(), 404);
        assert_eq!(kept.headers()["content-type"], "application/problem+json");

        let replaced = app.client.get(app.url("/healthz")).header("x-request-id", "bad id <script>").send().await.unwrap();
        assert_ne!(replaced.headers()["x-request-id"], "bad id <script>");
    }

    async fn problem_types_are_documented_where_they_point(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.client.get(app.url("/nope")).send().await.unwrap();
        let problem: Value = response.json().await.unwrap();
        let type_uri = problem["type"].as_str().unwrap();
        let slug = type_uri.strip_prefix("/problems/").unwrap();
        let doc = app.api().get_problem_type().slug(slug).send().await.unwrap().into_inner();
        assert_eq!(doc.type_, type_uri);
        assert_eq!(doc.status, 404);
        assert!(!doc.description.is_empty());
        // The client only sends documented slugs; an unknown one needs raw HTTP.
        let unknown = app.client.get(app.url("/problems/no-such-problem")).send().await.unwrap();
        assert_eq!(unknown.status(), 404);
    }

    async fn wrong_methods_get_405_with_allow(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.client.delete(app.url("/v1/registrations")).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let response = app.client.put(app.url(&format!("/v1/organisations/{}", uuid::Uuid::now_v7()))).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, PATCH");
        assert_eq!(app.client.delete(app.url("/no/such/path")).send().await.unwrap().status(), 404);
    }

    async fn openapi_and_swagger_ui_are_served(backend) {
        let app = TestApp::spawn(backend).await;
        let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc["paths"]["/v1/registrations"]["post"].is_object());
        let ui = app.client.get(app.url("/docs/")).send().await.unwrap();
        assert_eq!(ui.status(), 200);
        assert!(ui.text().await.unwrap().contains("swagger"));
    }
}

/// Security headers on every answer: API, problems, docs; HSTS only behind an https address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in [
        "/healthz",
        "/openapi.json",
        "/nope",
        "/v1/review/organisations",
        "/auth/login",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["content-security-policy"], API_CSP, "{path}");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "{path}: http only"
        );
    }
    // Swagger UI gets its own policy: same origin only, no inline or eval'd script.
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("http") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = docs.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("https://"),
        "the page loads nothing inline or foreign: {html}"
    );
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        initializer.headers()["content-security-policy"],
        csp.as_str()
    );
    let initializer = initializer.text().await.unwrap();
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "no validator badge from swagger.io: {initializer}"
    );

    let database = Arc::new(TestDatabase::new(Backend::Sqlite));
    let mut settings = settings_for(&database);
    settings.server.public_base_url = "https://gateway.test".into();
    let app = TestApp::spawn_with(database, settings).await;
    for path in ["/healthz", "/nope", "/docs/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
}
