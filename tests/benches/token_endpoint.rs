//! Token endpoint benchmark: tokens issued per second through the full HTTP endpoint (assertion
//! verification, replay cache, key bookkeeping, audit, signing), and the cost of verifying one
//! client assertion. Prints figures; asserts nothing.
//!
//! ```sh
//! cargo bench -p gateway-tests --bench token_endpoint              # SQLite
//! BENCH_BACKEND=postgres cargo bench -p gateway-tests --bench token_endpoint
//! ```
//! BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (default 32) tune the load;
//! BENCH_SEQUENCER=off leaves the audit sequencer off, to measure what sealing costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use gateway_api::auth::assertion::{self, AssertionRules};
use gateway_api::{Application, Settings};
use gateway_domain::{KeyType, PartnerKey};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{json, Value};

const KEYS: &str = include_str!("../fixtures/test-keys.json");

fn key(name: &str) -> (Value, EncodingKey, Algorithm) {
    let keys: Value = serde_json::from_str(KEYS).unwrap();
    let pem = keys[name]["private_pem"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut jwk = keys[name]["jwk"].clone();
    jwk["kid"] = json!("bench");
    match name {
        "ed25519_a" => (
            jwk,
            EncodingKey::from_ed_pem(&pem).unwrap(),
            Algorithm::EdDSA,
        ),
        "ec_p256" => (
            jwk,
            EncodingKey::from_ec_pem(&pem).unwrap(),
            Algorithm::ES256,
        ),
        _ => (
            jwk,
            EncodingKey::from_rsa_pem(&pem).unwrap(),
            Algorithm::RS256,
        ),
    }
}

fn assertion(client: &str, aud: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let now = Utc::now().timestamp();
    let mut header = Header::new(alg);
    header.kid = Some("bench".into());
    let claims = json!({"iss": client, "sub": client, "aud": aud, "exp": now + 280, "jti": uuid::Uuid::new_v4().to_string()});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn verify_cost() {
    println!("\nverifying one client assertion (signature + claims, no database):");
    for (name, key_type) in [
        ("ed25519_a", KeyType::Ed25519),
        ("ec_p256", KeyType::EcP256),
        ("rsa_2048", KeyType::Rsa),
    ] {
        let (jwk, encoding, alg) = key(name);
        let partner = PartnerKey {
            kid: "bench".into(),
            key_type,
            alg: None,
            jwk,
            added_at: Utc::now(),
            last_used_at: None,
        };
        let rules = AssertionRules {
            token_endpoint: "https://gw/oauth2/token".into(),
            max_lifetime: chrono::Duration::seconds(300),
            skew_seconds: 30,
            max_lifetime_with_iat: chrono::Duration::seconds(3600),
        };
        let tokens: Vec<String> = (0..2000)
            .map(|_| assertion("client", &rules.token_endpoint, &encoding, alg))
            .collect();
        let started = Instant::now();
        for token in &tokens {
            assertion::verify(token, &rules, Utc::now(), |_| Ok(vec![partner.clone()])).unwrap();
        }
        let per = started.elapsed() / tokens.len() as u32;
        println!(
            "  {alg:?}: {:.1} µs per assertion ({} runs)",
            per.as_secs_f64() * 1e6,
            tokens.len()
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    verify_cost();

    let database = TestDatabase::new(backend);
    let mut settings = Settings::defaults().unwrap();
    settings.server.port = 0;
    settings.database.url = SecretString::from(database.url.expose());
    settings.database.max_connections = 16;
    settings.auth.key_encryption_key =
        SecretString::from("dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=");
    settings.log.filter = "warn".into();
    // BENCH_SEQUENCER=off measures issuance without the audit chain being sealed meanwhile.
    if std::env::var("BENCH_SEQUENCER").as_deref() == Ok("off") {
        settings.audit.seal_interval_ms = 0;
    }
    let app = Application::build(&settings).unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let http = reqwest::Client::new();
    let registration = json!({
        "ods_code": "BENCH1", "name": "Bench Care", "category": "hospice", "exchange_version": "exchange_2019",
        "domains": ["bench.example.org"],
        "contacts": {"ig_lead": {"name": "A", "email": "a@bench.example.org"}, "technical": {"name": "B", "email": "b@bench.example.org"}},
        "business_need": "Benchmarking the token endpoint of the gateway."
    });
    let created: Value = http
        .post(format!("{base}/v1/registrations"))
        .json(&registration)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let token = created["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (jwk, encoding, alg) = key("ed25519_a");
    let stored = http
        .put(format!("{base}/v1/organisations/{id}/jwks"))
        .bearer_auth(&token)
        .json(&json!({"keys": [jwk]}))
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success());

    // Sign the assertions up front, so the load generator spends its CPU on sending.
    let aud = format!("{base}/oauth2/token");
    let budget = 8000 * seconds as usize;
    println!("\nsigning {budget} assertions for the load...");
    let assertions: Arc<Vec<String>> = Arc::new(
        (0..budget)
            .map(|_| assertion(&id, &aud, &encoding, alg))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, aud, assertions, next, ok, failed) = (
                http.clone(),
                aud.clone(),
                assertions.clone(),
                next.clone(),
                ok.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(jwt) = assertions.get(i) else { break };
                    let form = [
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", jwt.as_str()),
                    ];
                    match http.post(&aud).form(&form).send().await {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let issued = ok.load(Ordering::Relaxed);
    println!(
        "\ntoken endpoint on {} ({} concurrent clients, {:.1} s): {} tokens issued, {} failed: {:.0} tokens/s",
        backend.name(),
        concurrency,
        elapsed,
        issued,
        failed.load(Ordering::Relaxed),
        issued as f64 / elapsed
    );
}
