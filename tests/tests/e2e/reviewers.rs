//! Reviewers: OpenID Connect sign-in driven as a browser would against a real provider,
//! provider-issued bearer tokens for automation, roles, and the audit trail.

use std::net::TcpListener;
use std::sync::Arc;

use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;
use secrecy::SecretString;
use serde_json::Value;

use crate::e2e_tests;
use crate::oidc_provider::{OidcProvider, ProviderKeys};
use crate::support::{problem_of, registration_typed, settings_for, TestApp};

const AUDIENCE: &str = "urn:federation-gateway";

/// A gateway wired to its own provider.
pub(crate) async fn gateway_with_provider(backend: Backend) -> (TestApp, OidcProvider) {
    gateway_with(backend, None).await
}

/// A gateway wired to its own provider, with `tweak` applied to its settings.
pub(crate) async fn gateway_with_provider_and(
    backend: Backend,
    tweak: impl FnOnce(&mut gateway_api::Settings),
) -> (TestApp, OidcProvider) {
    gateway_with_settings(backend, None, tweak).await
}

/// A gateway wired to its own provider, with the provider's development keys or fresh ones.
async fn gateway_with(backend: Backend, keys: Option<ProviderKeys>) -> (TestApp, OidcProvider) {
    gateway_with_settings(backend, keys, |_| {}).await
}

async fn gateway_with_settings(
    backend: Backend,
    keys: Option<ProviderKeys>,
    tweak: impl FnOnce(&mut gateway_api::Settings),
) -> (TestApp, OidcProvider) {
    let database = Arc::new(TestDatabase::new(backend));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let redirect = format!("{base}/auth/callback");
    let provider = match keys {
        None => OidcProvider::start(&redirect, AUDIENCE),
        Some(keys) => OidcProvider::start_with_keys(&redirect, AUDIENCE, keys),
    };
    let mut settings = settings_for(&database);
    settings.oidc.issuer_url = provider.issuer.clone();
    settings.oidc.client_id = "gateway".into();
    settings.oidc.client_secret = SecretString::from("gateway-secret");
    settings.oidc.redirect_url = redirect;
    settings.oidc.audience = AUDIENCE.into();
    // A rotation seconds after the last fetch must not wait out the refetch gap.
    settings.oidc.jwks_min_refetch_seconds = 0;
    tweak(&mut settings);
    (TestApp::spawn_on(listener, database, settings), provider)
}

fn header_of(token: &str) -> Value {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap()
}

/// The `action` of the first form on an HTML page, as an absolute URL.
fn form_action(issuer: &str, html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let end = start + html[start..].find('"').expect("end of action");
    let action = html[start..end].replace("&amp;", "&");
    if action.starts_with("http") {
        action
    } else {
        format!("{issuer}{action}")
    }
}

/// Signs in as `login` the way a browser does: follow the redirects, fill in the provider's
/// login form, give consent, come back. Returns the browser (with its cookies) and what the
/// last page said.
pub(crate) async fn browser_sign_in(
    app: &TestApp,
    provider: &OidcProvider,
    login: &str,
) -> (reqwest::Client, reqwest::Response) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    browser_sign_in_with(browser, app, provider, login).await
}

/// [`browser_sign_in`] with a browser of the caller's (e.g. one with its own cookie store).
pub(crate) async fn browser_sign_in_with(
    browser: reqwest::Client,
    app: &TestApp,
    provider: &OidcProvider,
    login: &str,
) -> (reqwest::Client, reqwest::Response) {
    let page = browser.get(app.url("/auth/login")).send().await.unwrap();
    assert!(
        page.url().as_str().starts_with(&provider.issuer),
        "the login went to the provider: {}",
        page.url()
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"login\""), "a login form: {html}");
    let action = form_action(&provider.issuer, &html);
    let consent = browser
        .post(action)
        .form(&[("prompt", "login"), ("login", login), ("password", "any")])
        .send()
        .await
        .unwrap();
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("name=\"prompt\" value=\"consent\""),
        "a consent form: {html}"
    );
    let action = form_action(&provider.issuer, &html);
    let done = browser
        .post(action)
        .form(&[("prompt", "consent")])
        .send()
        .await
        .unwrap();
    (browser, done)
}

