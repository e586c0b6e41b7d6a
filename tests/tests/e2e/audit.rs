//! The tamper-evident audit trail, end to end on both backends: the sequencer seals what the
//! API writes; auditors filter, page and export it; checkpoints and RFC 9162 proofs verify
//! independently; altering, deleting, reordering or cutting records is caught.

use diesel::RunQueryDsl;
use gateway_domain::audit::unhex;
use gateway_domain::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use gateway_domain::AuditRepository;
use gateway_persistence::Sha256Hasher;
use serde_json::Value;

use crate::e2e_tests;
use crate::oidc_provider::OidcProvider;
use crate::reviewers::gateway_with_provider;
use crate::support::{registration_typed, TestApp};

const AUDIENCE: &str = "urn:federation-gateway";

/// An auditor's bearer token (the provider's automation client holds reviewer and auditor).
async fn auditor(provider: &OidcProvider) -> String {
    provider.client_token("automation-reviewer", AUDIENCE).await
}

async fn get(
    app: &TestApp,
    token: &str,
    path: &str,
    accept: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(token)
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = get(app, token, path, "application/json").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Waits until the server's sequencer has sealed everything committed so far.
async fn sealed(app: &TestApp) -> i64 {
    let db = app.open_database();
    let total = db.list_events(0, 100_000).unwrap().len() as i64;
    for _ in 0..100 {
        let (size, _) = db.sealed_head().unwrap();
        if size >= total {
            return size;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the sequencer did not seal {total} records");
}

fn hash(text: &Value) -> Hash {
    unhex(text.as_str().unwrap()).unwrap()
}

fn hashes(list: &Value) -> Vec<Hash> {
    list.as_array().unwrap().iter().map(hash).collect()
}

/// Runs SQL against the test's database, as someone with database access would.
fn tamper(app: &TestApp, sql: &str) {
    let db = app.open_database();
    let mut conn = db.connection().unwrap();
    match &mut *conn {
        gateway_persistence::DbConnection::Sqlite(c) => diesel::sql_query(sql).execute(c).unwrap(),
        gateway_persistence::DbConnection::Postgres(c) => {
            diesel::sql_query(sql).execute(c).unwrap()
        }
    };
}

/// What an attacker with write access to the database does after altering a record: re-chain
/// every later hash and rebuild the whole Merkle tree, so that everything stored agrees.
fn rechain_and_rebuild(app: &TestApp) {
    use gateway_domain::audit::{canonical, chain_hash, hex};
    use gateway_domain::merkle::Appender;
    let db = app.open_database();
    let records = db
        .sealed_records(&Default::default(), None, 100_000)
        .unwrap();
    let h = Sha256Hasher;
    let mut prev = [0u8; 32];
    let mut tree = Appender::new(0, &Default::default());
    let mut nodes = Vec::new();
    for record in &records {
        let position = record.event.position.unwrap();
        let bytes = canonical(position, &record.event);
        let hash = chain_hash(&h, &prev, &bytes);
        tamper(app, &format!("UPDATE audit_events SET prev_hash = '{}', hash = '{}' WHERE log_position = {position}", hex(&prev), hex(&hash)));
        nodes.extend(tree.push(&h, leaf_hash(&h, &bytes)));
        prev = hash;
    }
    tamper(app, "DELETE FROM audit_tree");
    for ((level, idx), hash) in nodes {
        tamper(
            app,
            &format!(
                "INSERT INTO audit_tree (level, idx, hash) VALUES ({level}, {idx}, '{}')",
                hex(&hash)
            ),
        );
    }
}

e2e_tests! {
    async fn a_consistently_rewritten_trail_is_caught_by_its_signed_checkpoints(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        for n in 1..=6 {
            app.register_ok_typed(registration_typed(n)).await;
        }
        let size = sealed(&app).await;
        let token = auditor(&provider).await;
        let mut signed = Value::Null;
        for _ in 0..60 {
            let (status, body) = get_json(&app, &token, "/v1/audit/checkpoints/latest").await;
            if status == 200 && body["tree_size"] == size {
                signed = body;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(signed["tree_size"], size);
        // Rewrite record 2, re-chain everything after it, rebuild the tree, and even copy the
        // new head into the stored checkpoint's columns: everything stored agrees.
        tamper(&app, "UPDATE audit_events SET details = '{\"name\":\"Someone Else\"}' WHERE log_position = 2");
        rechain_and_rebuild(&app);
        let services = gateway_api::startup::services(std::sync::Arc::new(app.open_database()), std::sync::Arc::new(gateway_domain::SystemClock));
        let head = services.tree_head().unwrap();
        tamper(&app, &format!(
            "UPDATE audit_checkpoints SET root_hash = '{}', chain_hash = '{}'",
            gateway_domain::audit::hex(&head.root), gateway_domain::audit::hex(&head.chain_hash)
        ));
        // The signed claims still hold the true root: verification fails at the checkpoint.
        let (_, report) = get_json(&app, &token, "/v1/audit/verify").await;
        assert_eq!(report["intact"], false, "{report}");
        assert!(report["first_bad"]["reason"].as_str().unwrap().contains("rewritten"), "{report}");
        // The sequencer refuses to sign a checkpoint over the rewritten trail.
        app.register_ok_typed(registration_typed(7)).await;
        sealed(&app).await;
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let (_, latest) = get_json(&app, &token, "/v1/audit/checkpoints/latest").await;
        assert_eq!(latest["tree_size"], size, "no checkpoint signed over a rewritten trail");
        // A key planted in the database (without the gateway's MAC) is neither published nor
        // trusted.
        tamper(&app, "INSERT INTO audit_keys (kid, public_jwk, mac, first_used_at) VALUES ('planted', '{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"planted\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}', '00', '2026-01-01 00:00:00')");
        let keys: Value = reqwest::get(app.url("/.well-known/audit-keys.json")).await.unwrap().json().await.unwrap();
        assert!(keys["keys"].as_array().unwrap().iter().all(|k| k["kid"] != "planted"), "{keys}");
    }

    async fn disclosures_are_group_committed_and_each_acknowledged_after_commit(backend) {
        let database = gateway_persistence::testing::TestDatabase::new(backend);
        let db = std::sync::Arc::new(database.open());
        let recorder = gateway_api::audit_log::AuditRecorder::start(db.clone());
        let organisation = gateway_domain::OrganisationId::new();
        let agreement = gateway_domain::AgreementId::new();
        let tasks: Vec<_> = (0..400u64)
            .map(|n| {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let disclosure = gateway_domain::audit::Disclosure {
                        organisation,
                        agreement,
                        key_id: Some("k1".into()),
                        request_id: Some(format!("req-{n}")),
                        what: "free_busy.answer",
                        count: n,
                        details: serde_json::json!({ "window_days": 1 }),
                    };
                    recorder.record(disclosure.event(chrono::Utc::now())).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // Every acknowledged disclosure is stored, with what, how much, which agreement.
        let events = db.list_events(0, 10_000).unwrap();
        let disclosed: Vec<_> = events.iter().filter(|e| e.action == "data.disclosed").collect();
        assert_eq!(disclosed.len(), 400);
        assert!(disclosed.iter().all(|e| e.details["agreement_id"] == agreement.to_string() && e.details["what"] == "free_busy.answer"));
        let mut counts: Vec<u64> = disclosed.iter().map(|e| e.details["count"].as_u64().unwrap()).collect();
        counts.sort();
        assert_eq!(counts, (0..400).collect::<Vec<_>>());
        // Filterable by organisation once sealed.
        gateway_api::audit_log::seal_all(db.as_ref(), &Sha256Hasher).unwrap();
        let filter = gateway_domain::AuditFilter { organisation: Some(organisation.to_string()), ..Default::default() };
        assert_eq!(db.sealed_records(&filter, None, 1000).unwrap().len(), 400);
    }

    async fn auditors_filter_page_and_export_the_sealed_trail(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let (first, _, _) = app.register_ok_typed(registration_typed(1)).await;
        let (second, _, _) = app.register_ok_typed(registration_typed(2)).await;
        for n in 3..7 {
            app.register_ok_typed(registration_typed(n)).await;
        }
        sealed(&app).await;
        let token = auditor(&provider).await;

        // Filters: one organisation's records only.
        let (status, page) = get_json(&app, &token, &format!("/v1/audit/events?organisation={first}")).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["action"], "organisation.registered");
        assert_eq!(items[0]["subject_id"], first.to_string());
        assert!(items[0]["hash"].as_str().unwrap().len() == 64);

        // Paging by an opaque cursor: every record once, in position order.
        let mut positions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => "/v1/audit/events?action=organisation.registered&limit=2".to_owned(),
                Some(c) => format!("/v1/audit/events?action=organisation.registered&limit=2&cursor={c}"),
            };
            let (status, page) = get_json(&app, &token, &path).await;
            assert_eq!(status, 200, "{page}");
            positions.extend(page["items"].as_array().unwrap().iter().map(|e| e["position"].as_i64().unwrap()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(positions.len(), 6);
        assert!(positions.windows(2).all(|w| w[0] < w[1]));

        // A cursor is bound to its filters and cannot be forged.
        let (_, page) = get_json(&app, &token, "/v1/audit/events?action=organisation.registered&limit=2").await;
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let (status, problem) = get_json(&app, &token, &format!("/v1/audit/events?action=keys.replaced&limit=2&cursor={cursor}")).await;
        assert_eq!((status, problem["errors"][0]["rule"].as_str()), (422, Some("cursor_valid")));
        let forged = format!("{}x", cursor);
        assert_eq!(get_json(&app, &token, &format!("/v1/audit/events?action=organisation.registered&cursor={forged}")).await.0, 422);

        // CSV and JSON Lines exports.
        let (status, headers, csv) = get(&app, &token, &format!("/v1/audit/events?organisation={second}"), "text/csv").await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("position,id,occurred_at"));
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("organisation.registered"));
        let (status, headers, jsonl) = get(&app, &token, "/v1/audit/events?action=organisation.registered&limit=4", "application/x-ndjson").await;
        assert_eq!(status, 200);
        assert_eq!(jsonl.lines().count(), 4);
        assert!(jsonl.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
        assert!(headers["link"].to_str().unwrap().contains("rel=\"next\""));

        // Auditors only.
        let (_, reviewer) = {
            let t = provider.client_token("automation-no-role", AUDIENCE).await;
            get_json(&app, &t, "/v1/audit/events").await
        };
        assert_eq!(reviewer["status"], 403);
    }

    async fn checkpoints_and_proofs_verify_independently(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        for n in 1..=5 {
            app.register_ok_typed(registration_typed(n)).await;
        }
        sealed(&app).await;
        let token = auditor(&provider).await;
        let h = Sha256Hasher;
        // The sequencer signs a checkpoint of the head (the test settings: every second).
        let mut checkpoint = Value::Null;
        for _ in 0..60 {
            let (status, body) = get_json(&app, &token, "/v1/audit/checkpoints/latest").await;
            if status == 200 && body["tree_size"].as_i64() >= Some(5) {
                checkpoint = body;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let kept_size = checkpoint["tree_size"].as_i64().expect("a checkpoint");
        // Its signature verifies with the published audit keys, and it is no access token.
        let keys: Value = reqwest::get(app.url("/.well-known/audit-keys.json")).await.unwrap().json().await.unwrap();
        let kept = gateway_api::auth::checkpoint::read_kept(&checkpoint.to_string(), keys["keys"].as_array().unwrap()).unwrap();
        assert_eq!(kept.root_hash, checkpoint["root_hash"].as_str().unwrap());
        let jws = checkpoint["jws"].as_str().unwrap();
        let as_token = reqwest::Client::new().get(app.url("/v1/grants/current")).bearer_auth(jws).send().await.unwrap();
        assert_eq!(as_token.status(), 401, "a checkpoint never passes as an access token");

        // Inclusion: each record's leaf is in the checkpointed tree.
        let root = hash(&checkpoint["root_hash"]);
        let (_, page) = get_json(&app, &token, "/v1/audit/events?limit=500").await;
        for record in page["items"].as_array().unwrap().iter().take(kept_size as usize) {
            let position = record["position"].as_i64().unwrap();
            let (status, proof) = get_json(&app, &token, &format!("/v1/audit/proofs/inclusion?position={position}&tree_size={kept_size}")).await;
            assert_eq!(status, 200, "{proof}");
            // The leaf is the hash of the record's canonical form, recomputed here.
            let event = app.open_database().sealed_records(&Default::default(), if position == 0 { None } else { Some(position - 1) }, 1).unwrap().remove(0).event;
            let leaf = leaf_hash(&h, &gateway_domain::audit::canonical(position, &event));
            assert_eq!(leaf, hash(&proof["leaf_hash"]));
            assert!(verify_inclusion(&h, &leaf, position as u64, kept_size as u64, &hashes(&proof["audit_path"]), &root));
        }
        // Later records; a consistency proof shows the trail was only appended to.
        for n in 6..=9 {
            app.register_ok_typed(registration_typed(n)).await;
        }
        let size = sealed(&app).await;
        let (status, proof) = get_json(&app, &token, &format!("/v1/audit/proofs/consistency?from={kept_size}&to={size}")).await;
        assert_eq!(status, 200, "{proof}");
        assert_eq!(hash(&proof["from_root"]), root);
        assert!(verify_consistency(&h, kept_size as u64, size as u64, &hashes(&proof["proof"]), &root, &hash(&proof["to_root"])));
        // Out-of-range questions are refused with the rule named.
        let (status, problem) = get_json(&app, &token, &format!("/v1/audit/proofs/inclusion?position=0&tree_size={}", size + 1)).await;
        assert_eq!((status, problem["errors"][0]["rule"].as_str()), (422, Some("sealed_size")));

        let (status, report) = get_json(&app, &token, "/v1/audit/verify").await;
        assert_eq!(status, 200);
        assert_eq!(report["intact"], true, "{report}");
        assert_eq!(report["checked"], size);
    }

    async fn altering_deleting_reordering_or_cutting_records_is_caught(backend) {
        for attack in ["alter", "delete", "reorder", "truncate"] {
            let (app, provider) = gateway_with_provider(backend).await;
            for n in 1..=6 {
                app.register_ok_typed(registration_typed(n)).await;
            }
            let size = sealed(&app).await;
            assert!(size >= 6);
            let token = auditor(&provider).await;
            let (_, report) = get_json(&app, &token, "/v1/audit/verify").await;
            assert_eq!(report["intact"], true, "{report}");
            // Keep a checkpoint of the head, as an auditor would, outside the database.
            let services = gateway_api::startup::services(std::sync::Arc::new(app.open_database()), std::sync::Arc::new(gateway_domain::SystemClock));
            let head = services.tree_head().unwrap();
            assert_eq!(head.size, size);
            let dir = tempfile::tempdir().unwrap();
            let (_, kept) = {
                let mut latest = Value::Null;
                for _ in 0..60 {
                    let (status, body) = get_json(&app, &token, "/v1/audit/checkpoints/latest").await;
                    if status == 200 && body["tree_size"] == size {
                        latest = body;
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                assert_eq!(latest["tree_size"], size, "a checkpoint of the whole trail");
                let file = dir.path().join("checkpoint.json");
                std::fs::write(&file, latest.to_string()).unwrap();
                (latest, file)
            };
            let target = 3;
            match attack {
                "alter" => tamper(&app, &format!("UPDATE audit_events SET details = '{{\"forged\":true}}' WHERE log_position = {target}")),
                "delete" => tamper(&app, &format!("DELETE FROM audit_events WHERE log_position = {target}")),
                "reorder" => {
                    tamper(&app, &format!("UPDATE audit_events SET log_position = -1 WHERE log_position = {target}"));
                    tamper(&app, &format!("UPDATE audit_events SET log_position = {target} WHERE log_position = {}", target + 1));
                    tamper(&app, &format!("UPDATE audit_events SET log_position = {} WHERE log_position = -1", target + 1));
                }
                _ => {
                    // Cut the tail and the checkpoints that would tell: only a kept one can.
                    tamper(&app, &format!("DELETE FROM audit_events WHERE log_position >= {target}"));
                    tamper(&app, "DELETE FROM audit_checkpoints");
                }
            }
            let (_, report) = get_json(&app, &token, "/v1/audit/verify").await;
            let mut settings = app.settings.clone();
            settings.server.port = 0;
            let (offline, intact) = gateway_api::commands::audit_verify(&settings, Some(&kept), None).unwrap();
            assert!(!intact, "{attack}: {offline}");
            assert_eq!(offline["first_bad"]["position"], target, "{attack}: {offline}");
            if attack == "truncate" {
                assert_eq!(report["intact"], true, "without a kept checkpoint a cut tail looks whole");
                assert!(offline["first_bad"]["reason"].as_str().unwrap().contains("removed"), "{offline}");
            } else {
                assert_eq!(report["intact"], false, "{attack}: {report}");
                assert_eq!(report["first_bad"]["position"], target, "{attack}: {report}");
            }
        }
    }
}
