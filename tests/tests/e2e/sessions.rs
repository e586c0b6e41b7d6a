//! Reviewer sessions held server-side: the real cookie's attributes, sign-out that revokes
//! every copy of the cookie at every gateway instance, idle timeout and absolute lifetime
//! (on a clock the test moves), against the real test OpenID provider.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use gateway_api::Settings;
use gateway_domain::merkle::Sha256;
use gateway_domain::{Clock, SessionRepository};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;
use reqwest::header::HeaderValue;
use secrecy::SecretString;
use serde_json::Value;

use crate::e2e_tests;
use crate::oidc_provider::OidcProvider;
use crate::reviewers::browser_sign_in_with;
use crate::support::{settings_for, TestApp};

const AUDIENCE: &str = "urn:federation-gateway";

/// The real time plus however far the test has moved it.
#[derive(Debug, Clone, Default)]
struct MovableClock(Arc<AtomicI64>);

impl MovableClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.num_seconds(), Ordering::SeqCst);
    }
}

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        (Utc::now() + Duration::seconds(self.0.load(Ordering::SeqCst))).trunc_subsecs(6)
    }
}

/// A browser's cookie store that keeps every `Set-Cookie` it was sent, verbatim. It sends
/// cookies back by origin, ignoring their attributes (so a `Secure` cookie still travels over
/// the tests' plain HTTP); what the attributes say is asserted on the recorded headers.
#[derive(Debug, Default)]
struct RecordingJar {
    cookies: Mutex<HashMap<String, BTreeMap<String, String>>>,
    received: Mutex<Vec<(String, String)>>,
}

fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

impl reqwest::cookie::CookieStore for RecordingJar {
    fn set_cookies(&self, headers: &mut dyn Iterator<Item = &HeaderValue>, url: &reqwest::Url) {
        let mut cookies = self.cookies.lock().unwrap();
        let jar = cookies.entry(origin(url)).or_default();
        for header in headers {
            let raw = header.to_str().unwrap().to_owned();
            let pair = raw.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if raw.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            self.received
                .lock()
                .unwrap()
                .push((url.path().to_owned(), raw));
        }
    }

    fn cookies(&self, url: &reqwest::Url) -> Option<HeaderValue> {
        let cookies = self.cookies.lock().unwrap();
        let jar = cookies.get(&origin(url))?;
        let header = jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        (!header.is_empty()).then(|| HeaderValue::from_str(&header).unwrap())
    }
}

impl RecordingJar {
    /// The `Set-Cookie` headers for `name` that responses to `path` carried.
    fn received(&self, path: &str, name: &str) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, raw)| p == path && raw.starts_with(&format!("{name}=")))
            .map(|(_, raw)| raw.clone())
            .collect()
    }
}

/// A gateway wired to `provider` (started here when none is given), on `database`, with the
/// test's clock and settings.
fn gateway(
    database: Arc<TestDatabase>,
    provider: Option<&OidcProvider>,
    clock: &MovableClock,
    tweak: impl FnOnce(&mut Settings),
) -> (TestApp, Option<OidcProvider>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let started = provider
        .is_none()
        .then(|| OidcProvider::start(&format!("{base}/auth/callback"), AUDIENCE));
    let issuer = provider.or(started.as_ref()).unwrap().issuer.clone();
    let mut settings = settings_for(&database);
    settings.oidc.issuer_url = issuer;
    settings.oidc.client_id = "gateway".into();
    settings.oidc.client_secret = SecretString::from("gateway-secret");
    settings.oidc.redirect_url = format!("{base}/auth/callback");
    settings.oidc.audience = AUDIENCE.into();
    tweak(&mut settings);
    let app = TestApp::spawn_on_with_clock(listener, database, settings, Arc::new(clock.clone()));
    (app, started)
}

/// A reviewer signed in through the provider: the browser, its recorded cookies, the session
/// id the cookie carries and what `/auth/me` said.
struct SignedIn {
    browser: reqwest::Client,
    jar: Arc<RecordingJar>,
    session_id: String,
    me: Value,
}