e2e_tests! {
    async fn a_reviewer_signs_in_through_the_provider_and_uses_the_session(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        app.register_ok_typed(registration_typed(1)).await;
        let (browser, landed) = browser_sign_in(&app, &provider, "reviewer1").await;
        assert_eq!(landed.url().path(), "/auth/me", "back at the gateway");
        assert_eq!(landed.status(), 200);
        let me: Value = landed.json().await.unwrap();
        assert_eq!(me["subject"], "reviewer1");
        assert_eq!(me["roles"], serde_json::json!(["reviewer"]));
        assert_eq!(me["email"], "reviewer1@example.org");

        // The session cookie is HttpOnly, SameSite=Lax, bounded; it opens reviewer endpoints.
        let list: Value = browser.get(app.url("/v1/review/organisations")).send().await.unwrap().json().await.unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        // A reviewer is not an auditor.
        assert_eq!(browser.get(app.url("/v1/audit/events")).send().await.unwrap().status(), 403);

        // Sign out ends the session; like any change, it needs the own origin and the
        // session's CSRF token.
        assert_eq!(browser.post(app.url("/auth/logout")).send().await.unwrap().status(), 403);
        let out = browser
            .post(app.url("/auth/logout"))
            .header("origin", app.public_base_url())
            .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 204);
        let cookie = out.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
        assert!(cookie.starts_with("gw_session=") && cookie.contains("Max-Age=0"), "{cookie}");
        assert_eq!(browser.get(app.url("/auth/me")).send().await.unwrap().status(), 401);

        // Logins are on the audit trail.
        let events = app.all_events();
        assert!(events.iter().any(|e| e.action == "reviewer.login" && e.actor_id.as_deref() == Some("reviewer1")));
    }

    async fn session_cookies_are_protected(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let login = browser.get(app.url("/auth/login")).send().await.unwrap();
        assert_eq!(login.status(), 302);
        let location = login.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&provider.issuer));
        for wanted in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code"] {
            assert!(location.contains(wanted), "{wanted} in {location}");
        }
        let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Max-Age="), "{cookie}");
        assert!(!cookie.contains(&location[location.find("state=").unwrap() + 6..][..10]), "the state is sealed, not readable");

        // A callback without the browser's login state, or with the wrong state, is refused,
        // and counts nothing: pages elsewhere embedding /auth/callback (as images, say) must
        // not lock the reviewers behind one address out of signing in.
        let forged = browser.get(app.url("/auth/callback?code=abc&state=xyz")).send().await.unwrap();
        assert_eq!(forged.status(), 401);
        let stranger = reqwest::Client::new();
        for _ in 0..app.settings.oidc.failed_sign_ins_per_minute + 5 {
            let embedded = stranger.get(app.url("/auth/callback?code=abc&state=xyz")).send().await.unwrap();
            assert_eq!(embedded.status(), 401, "never 429: nothing was attempted");
        }
        // A real attempt that fails (this browser's state, a made-up code) is counted.
        let state = location[location.find("state=").unwrap() + 6..].split('&').next().unwrap().to_owned();
        let login_cookie = cookie.split(';').next().unwrap().to_owned();
        let failed = browser.get(app.url(&format!("/auth/callback?code=made-up&state={state}"))).header("cookie", login_cookie).send().await.unwrap();
        assert_eq!(failed.status(), 401);
        let (_, landed) = browser_sign_in(&app, &provider, "auditor1").await;
        let set_cookie: Vec<_> = landed.headers().get_all("set-cookie").iter().collect();
        assert!(set_cookie.is_empty(), "cookies were set on the redirect, not on /auth/me");
        // A tampered session cookie is worthless.
        let fake = browser.get(app.url("/auth/me")).header("cookie", "gw_session=eyJzdWJqZWN0IjoiYWRtaW4ifQ").send().await.unwrap();
        assert_eq!(fake.status(), 401);
        // Failed sign-ins are audited in aggregate, per source and minute.
        app.flush_failure_counts();
        let events = app.all_events();
        let counted: i64 = events.iter().filter(|e| e.action == "reviewer.login_failed" && e.details["source"] == "127.0.0.1").filter_map(|e| e.details["count"].as_i64()).sum();
        assert_eq!(counted, 1, "only the real attempt counts");
    }

    async fn automation_uses_provider_bearer_tokens_with_full_validation(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        app.register_ok_typed(registration_typed(1)).await;
        let token = provider.client_token("automation-reviewer", AUDIENCE).await;
        let api = app.api_as(&token);
        let me = api.reviewer_me().send().await.unwrap().into_inner();
        assert_eq!(me.subject, "automation-reviewer");
        assert_eq!(api.review_list_organisations().send().await.unwrap().into_inner().items.len(), 1);
        // The trail lists sealed records only: the server seals every 50 ms here.
        let mut listed = false;
        for _ in 0..100 {
            let audit = api.audit_list_events().send().await.unwrap().into_inner();
            listed = audit.items.iter().any(|e| e.action == "organisation.registered");
            if listed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(listed, "the registration never appeared in the sealed trail");

        // Missing role: authenticated, but not allowed.
        let no_role = provider.client_token("automation-no-role", AUDIENCE).await;
        assert_eq!(problem_of(app.api_as(&no_role).review_list_organisations().send().await).0, 403);
        // Wrong audience.
        let other_audience = provider.client_token("automation-reviewer", "urn:another-service").await;
        assert_eq!(problem_of(app.api_as(&other_audience).reviewer_me().send().await).0, 401);
        // Wrong issuer: another provider (with the same development keys, so only the issuer
        // check can catch it).
        let impostor = OidcProvider::start("http://127.0.0.1:1/auth/callback", AUDIENCE);
        let foreign = impostor.client_token("automation-reviewer", AUDIENCE).await;
        assert_eq!(problem_of(app.api_as(&foreign).reviewer_me().send().await).0, 401);
        // Tampered, and a gateway partner token, are refused too.
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(problem_of(app.api_as(&tampered).reviewer_me().send().await).0, 401);
        assert_eq!(problem_of(app.api().reviewer_me().send().await).0, 401);
    }
}

