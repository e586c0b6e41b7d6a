//! Abuse limits: failed assertions and registrations limited per client address across
//! replicas (two `Application`s on one database), client addresses through trusted proxies
//! only, IPv6 by /64, honest Retry-After, a hammered client id still served, failures audited
//! in aggregate, and caller text bounded wherever it is stored; on both backends.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use gateway_domain::{AuditRepository, FixedClock};
use gateway_persistence::testing::TestDatabase;
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::keys::{claims, sign, token_form, TestKey};
use crate::support::{registration, settings_for, TestApp};

/// A fixed "now" for both replicas, so the limits' minute does not roll over mid-test; the
/// honest Retry-After is then exactly the rest of that minute.
fn fixed_now() -> DateTime<Utc> {
    Utc::now()
}

fn rest_of_minute(now: DateTime<Utc>) -> u64 {
    let into =
        now.timestamp().rem_euclid(60) as f64 + f64::from(now.timestamp_subsec_millis()) / 1000.0;
    (60.0 - into).ceil().max(1.0) as u64
}

/// Two replicas of one gateway on one database (the second runs no sequencer, as a
/// deployment's other replicas need not).
async fn replicas(
    backend: gateway_persistence::Backend,
    edit: impl Fn(&mut gateway_api::Settings),
    now: DateTime<Utc>,
) -> (TestApp, TestApp) {
    let database = Arc::new(TestDatabase::new(backend));
    let mut settings = settings_for(&database);
    settings.server.public_base_url = "http://gateway.test".to_owned();
    edit(&mut settings);
    let clock = Arc::new(FixedClock(now));
    let a = TestApp::spawn_with_clock(database.clone(), settings.clone(), clock.clone()).await;
    settings.audit.seal_interval_ms = 0;
    let b = TestApp::spawn_with_clock(database, settings, clock).await;
    (a, b)
}

/// A registered organisation with one key.
async fn partner(app: &TestApp, n: u32, key: &TestKey) -> uuid::Uuid {
    let response = app.register(&registration(n)).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let token = body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.put_keys(id, &token, vec![key.jwk()])
        .await
        .expect("keys stored");
    id
}

/// Posts a token request, optionally as forwarded for `client` by a proxy.
async fn token(app: &TestApp, assertion: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&token_form(assertion));
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    request.send().await.unwrap()
}

/// An assertion for `client` signed by a key it does not have.
fn bad_assertion(app: &TestApp, client: &str) -> String {
    sign(
        &TestKey::new("ed25519_b", "k1"),
        &claims(client, &app.token_endpoint()),
    )
}