async fn sign_in(app: &TestApp, provider: &OidcProvider, login: &str) -> SignedIn {
    let jar = Arc::new(RecordingJar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let (browser, landed) = browser_sign_in_with(browser, app, provider, login).await;
    assert_eq!(landed.url().path(), "/auth/me");
    assert_eq!(landed.status(), 200);
    let me: Value = landed.json().await.unwrap();
    let set = jar.received("/auth/callback", "gw_session");
    assert_eq!(
        set.len(),
        1,
        "one session cookie, set by the callback: {set:?}"
    );
    let session_id = set[0]
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("gw_session=")
        .to_owned();
    SignedIn {
        browser,
        jar,
        session_id,
        me,
    }
}

/// A client holding nothing but a copy of the session cookie (another machine, say).
async fn with_copied_cookie(app: &TestApp, session_id: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .header("cookie", format!("gw_session={session_id}"))
        .send()
        .await
        .unwrap()
}

fn digest(session_id: &str) -> String {
    gateway_domain::audit::hex(&gateway_persistence::Sha256Hasher.sha256(&[session_id.as_bytes()]))
}

async fn logout(app: &TestApp, session_id: &str, csrf: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/auth/logout"))
        .header("cookie", format!("gw_session={session_id}"))
        .header("origin", app.public_base_url())
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap()
}

e2e_tests! {
    async fn the_session_cookie_is_an_opaque_id_with_hardened_attributes(backend) {
        let clock = MovableClock::default();
        let database = Arc::new(TestDatabase::new(backend));
        let (app, provider) = gateway(database, None, &clock, |s| s.oidc.cookie_secure = true);
        let provider = provider.unwrap();
        let signed_in = sign_in(&app, &provider, "approver1").await;
        assert_eq!(signed_in.me["subject"], "approver1");
        assert_eq!(signed_in.me["roles"], serde_json::json!(["reviewer", "approver"]));

        // The real Set-Cookie of the callback, attribute by attribute.
        let cookie = &signed_in.jar.received("/auth/callback", "gw_session")[0];
        let attributes: Vec<&str> = cookie.split(';').skip(1).map(str::trim).collect();
        for wanted in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=28800"] {
            assert!(attributes.contains(&wanted), "{wanted} in {cookie}");
        }
        assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "host-only: {cookie}");

        // The value is 256 random bits and nothing else: no identity, no roles.
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&signed_in.session_id).unwrap();
        assert_eq!(id.len(), 32, "{cookie}");
        // The database keeps its SHA-256, never the id itself.
        let db = app.open_database();
        let stored = db.find_session(&digest(&signed_in.session_id)).unwrap().expect("stored by digest");
        assert_eq!(stored.identity.subject, "approver1");
        assert_eq!(stored.csrf_token, signed_in.me["csrf_token"].as_str().unwrap());
        assert_eq!(stored.expires_at, stored.created_at + Duration::minutes(480));
        assert!(db.find_session(&signed_in.session_id).unwrap().is_none());
        let login = app.all_events().into_iter().find(|e| e.action == "reviewer.login").expect("sign-in audited");
        assert!(!login.details.to_string().contains(&signed_in.session_id), "the id is never recorded");

        // The login-state cookie went the same careful way, and was deleted on arrival.
        let login_cookie = &signed_in.jar.received("/auth/login", "gw_login")[0];
        for wanted in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/auth"] {
            assert!(login_cookie.split(';').any(|a| a.trim() == wanted), "{wanted} in {login_cookie}");
        }
        assert!(signed_in.jar.received("/auth/callback", "gw_login")[0].contains("Max-Age=0"));

        // A cookie that is not a session id of ours signs nobody in.
        for forged in ["eyJzdWJqZWN0IjoiYWRtaW4ifQ".to_owned(), "A".repeat(43), digest(&signed_in.session_id)] {
            assert_eq!(with_copied_cookie(&app, &forged, "/auth/me").await.status(), 401, "{forged}");
        }
    }

    async fn a_copied_cookie_stops_working_after_logout(backend) {
        let clock = MovableClock::default();
        let database = Arc::new(TestDatabase::new(backend));
        let (app, provider) = gateway(database, None, &clock, |_| {});
        let provider = provider.unwrap();
        let signed_in = sign_in(&app, &provider, "reviewer1").await;
        let csrf = signed_in.me["csrf_token"].as_str().unwrap().to_owned();
        let copy = signed_in.session_id.clone();
        assert_eq!(with_copied_cookie(&app, &copy, "/v1/review/organisations").await.status(), 200, "a copy works while the session lives");

        // Sign-out is a change like any other: own origin and the session's CSRF token.
        let forged = signed_in.browser.post(app.url("/auth/logout")).header("origin", "https://evil.example").header("x-csrf-token", &csrf).send().await.unwrap();
        assert_eq!(forged.status(), 403);
        let no_token = signed_in.browser.post(app.url("/auth/logout")).header("origin", app.public_base_url()).send().await.unwrap();
        assert_eq!(no_token.status(), 403);
        assert_eq!(with_copied_cookie(&app, &copy, "/auth/me").await.status(), 200, "refused sign-outs end nothing");

        let out = signed_in.browser.post(app.url("/auth/logout")).header("origin", app.public_base_url()).header("x-csrf-token", &csrf).send().await.unwrap();
        assert_eq!(out.status(), 204);
        let removal = &signed_in.jar.received("/auth/logout", "gw_session")[0];
        assert!(removal.starts_with("gw_session=;") && removal.contains("Max-Age=0") && removal.contains("Path=/"), "{removal}");

        // The copy is worth nothing now, anywhere, for reading or for signing out again.
        assert_eq!(with_copied_cookie(&app, &copy, "/auth/me").await.status(), 401);
        assert_eq!(with_copied_cookie(&app, &copy, "/v1/review/organisations").await.status(), 401);
        assert_eq!(logout(&app, &copy, &csrf).await.status(), 401);
        let stored = app.open_database().find_session(&digest(&copy)).unwrap().expect("kept until purged");
        assert!(stored.revoked_at.is_some());

        // Sign-in and sign-out are on the audit trail, joined by the session reference.
        let events = app.all_events();
        let login = events.iter().find(|e| e.action == "reviewer.login").unwrap();
        let logouts: Vec<_> = events.iter().filter(|e| e.action == "reviewer.logout").collect();
        assert_eq!(logouts.len(), 1, "one sign-out recorded");
        assert_eq!(logouts[0].actor_id.as_deref(), Some("reviewer1"));
        assert_eq!(logouts[0].details["session"], login.details["session"]);
        assert!(!logouts[0].details.to_string().contains(&copy));
    }

    async fn sessions_end_after_the_idle_timeout_but_not_while_in_use(backend) {
        let clock = MovableClock::default();
        let database = Arc::new(TestDatabase::new(backend));
        let (app, provider) = gateway(database, None, &clock, |_| {});
        let provider = provider.unwrap();
        let signed_in = sign_in(&app, &provider, "reviewer1").await;
        let db = app.open_database();
        let stored = || db.find_session(&digest(&signed_in.session_id)).unwrap().unwrap();
        let signed_in_at = stored().last_seen_at;

        // Used within the minute: no write.
        clock.advance(Duration::seconds(30));
        assert_eq!(signed_in.browser.get(app.url("/auth/me")).send().await.unwrap().status(), 200);
        assert_eq!(stored().last_seen_at, signed_in_at, "last use is not written on every request");
        // Used every 29 minutes: the session lives on, its last use moving with it.
        for _ in 0..3 {
            clock.advance(Duration::minutes(29));
            assert_eq!(signed_in.browser.get(app.url("/v1/review/organisations")).send().await.unwrap().status(), 200);
        }
        assert!(stored().last_seen_at >= signed_in_at + Duration::minutes(87));
        // 30 minutes (oidc.session_idle_minutes) unused: ended.
        clock.advance(Duration::minutes(30));
        assert_eq!(signed_in.browser.get(app.url("/auth/me")).send().await.unwrap().status(), 401);
        assert_eq!(with_copied_cookie(&app, &signed_in.session_id, "/auth/me").await.status(), 401);
    }

    async fn sessions_end_at_their_absolute_lifetime_however_busy(backend) {
        let clock = MovableClock::default();
        let database = Arc::new(TestDatabase::new(backend));
        let (app, provider) = gateway(database, None, &clock, |_| {});
        let provider = provider.unwrap();
        let signed_in = sign_in(&app, &provider, "reviewer1").await;
        // Busy all day: a request every 20 minutes, up to 7 h 40 min after sign-in.
        for _ in 0..23 {
            clock.advance(Duration::minutes(20));
            assert_eq!(signed_in.browser.get(app.url("/auth/me")).send().await.unwrap().status(), 200);
        }
        // 8 hours (oidc.session_lifetime_minutes) after sign-in it ends all the same.
        clock.advance(Duration::minutes(20));
        assert_eq!(signed_in.browser.get(app.url("/auth/me")).send().await.unwrap().status(), 401);
        // Signing in again gives a new session.
        let again = sign_in(&app, &provider, "reviewer1").await;
        assert_ne!(again.session_id, signed_in.session_id);
        assert_eq!(again.browser.get(app.url("/auth/me")).send().await.unwrap().status(), 200);
    }

    async fn a_sign_out_at_another_instance_ends_the_session_everywhere(backend) {
        let clock = MovableClock::default();
        let database = Arc::new(TestDatabase::new(backend));
        let (one, provider) = gateway(database.clone(), None, &clock, |_| {});
        let provider = provider.unwrap();
        // A replica as deployed: no sequencer of its own (the first instance seals).
        let (two, _) = gateway(database, Some(&provider), &clock, |s| s.audit.seal_interval_ms = 0);
        let signed_in = sign_in(&one, &provider, "auditor1").await;
        let csrf = signed_in.me["csrf_token"].as_str().unwrap().to_owned();
        // The other instance knows the session: the database is the only place it lives.
        let at_two = with_copied_cookie(&two, &signed_in.session_id, "/auth/me").await;
        assert_eq!(at_two.status(), 200);
        assert_eq!(at_two.json::<Value>().await.unwrap()["csrf_token"], csrf.as_str());
        assert_eq!(logout(&two, &signed_in.session_id, &csrf).await.status(), 204);
        // Ended at the first instance too, at once.
        assert_eq!(signed_in.browser.get(one.url("/auth/me")).send().await.unwrap().status(), 401);
        assert_eq!(with_copied_cookie(&one, &signed_in.session_id, "/v1/audit/events").await.status(), 401);
    }
}