e2e_tests! {
    async fn sign_in_survives_a_provider_key_rotation(backend) {
        let (app, mut provider) = gateway_with(backend, Some(ProviderKeys::FreshRsa)).await;
        let (_, landed) = browser_sign_in(&app, &provider, "reviewer1").await;
        assert_eq!((landed.url().path(), landed.status().as_u16()), ("/auth/me", 200));
        let old_token = provider.client_token("automation-reviewer", AUDIENCE).await;
        app.api_as(&old_token).reviewer_me().send().await.unwrap();

        // The provider rotates: same issuer, a new key with a new kid, the old one gone.
        provider.rotate_keys();
        let new_token = provider.client_token("automation-reviewer", AUDIENCE).await;
        assert_ne!(header_of(&new_token)["kid"], header_of(&old_token)["kid"]);
        let (browser, landed) = browser_sign_in(&app, &provider, "approver1").await;
        assert_eq!(landed.status(), 200, "signed in with the rotated key: {}", landed.url());
        let me: Value = landed.json().await.unwrap();
        assert_eq!(me["subject"], "approver1");
        assert_eq!(me["roles"], serde_json::json!(["reviewer", "approver"]));
        assert_eq!(browser.get(app.url("/v1/review/organisations")).send().await.unwrap().status(), 200);
        assert_eq!(app.api_as(&new_token).reviewer_me().send().await.unwrap().into_inner().subject, "automation-reviewer");
        // Tokens signed with the dropped key stop working.
        assert_eq!(problem_of(app.api_as(&old_token).reviewer_me().send().await).0, 401);
    }

    async fn sign_in_works_with_an_es256_only_provider(backend) {
        let (app, provider) = gateway_with(backend, Some(ProviderKeys::FreshEs256Only)).await;
        let (browser, landed) = browser_sign_in(&app, &provider, "auditor1").await;
        assert_eq!(landed.status(), 200, "signed in with an ES256 ID token: {}", landed.url());
        let me: Value = landed.json().await.unwrap();
        assert_eq!(me["subject"], "auditor1");
        assert_eq!(me["roles"], serde_json::json!(["auditor"]));
        assert_eq!(browser.get(app.url("/v1/audit/events")).send().await.unwrap().status(), 200);
        let token = provider.client_token("automation-reviewer", AUDIENCE).await;
        assert_eq!(header_of(&token)["alg"], "ES256");
        assert_eq!(app.api_as(&token).reviewer_me().send().await.unwrap().into_inner().subject, "automation-reviewer");
    }

    async fn provider_bearer_tokens_are_off_without_a_distinct_audience(backend) {
        for audience in ["", "gateway"] {
            let database = Arc::new(TestDatabase::new(backend));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
            let provider = OidcProvider::start(&format!("{base}/auth/callback"), AUDIENCE);
            let mut settings = settings_for(&database);
            settings.oidc.issuer_url = provider.issuer.clone();
            settings.oidc.client_id = "gateway".into();
            settings.oidc.client_secret = SecretString::from("gateway-secret");
            settings.oidc.redirect_url = format!("{base}/auth/callback");
            settings.oidc.audience = audience.into();
            let app = TestApp::spawn_on(listener, database, settings);
            // Automation is off, whatever the token's audience ...
            for resource in [AUDIENCE, "urn:another-service"] {
                let token = provider.client_token("automation-reviewer", resource).await;
                assert_eq!(problem_of(app.api_as(&token).reviewer_me().send().await).0, 401, "{audience:?} {resource}");
            }
            // ... and people still sign in.
            let (_, landed) = browser_sign_in(&app, &provider, "reviewer1").await;
            assert_eq!(landed.status(), 200);
        }
    }
}

/// Without an identity provider configured, reviewer sign-in says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewer_sign_in_is_off_without_a_provider() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(
        app.client
            .get(app.url("/auth/login"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(problem_of(app.api().reviewer_me().send().await).0, 401);
}
