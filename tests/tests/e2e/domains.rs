//! Domain ownership proof end to end, on both backends, against a real authoritative DNS
//! server (hickory-server, in this process, serving an in-memory zone on loopback over UDP
//! and TCP): record present, absent, wrong token, NXDOMAIN, server down; squatting; parents
//! and subdomains; reviewers verifying by hand; ODS codes held by approved agreements; and
//! maintenance finding a vanished proof.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;
use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::oidc_provider::OidcProvider;
use crate::reviewers::browser_sign_in;
use crate::support::{registration, settings_for, TestApp};

/// An authoritative server for one zone, on 127.0.0.1 (UDP and TCP, one port).
struct DnsServer {
    addr: SocketAddr,
    authority: Arc<InMemoryAuthority>,
    serial: AtomicU32,
}

impl DnsServer {
    async fn start(zone: &str) -> Self {
        let origin = Name::from_ascii(format!("{zone}.")).unwrap();
        let authority = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_ascii(format!("ns.{zone}.")).unwrap(),
            Name::from_ascii(format!("hostmaster.{zone}.")).unwrap(),
            1,
            3600,
            600,
            86400,
            60,
        );
        authority
            .upsert(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1)
            .await;
        let authority = Arc::new(authority);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![authority.clone()]);
        // The same port for UDP and TCP: retry until both binds succeed.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let mut server = ServerFuture::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        tokio::spawn(async move { server.block_until_done().await });
        Self {
            addr,
            authority,
            serial: AtomicU32::new(2),
        }
    }

    /// Publishes a TXT record.
    async fn txt(&self, name: &str, value: &str) {
        let record = Record::from_rdata(
            Name::from_ascii(format!("{name}.")).unwrap(),
            60,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        );
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        self.authority.upsert(record, serial).await;
    }

    /// Withdraws every record at `name`.
    async fn remove(&self, name: &str) {
        let gone = LowerName::new(&Name::from_ascii(format!("{name}.")).unwrap());
        self.authority
            .records_mut()
            .await
            .retain(|key, _| key.name != gone);
    }
}

/// A loopback port with nothing listening: a DNS server that is down.
fn dead_nameserver() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A gateway resolving through `nameserver`, with reviewers signing in at its own provider.
async fn gateway(backend: Backend, nameserver: SocketAddr) -> (TestApp, OidcProvider) {
    gateway_with(backend, nameserver, |_| {}).await
}

/// `gateway`, with settings changed by `configure`.
async fn gateway_with(
    backend: Backend,
    nameserver: SocketAddr,
    configure: impl FnOnce(&mut gateway_api::config::Settings),
) -> (TestApp, OidcProvider) {
    let database = Arc::new(TestDatabase::new(backend));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let provider = OidcProvider::start(&format!("{base}/auth/callback"), "urn:federation-gateway");
    let mut settings = settings_for(&database);
    settings.oidc.issuer_url = provider.issuer.clone();
    settings.oidc.client_id = "gateway".into();
    settings.oidc.client_secret = SecretString::from("gateway-secret");
    settings.oidc.redirect_url = format!("{base}/auth/callback");
    settings.oidc.audience = "urn:federation-gateway".into();
    settings.dns.nameservers = vec![nameserver.to_string()];
    settings.dns.timeout_ms = 500;
    configure(&mut settings);
    (TestApp::spawn_on(listener, database, settings), provider)
}

/// An organisation with its registration token.
struct Org {
    id: String,
    token: String,
}