/// Ended sessions are purged: `maintenance` deletes revoked, idle and expired ones and keeps
/// live ones (the server runs the same purge every minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_purges_ended_sessions() {
    let clock = MovableClock::default();
    let database = Arc::new(TestDatabase::new(Backend::Sqlite));
    let (app, provider) = gateway(database, None, &clock, |_| {});
    let provider = provider.unwrap();
    let ended = sign_in(&app, &provider, "reviewer1").await;
    let live = sign_in(&app, &provider, "approver1").await;
    let csrf = ended.me["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(logout(&app, &ended.session_id, &csrf).await.status(), 204);
    let (database, settings) = app.stop().await;
    let db = database.open();
    let report = gateway_api::commands::maintenance(&settings, Utc::now()).unwrap();
    assert_eq!(report.sessions_purged, 1, "the revoked one");
    assert!(db
        .find_session(&digest(&ended.session_id))
        .unwrap()
        .is_none());
    assert!(db
        .find_session(&digest(&live.session_id))
        .unwrap()
        .is_some());
    let later = Utc::now() + Duration::minutes(31);
    assert_eq!(
        gateway_api::commands::maintenance(&settings, later)
            .unwrap()
            .sessions_purged,
        1,
        "the idle one"
    );
    assert!(db
        .find_session(&digest(&live.session_id))
        .unwrap()
        .is_none());
}