fn events(app: &TestApp, action: &str) -> Vec<gateway_domain::AuditEvent> {
    app.open_database()
        .list_events(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

/// What the server's periodic flush does once the minute of `now` is over.
fn flush_after(app: &TestApp, now: DateTime<Utc>) {
    gateway_api::abuse::flush_finished(&app.open_database(), now + Duration::seconds(61)).unwrap();
}

e2e_tests! {
    async fn failed_assertions_lock_out_an_address_across_replicas_with_an_honest_retry_after(backend) {
        let now = fixed_now();
        let (a, b) = replicas(backend, |s| s.auth.failed_assertions_per_minute = 3, now).await;
        let key = TestKey::new("ed25519_a", "k1");
        let id = partner(&a, 1, &key).await.to_string();
        for (replica, n) in [(&a, 1), (&a, 2), (&b, 3)] {
            assert_eq!(token(replica, &bad_assertion(replica, &id), None).await.status(), 401, "failure {n}");
        }
        // The third failure was on the other replica: both now refuse this address's
        // failures, writing nothing more, until the minute ends.
        for replica in [&b, &a] {
            let refused = token(replica, &bad_assertion(replica, &id), None).await;
            assert_eq!(refused.status(), 429);
            assert_eq!(refused.headers()["retry-after"].to_str().unwrap(), rest_of_minute(now).to_string());
            assert_eq!(refused.headers()["cache-control"], "no-store");
            let body: Value = refused.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
        }
        let valid = sign(&key, &claims(&id, &a.token_endpoint()));
        // A valid assertion is still served: whoever shares the address (a NAT, a browser
        // tricked into posting forms here) cannot lock a partner out.
        assert_eq!(token(&a, &valid, None).await.status(), 200, "a valid assertion is never refused");
        let form_post = a.client.post(a.url("/oauth2/token")).form(&[("x", "1")]).send().await.unwrap();
        assert_eq!(form_post.status(), 429, "a locked-out address's junk costs no write");

        // Refusals wrote no rows of their own; the minute's count becomes one record.
        assert!(events(&a, "token.assertion_rejected").is_empty());
        flush_after(&a, now);
        let records = events(&a, "token.assertion_rejected");
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].details["count"], 3);
        assert_eq!(records[0].details["source"], "127.0.0.1");
        assert_eq!(records[0].subject_id.as_deref(), Some("127.0.0.1"));
        assert_eq!(records[0].details["last"]["error"], "invalid_client");
        assert_eq!(records[0].details["last"]["client_id"], json!(id));
        flush_after(&a, now);
        assert_eq!(events(&a, "token.assertion_rejected").len(), 1, "flushed once");
        b.stop().await;
        a.stop().await;
    }

    async fn registrations_are_limited_across_replicas(backend) {
        let now = fixed_now();
        let (a, b) = replicas(backend, |s| {
            s.registration.rate_limit_per_minute = 3;
            s.registration.rate_limit_burst = 3;
        }, now).await;
        assert_eq!(a.register(&registration(1)).await.status(), 201);
        assert_eq!(a.register(&registration(2)).await.status(), 201);
        assert_eq!(b.register(&registration(3)).await.status(), 201);
        // Each replica's own bucket would still allow more: the shared count does not.
        for (replica, n) in [(&b, 4), (&a, 5)] {
            let refused = replica.register(&registration(n)).await;
            assert_eq!(refused.status(), 429);
            assert_eq!(refused.headers()["retry-after"].to_str().unwrap(), rest_of_minute(now).to_string());
            let body: Value = refused.json().await.unwrap();
            assert_eq!(body["type"], "/problems/rate-limited");
        }
        assert_eq!(a.organisation_events().iter().filter(|e| e.action == "organisation.registered").count(), 3, "refusals wrote nothing");
        b.stop().await;
        a.stop().await;
    }

    async fn a_client_id_hammered_from_elsewhere_still_gets_its_token(backend) {
        let now = fixed_now();
        let (app, _other) = replicas(backend, |s| {
            s.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
            s.auth.failed_assertions_per_client_per_minute = 2;
        }, now).await;
        let key = TestKey::new("ed25519_a", "k1");
        let id = partner(&app, 1, &key).await.to_string();
        // An attacker behind the load balancer sends bad assertions in the victim's name.
        let statuses: Vec<u16> = {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(token(&app, &bad_assertion(&app, &id), Some("203.0.113.66")).await.status().as_u16());
            }
            out
        };
        assert_eq!(statuses, [401, 401, 429, 429, 429], "refusals in the victim's name are slowed");
        // The victim, from its own address, with a valid assertion: served.
        let valid = sign(&key, &claims(&id, &app.token_endpoint()));
        let served = token(&app, &valid, Some("198.51.100.10")).await;
        assert_eq!(served.status(), 200);
        // And even from the attacker's address, a valid assertion is not refused for the
        // failures counted against the client id.
        let valid = sign(&key, &claims(&id, &app.token_endpoint()));
        assert_eq!(token(&app, &valid, Some("203.0.113.66")).await.status(), 200);

        flush_after(&app, now);
        let records = events(&app, "token.assertion_rejected");
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].details["source"], "203.0.113.66", "the forwarded client, not the proxy");
        assert_eq!(records[0].details["count"], 5);
    }

    async fn forwarded_for_counts_only_from_trusted_proxies_and_ipv6_by_64(backend) {
        let now = fixed_now();
        let (direct, proxied) = replicas(backend, |s| s.auth.failed_assertions_per_minute = 2, now).await;
        // `direct` trusts no proxy: X-Forwarded-For is the caller's own claim and is ignored.
        for forged in ["203.0.113.1", "203.0.113.2"] {
            assert_eq!(token(&direct, &bad_assertion(&direct, "someone"), Some(forged)).await.status(), 401);
        }
        assert_eq!(token(&direct, &bad_assertion(&direct, "someone"), Some("203.0.113.3")).await.status(), 429, "a new forged address is no escape");

        // A replica behind a trusted proxy (loopback) takes the client from the header.
        let (database, mut settings) = proxied.stop().await;
        settings.server.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
        let proxied = TestApp::spawn_with_clock(database, settings, Arc::new(FixedClock(now))).await;
        assert_eq!(token(&proxied, &bad_assertion(&proxied, "someone"), Some("203.0.113.4")).await.status(), 401, "its own bucket");
        // One IPv6 /64 is one client however many addresses it uses; the next /64 is another.
        for address in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::2"] {
            assert_eq!(token(&proxied, &bad_assertion(&proxied, "someone"), Some(address)).await.status(), 401);
        }
        let same_64 = token(&proxied, &bad_assertion(&proxied, "someone"), Some("2001:db8:1:2:abcd::9")).await;
        assert_eq!(same_64.status(), 429);
        assert_eq!(token(&proxied, &bad_assertion(&proxied, "someone"), Some("2001:db8:1:3::1")).await.status(), 401);
        // A forged hop left of the proxy's is not believed: the rightmost untrusted hop counts.
        assert_eq!(token(&proxied, &bad_assertion(&proxied, "someone"), Some("198.51.100.1, 2001:db8:1:2::7")).await.status(), 429);

        flush_after(&direct, now);
        let sources: Vec<(String, i64)> = events(&direct, "token.assertion_rejected").iter().map(|e| (e.details["source"].as_str().unwrap().to_owned(), e.details["count"].as_i64().unwrap())).collect();
        for expected in [("127.0.0.1".to_owned(), 2), ("2001:db8:1:2::/64".to_owned(), 2), ("2001:db8:1:3::/64".to_owned(), 1), ("203.0.113.4".to_owned(), 1)] {
            assert!(sources.contains(&expected), "{expected:?} in {sources:?}");
        }
    }

    async fn huge_caller_input_is_stored_only_as_a_short_excerpt(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        settings.server.json_body_limit_bytes = 1024 * 1024;
        let app = TestApp::spawn_with(database, settings).await;
        let huge = "x".repeat(64 * 1024);
        let key = TestKey::new("ed25519_a", "k1");
        let id = partner(&app, 1, &key).await.to_string();

        let mut form = token_form(&sign(&key, &claims(&id, &app.token_endpoint())));
        form[0].1 = huge.clone();
        let response = app.client.post(app.url("/oauth2/token")).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unsupported_grant_type");
        assert!(body["error_description"].as_str().unwrap().len() < 300, "not echoed whole");

        let huge_kid = TestKey::new("ed25519_a", &huge);
        assert_eq!(token(&app, &sign(&huge_kid, &claims(&id, &app.token_endpoint())), None).await.status(), 401);
        assert_eq!(token(&app, &bad_assertion(&app, &huge), None).await.status(), 401);
        let mut huge_name = token_form(&sign(&key, &claims(&id, &app.token_endpoint())));
        huge_name.push(("scope", huge.clone()));
        assert_eq!(app.client.post(app.url("/oauth2/token")).form(&huge_name).send().await.unwrap().status(), 400);

        flush_after(&app, Utc::now());
        let stored = app.all_events();
        let rejected: Vec<_> = stored.iter().filter(|e| e.action == "token.assertion_rejected").collect();
        assert!(!rejected.is_empty());
        for event in &stored {
            let size = event.details.to_string().len() + event.subject_id.as_deref().map_or(0, str::len);
            assert!(size < 2048, "{} stored {size} bytes", event.action);
            assert!(!event.details.to_string().contains(&"x".repeat(100)), "{}", event.action);
        }
    }
}