async fn register(app: &TestApp, n: u32, ods: &str, domains: &[&str]) -> Result<Org, (u16, Value)> {
    let mut body = registration(n);
    body["ods_code"] = json!(ods);
    body["domains"] = json!(domains);
    let response = app.register(&body).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    if status == 201 {
        Ok(Org {
            id: body["id"].as_str().unwrap().to_owned(),
            token: body["registration_access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        })
    } else {
        Err((status, body))
    }
}

impl Org {
    async fn read(&self, app: &TestApp) -> Value {
        let response = app.get_organisation(&self.id, Some(&self.token)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The domain entry of `name`, as the organisation sees it.
    async fn domain(&self, app: &TestApp, name: &str) -> Value {
        let org = self.read(app).await;
        org["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap()
    }

    async fn verify(&self, app: &TestApp, domain: &str) -> (u16, Value) {
        let response = app
            .client
            .post(app.url(&format!(
                "/v1/organisations/{}/domains/{domain}/verify",
                self.id
            )))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Publishes the TXT record the gateway told us to.
    async fn publish(&self, app: &TestApp, dns: &DnsServer, domain: &str) {
        let entry = self.domain(app, domain).await;
        let record = &entry["txt_record"];
        assert_eq!(record["name"], format!("_federation-gateway.{domain}"));
        dns.txt(
            record["name"].as_str().unwrap(),
            record["value"].as_str().unwrap(),
        )
        .await;
    }
}

fn rules(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["rule"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn events(app: &TestApp, action: &str) -> Vec<gateway_domain::AuditEvent> {
    app.all_events()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

/// A signed-in reviewer in a browser (cookies, CSRF token, origin).
struct Reviewer {
    browser: reqwest::Client,
    csrf: String,
    origin: String,
}

impl Reviewer {
    async fn sign_in(app: &TestApp, provider: &OidcProvider, login: &str) -> Self {
        let (browser, landed) = browser_sign_in(app, provider, login).await;
        let me: Value = landed.json().await.unwrap();
        Self {
            browser,
            csrf: me["csrf_token"].as_str().unwrap().to_owned(),
            origin: app.public_base_url(),
        }
    }

    async fn verify(&self, app: &TestApp, org: &Org, domain: &str, reason: &str) -> (u16, Value) {
        let response = self
            .browser
            .post(app.url(&format!(
                "/v1/review/organisations/{}/domains/{domain}/verify",
                org.id
            )))
            .header("Origin", &self.origin)
            .header("X-CSRF-Token", &self.csrf)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn unverify(&self, app: &TestApp, org: &Org, domain: &str, reason: &str) -> (u16, Value) {
        let response = self
            .browser
            .post(app.url(&format!(
                "/v1/review/organisations/{}/domains/{domain}/unverify",
                org.id
            )))
            .header("Origin", &self.origin)
            .header("X-CSRF-Token", &self.csrf)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// The withdrawn verifications on the audit trail.
fn withdrawals(app: &TestApp) -> Vec<gateway_domain::AuditEvent> {
    events(app, "domain.unverified")
        .into_iter()
        .filter(|e| e.details["change"] == "domain.unverified")
        .collect()
}

e2e_tests! {
    async fn a_published_record_verifies_and_every_failure_changes_nothing(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, _provider) = gateway(backend, dns.addr).await;
        let org = register(&app, 1, "AB001", &["present.example.org", "absent.example.org", "wrong.example.org", "nx.example.org"]).await.unwrap();

        // What to publish: shown to the organisation, never to anyone unauthenticated.
        let entry = org.domain(&app, "present.example.org").await;
        assert_eq!(entry["verification"], "unverified");
        let value = entry["txt_record"]["value"].as_str().unwrap();
        assert!(value.starts_with("federation-gateway-verification="), "{value}");
        assert_eq!(app.get_organisation(&org.id, None).await.status(), 401);

        // Absent: the name exists with other TXT records but no proof.
        dns.txt("_federation-gateway.absent.example.org", "v=spf1 -all").await;
        let (status, problem) = org.verify(&app, "absent.example.org").await;
        assert_eq!((status, problem["type"].as_str()), (422, Some("/problems/preconditions-unmet")), "{problem}");
        assert_eq!(rules(&problem), ["txt_record_missing"]);
        // Wrong token (another organisation's, say).
        dns.txt("_federation-gateway.wrong.example.org", "federation-gateway-verification=0123456789abcdef0123456789abcdef").await;
        let (status, problem) = org.verify(&app, "wrong.example.org").await;
        assert_eq!((status, rules(&problem)), (422, vec!["txt_record_mismatch".to_owned()]), "{problem}");
        // NXDOMAIN.
        let (status, problem) = org.verify(&app, "nx.example.org").await;
        assert_eq!((status, rules(&problem)), (422, vec!["txt_record_missing".to_owned()]), "{problem}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("NXDOMAIN"), "{problem}");
        // Nothing changed, and the attempts are on the audit trail.
        let before = org.read(&app).await;
        assert_eq!(before["version"], 1);
        assert!(before["domains"].as_array().unwrap().iter().all(|d| d["verification"] == "unverified"));
        assert_eq!(events(&app, "domain.verification_failed").len(), 3);
        // A domain the organisation does not claim is not found.
        assert_eq!(org.verify(&app, "other.example.org").await.0, 404);

        // Present: verified, with time and method, audited.
        org.publish(&app, &dns, "present.example.org").await;
        let (status, verified) = org.verify(&app, "present.example.org").await;
        assert_eq!(status, 200, "{verified}");
        let entry = verified["domains"].as_array().unwrap().iter().find(|d| d["name"] == "present.example.org").unwrap();
        assert_eq!((entry["verification"].as_str(), entry["method"].as_str()), (Some("verified"), Some("dns")));
        assert!(entry["verified_at"].is_string());
        assert_eq!(verified["version"], 2);
        let audited = events(&app, "domain.verified");
        assert_eq!(audited.len(), 1);
        assert_eq!((audited[0].details["domain"].as_str(), audited[0].details["method"].as_str()), (Some("present.example.org"), Some("dns")));
        // Again: nothing more happens.
        assert_eq!(org.verify(&app, "present.example.org").await.0, 200);
        assert_eq!(events(&app, "domain.verified").len(), 1);
    }

    async fn a_dns_server_that_is_down_gets_503_and_changes_nothing(backend) {
        let (app, _provider) = gateway(backend, dead_nameserver()).await;
        let org = register(&app, 2, "AB002", &["down.example.org"]).await.unwrap();
        let response = app
            .client
            .post(app.url(&format!("/v1/organisations/{}/domains/down.example.org/verify", org.id)))
            .bearer_auth(&org.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/service-unavailable");
        let after = org.read(&app).await;
        assert_eq!((after["version"].as_i64(), after["domains"][0]["verification"].as_str()), (Some(1), Some("unverified")));
        assert!(events(&app, "domain.verification_failed").is_empty(), "no answer is no verdict");
    }

    async fn squatting_blocks_nobody_and_the_owner_wins(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, _provider) = gateway(backend, dns.addr).await;
        // A squatter claims the real owner's domain first: that blocks nobody.
        let squatter = register(&app, 3, "SQ003", &["leedscare.example.org"]).await.unwrap();
        let owner = register(&app, 4, "LC004", &["leedscare.example.org"]).await.unwrap();
        owner.publish(&app, &dns, "leedscare.example.org").await;
        assert_eq!(owner.verify(&app, "leedscare.example.org").await.0, 200);
        // The squatter's claim now shows conflict, and its attempt is refused without naming
        // the owner, even if it somehow published a record.
        assert_eq!(squatter.domain(&app, "leedscare.example.org").await["verification"], "conflict");
        squatter.publish(&app, &dns, "leedscare.example.org").await;
        let (status, problem) = squatter.verify(&app, "leedscare.example.org").await;
        assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/domain-taken")), "{problem}");
        let text = problem.to_string();
        assert!(!text.contains(&owner.id) && !text.contains("LC004") && !text.contains("Care Organisation 4"), "{text}");
        // Nobody else can claim it or a subdomain now, and the refusal names no holder.
        let (status, problem) = register(&app, 5, "NB005", &["fresh.example.org", "mail.leedscare.example.org"]).await.err().unwrap();
        assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/domain-taken")));
        assert!(!problem.to_string().contains(&owner.id));
        // A verified subdomain does not block its parent.
        let parent = register(&app, 6, "PA006", &["example.org"]).await.unwrap();
        parent.publish(&app, &dns, "example.org").await;
        let (status, verified) = parent.verify(&app, "example.org").await;
        assert_eq!(status, 200, "{verified}");
        // A verified parent blocks a subdomain claim elsewhere.
        let (status, _) = register(&app, 7, "SB007", &["anything.example.org"]).await.err().unwrap();
        assert_eq!(status, 409);
        // Public suffixes can never be claimed.
        let (status, problem) = register(&app, 10, "PS010", &["org.uk", "github.io"]).await.err().unwrap();
        assert_eq!((status, rules(&problem)), (422, vec!["public_suffix".to_owned(), "public_suffix".to_owned()]), "{problem}");
    }

    async fn reviewers_verify_by_hand_and_approval_waits_for_verified_domains(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, provider) = gateway(backend, dns.addr).await;
        let org = register(&app, 8, "AB008", &["manual.example.org"]).await.unwrap();
        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        let (status, problem) = reviewer.verify(&app, &org, "manual.example.org", " ").await;
        assert_eq!((status, rules(&problem)), (422, vec!["required".to_owned()]));
        let automation = provider.client_token("automation-reviewer", "urn:federation-gateway").await;
        let response = app.client.post(app.url(&format!("/v1/review/organisations/{}/domains/manual.example.org/verify", org.id)))
            .bearer_auth(&automation).json(&json!({"reason": "robot"})).send().await.unwrap();
        assert_eq!(response.status(), 403);
        let (status, verified) = reviewer.verify(&app, &org, "manual.example.org", "Confirmed with the IT lead by phone").await;
        assert_eq!(status, 200, "{verified}");
        assert_eq!(verified["domains"][0]["verification"], "verified");
        assert_eq!(verified["domains"][0]["method"], "manual");
        assert!(verified["domains"][0].get("txt_record").is_none(), "reviewers do not get the token");
        let audited = events(&app, "domain.verified");
        assert_eq!(audited[0].details["reason"], "Confirmed with the IT lead by phone");
        assert_eq!(audited[0].actor_id.as_deref(), Some("reviewer1"));
    }

    async fn maintenance_flags_a_proof_that_disappeared(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, _provider) = gateway(backend, dns.addr).await;
        let org = register(&app, 9, "AB009", &["kept.example.org", "gone.example.org"]).await.unwrap();
        for domain in ["kept.example.org", "gone.example.org"] {
            org.publish(&app, &dns, domain).await;
            assert_eq!(org.verify(&app, domain).await.0, 200);
        }
        dns.remove("_federation-gateway.gone.example.org").await;
        let report = gateway_api::commands::maintenance(&app.settings, chrono::Utc::now()).unwrap();
        assert_eq!((report.domains.present, report.domains.newly_missing), (1, 1));
        let gone = org.domain(&app, "gone.example.org").await;
        assert!(gone["record_missing_since"].is_string(), "{gone}");
        assert_eq!(gone["verification"], "verified");
        assert!(org.domain(&app, "kept.example.org").await["record_missing_since"].is_null());
        let flagged = events(&app, "domain.record_missing");
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].details["domain"], "gone.example.org");
        // A second run flags nothing new.
        let report = gateway_api::commands::maintenance(&app.settings, chrono::Utc::now()).unwrap();
        assert_eq!(report.domains.newly_missing, 0);
    }

    async fn approvers_withdraw_verifications_and_maintenance_withdraws_stale_proofs(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, provider) = gateway(backend, dns.addr).await;
        let org = register(&app, 11, "AB011", &["sold.example.org", "gone.example.org"]).await.unwrap();
        for domain in ["sold.example.org", "gone.example.org"] {
            org.publish(&app, &dns, domain).await;
            assert_eq!(org.verify(&app, domain).await.0, 200);
        }
        // Reviewers verify by hand, but only approvers (people, with a reason) withdraw.
        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        let (status, problem) = reviewer.unverify(&app, &org, "sold.example.org", "sold").await;
        assert_eq!(status, 403, "{problem}");
        let approver = Reviewer::sign_in(&app, &provider, "approver2").await;
        let (status, problem) = approver.unverify(&app, &org, "sold.example.org", " ").await;
        assert_eq!((status, rules(&problem)), (422, vec!["required".to_owned()]), "{problem}");
        let cross_site = approver.browser
            .post(app.url(&format!("/v1/review/organisations/{}/domains/sold.example.org/unverify", org.id)))
            .header("Origin", "https://evil.example")
            .json(&json!({"reason": "sold"}))
            .send().await.unwrap();
        assert_eq!(cross_site.status(), 403);
        let (status, body) = approver.unverify(&app, &org, "sold.example.org", "Sold in 2025; confirmed by the new owner").await;
        assert_eq!(status, 200, "{body}");
        let entry = body["domains"].as_array().unwrap().iter().find(|d| d["name"] == "sold.example.org").unwrap();
        assert_eq!(entry["verification"], "unverified");
        let audited = withdrawals(&app);
        assert_eq!(audited.len(), 1);
        assert_eq!((audited[0].actor_id.as_deref(), audited[0].details["reason"].as_str(), audited[0].details["cause"].as_str()), (Some("approver2"), Some("Sold in 2025; confirmed by the new owner"), Some("reviewer")));
        // The name is free again: another organisation claims and proves it.
        let buyer = register(&app, 12, "AB012", &["sold.example.org"]).await.unwrap();
        buyer.publish(&app, &dns, "sold.example.org").await;
        assert_eq!(buyer.verify(&app, "sold.example.org").await.0, 200);

        // A proof gone for longer than dns.demote_after_days is withdrawn by maintenance.
        dns.remove("_federation-gateway.gone.example.org").await;
        let now = chrono::Utc::now();
        let report = gateway_api::commands::maintenance(&app.settings, now).unwrap();
        assert_eq!((report.domains.newly_missing, report.domains.demoted), (1, 0));
        let report = gateway_api::commands::maintenance(&app.settings, now + chrono::Duration::days(13)).unwrap();
        assert_eq!(report.domains.demoted, 0);
        assert_eq!(org.domain(&app, "gone.example.org").await["verification"], "verified");
        let report = gateway_api::commands::maintenance(&app.settings, now + chrono::Duration::days(15)).unwrap();
        assert_eq!(report.domains.demoted, 1);
        let gone = org.domain(&app, "gone.example.org").await;
        assert_eq!((gone["verification"].as_str(), gone["record_missing_since"].is_null()), (Some("unverified"), true), "{gone}");
        let audited = withdrawals(&app);
        assert_eq!((audited.len(), audited[1].details["cause"].as_str(), audited[1].details["domain"].as_str()), (2, Some("record_missing"), Some("gone.example.org")));
    }

    async fn lookups_are_limited_per_claim_and_overlong_names_refused(backend) {
        let dns = DnsServer::start("example.org").await;
        let (app, _provider) = gateway_with(backend, dns.addr, |s| s.dns.verify_interval_seconds = 1).await;
        let long = format!("{}.{}.{}.{}.example.org", "a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(40));
        let org = register(&app, 13, "AB013", &["slow.example.org", &long]).await.unwrap();
        assert_eq!(rules(&org.verify(&app, "slow.example.org").await.1), ["txt_record_missing"]);
        let response = app.client
            .post(app.url(&format!("/v1/organisations/{}/domains/slow.example.org/verify", org.id)))
            .bearer_auth(&org.token).send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/rate-limited");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(rules(&org.verify(&app, "slow.example.org").await.1), ["txt_record_missing"]);
        // Two failures, one record (at most one an hour per claim).
        let failed = events(&app, "domain.verification_failed");
        assert_eq!((failed.len(), failed[0].details["attempts"].as_u64()), (1, Some(1)));
        // A name too long to publish the record under: a clear 422, not a 503.
        let (status, problem) = org.verify(&app, &long).await;
        assert_eq!((status, rules(&problem)), (422, vec!["txt_record_name_length".to_owned()]), "{problem}");
    }
}
