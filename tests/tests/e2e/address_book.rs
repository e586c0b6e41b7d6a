//! Address-book federation end to end: the publisher's batches (all or nothing, idempotent),
//! the import command (resumable), and a partner syncing exactly its view through a snapshot
//! and the change feed, as JSON, CSV and gzip, with cursors that refuse tampering, other
//! organisations and stale views, and every page recorded as a disclosure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::e2e_tests;
use crate::keys::{claims, sign, TestKey};
use crate::onboarding::{act, approved_partner};
use crate::reviewers::gateway_with_provider_and;
use crate::support::TestApp;

const PUBLISHER: &str = "directory-publisher";

/// A gateway with a configured publisher, and a token for it.
pub(crate) async fn gateway(
    backend: gateway_persistence::Backend,
) -> (
    TestApp,
    crate::oidc_provider::OidcProvider,
    String,
    tempfile::TempDir,
) {
    gateway_and(backend, |_| {}).await
}

pub(crate) async fn gateway_and(
    backend: gateway_persistence::Backend,
    tweak: impl FnOnce(&mut gateway_api::config::Settings),
) -> (
    TestApp,
    crate::oidc_provider::OidcProvider,
    String,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::new("ec_p256", "pub-1");
    let jwks_file = dir.path().join("publisher.jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let (app, provider) = gateway_with_provider_and(backend, |settings| {
        settings.publisher.client_id = PUBLISHER.into();
        settings.publisher.jwks_file = jwks_file.display().to_string();
        tweak(settings);
    })
    .await;
    let assertion = sign(&key, &claims(PUBLISHER, &app.token_endpoint()));
    let token = app
        .request_token(&assertion, None)
        .await
        .unwrap()
        .into_inner()
        .access_token;
    (app, provider, token, dir)
}

pub(crate) fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

pub(crate) fn entry(n: u32, ods: &str, hidden: bool) -> Value {
    json!({
        "id": uuid(n), "email": format!("person{n}@nhs.net"), "display_name": format!("Person {n}"),
        "given_name": "Ada", "surname": format!("Surname{n}"), "job_title": "Staff Nurse", "department": null,
        "organisation": {"ods_code": ods, "name": format!("Trust {ods}")},
        "office_phone": "0113 243 3144", "mobile_phone": null, "hidden_from_address_book": hidden
    })
}

pub(crate) fn upsert(entry: Value) -> Value {
    json!({"op": "upsert", "entry": entry})
}

pub(crate) async fn publish(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value, bool) {
    let mut request = reqwest::Client::new()
        .post(app.url("/v1/directory/changes"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, response.json().await.unwrap(), replayed)
}

async fn page(app: &TestApp, token: &str, cursor: Option<&str>, limit: u32) -> (u16, Value) {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    let response = reqwest::Client::new()
        .get(app.url("/v1/address-book/changes"))
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Follows the feed until nothing more is waiting; returns the last cursor.
async fn follow(
    app: &TestApp,
    token: &str,
    replica: &mut BTreeMap<String, Value>,
    mut cursor: Option<String>,
    reasons: &mut Vec<(String, String)>,
) -> String {
    loop {
        let (status, body) = page(app, token, cursor.as_deref(), 2).await;
        assert_eq!(status, 200, "{body}");
        if body["reset"] == true {
            replica.clear();
        }
        for item in body["items"].as_array().unwrap() {
            match item["op"].as_str().unwrap() {
                "upsert" => {
                    replica.insert(
                        item["entry"]["id"].as_str().unwrap().to_owned(),
                        item["entry"].clone(),
                    );
                }
                _ => {
                    let id = item["id"].as_str().unwrap().to_owned();
                    reasons.push((id.clone(), item["reason"].as_str().unwrap().to_owned()));
                    replica.remove(&id);
                }
            }
        }
        cursor = Some(body["next_cursor"].as_str().unwrap().to_owned());
        if body["has_more"] == false {
            return cursor.unwrap();
        }
    }
}

fn agreement(organisations: &[&str], attributes: &[&str]) -> Value {
    json!({
        "template_version": "2026-11",
        "scopes": {"address_book": {"attributes": attributes, "organisations": organisations}},
        "term": {"starts_on": "2026-01-01", "ends_on": "2028-06-30"},
        "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
    })
}

e2e_tests! {
    async fn a_partner_syncs_exactly_its_view_and_then_follows_the_feed(backend) {
        let (app, provider, publisher, _dir) = gateway(backend).await;
        let mut ops = vec![];
        for n in 1..=5 { ops.push(upsert(entry(n, "RR8", false))); }
        ops.push(upsert(entry(6, "RR8", true)));
        ops.push(upsert(entry(7, "AB1", false)));
        ops.push(upsert(entry(8, "RX9", false)));
        let (status, answer, _) = publish(&app, &publisher, None, &json!({"operations": ops})).await;
        assert_eq!((status, answer["upserted"].as_u64()), (200, Some(8)), "{answer}");

        let (partner, reviewer, approver, aid) = approved_partner(&app, &provider, 1, agreement(&["RR8", "AB1"], &["display_name", "job_title"])).await;
        let token = app.access_token(partner.id, &partner.key).await;
        let mut replica = BTreeMap::new();
        let mut reasons = vec![];
        let cursor = follow(&app, &token, &mut replica, None, &mut reasons).await;
        // Exactly the view: RR8 and AB1, never hidden, only granted attributes.
        assert_eq!(replica.keys().cloned().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 7].map(uuid));
        let first = &replica[&uuid(1)];
        let mut keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["display_name", "email", "id", "job_title"], "{first}");

        // Changes: one moves out of scope, one is hidden, one deleted, one changed, one new.
        let mut changed = entry(4, "RR8", false);
        changed["job_title"] = json!("Ward Sister");
        let (status, answer, _) = publish(&app, &publisher, None, &json!({"operations": [
            upsert(entry(1, "RX9", false)),
            upsert(entry(2, "RR8", true)),
            {"op": "delete", "id": uuid(3)},
            upsert(changed),
            upsert(entry(9, "AB1", false)),
            upsert(entry(10, "RX9", false)),
        ]})).await;
        assert_eq!(status, 200, "{answer}");
        let cursor = follow(&app, &token, &mut replica, Some(cursor), &mut reasons).await;
        assert_eq!(replica.keys().cloned().collect::<Vec<_>>(), [4, 5, 7, 9].map(uuid));
        assert_eq!(replica[&uuid(4)]["job_title"], "Ward Sister");
        reasons.sort();
        assert_eq!(reasons, [(uuid(1), "left_scope".to_owned()), (uuid(2), "hidden".to_owned()), (uuid(3), "deleted".to_owned())]);
        // An entry that was never in the view is never mentioned, not even as a delete.
        let (_, quiet) = page(&app, &token, Some(&cursor), 10).await;
        assert_eq!(quiet["items"], json!([]));

        // CSV: the same page with Exchange's bulk-import columns; gzip on request.
        let csv = reqwest::Client::new().get(app.url("/v1/address-book/changes?limit=2")).bearer_auth(&token).header("Accept", "text/csv").send().await.unwrap();
        assert_eq!(csv.status(), 200);
        assert!(csv.headers()["link"].to_str().unwrap().contains("rel=\"next\""));
        assert_eq!(csv.headers()["sync-reset"], "true");
        let text = csv.text().await.unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "ExternalEmailAddress,Name,FirstName,LastName,DisplayName,Title,Department,Company,Phone,MobilePhone,Op,Id");
        assert_eq!(lines[1], format!("person4@nhs.net,Person 4,,,Person 4,Ward Sister,,,,,upsert,{}", uuid(4)));
        let gzip = reqwest::Client::new().get(app.url("/v1/address-book/changes")).bearer_auth(&token).header("Accept-Encoding", "gzip").send().await.unwrap();
        assert_eq!(gzip.headers()["content-encoding"], "gzip");
        let refused_csv = reqwest::Client::new().get(app.url("/v1/address-book/changes")).bearer_auth(&token).header("Accept", "application/json, text/csv;q=0").send().await.unwrap();
        assert_eq!(refused_csv.headers()["content-type"], "application/json", "text/csv;q=0 is a no");

        // Cursors: tampered, or another organisation's, are refused.
        let (status, problem) = page(&app, &token, Some(&format!("{cursor}x")), 10).await;
        assert_eq!((status, problem["errors"][0]["rule"].as_str()), (422, Some("cursor_valid")), "{problem}");
        let (other, _, _, _) = approved_partner(&app, &provider, 2, agreement(&["RR8"], &["display_name"])).await;
        let other_token = app.access_token(other.id, &other.key).await;
        let (status, _) = page(&app, &other_token, Some(&cursor), 10).await;
        assert_eq!(status, 422);

        // Every page served is a disclosure in the audit trail.
        let disclosures: Vec<_> = app.all_events().into_iter().filter(|e| e.action == "data.disclosed" && e.details["what"] == "address_book.page" && e.details["organisation_id"] == partner.id.to_string()).collect();
        assert!(disclosures.len() >= 6, "{}", disclosures.len());
        assert!(disclosures.iter().any(|e| e.details["count"] == 2 && e.details["reset"] == true));

        // A new agreement with another view makes old cursors resync (410).
        let aid2 = partner.submitted_agreement(&app, agreement(&["RR8"], &["display_name"])).await;
        assert_eq!(act(&reviewer, &app, &aid2, json!({"action": "check"})).await.0, 200);
        let (status, body) = act(&approver, &app, &aid2, json!({"action": "approve"})).await;
        assert_eq!(status, 200, "{body}");
        let (status, problem) = page(&app, &token, Some(&cursor), 10).await;
        assert_eq!((status, problem["type"].as_str()), (410, Some("/problems/resync-required")), "{problem}");

        // A suspension stops the feed at once, also for a token issued before it.
        let (status, _) = act(&approver, &app, &aid2, json!({"action": "suspend", "reason": "DSPT under review"})).await;
        assert_eq!(status, 200);
        let (status, problem) = page(&app, &token, None, 10).await;
        assert_eq!((status, problem["type"].as_str()), (403, Some("/problems/grant-inactive")));
        let _ = aid;
    }

    async fn publisher_batches_are_all_or_nothing_and_idempotent(backend) {
        let (app, _provider, publisher, _dir) = gateway(backend).await;
        let mut bad_email = entry(2, "RR8", false);
        bad_email["email"] = json!("not an address");
        let mut bad_ods = entry(3, "R!8", false);
        bad_ods["surname"] = json!("  ");
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": [upsert(entry(1, "RR8", false)), upsert(bad_email), upsert(bad_ods)]})).await;
        assert_eq!(status, 422, "{problem}");
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["operations[1].entry.email", "operations[2].entry.surname", "operations[2].entry.organisation.ods_code"]);
        use gateway_domain::DirectoryRepository;
        let db = app.open_database();
        assert_eq!(db.feed_head().unwrap().head, 0, "an invalid batch stores nothing");
        assert!(db.get_entry(gateway_domain::directory::EntryId::parse(&uuid(1)).unwrap()).unwrap().is_none());
        // Malformed JSON names the operation too.
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": [{"op": "rename", "id": uuid(1)}]})).await;
        assert_eq!(status, 400, "{problem}");

        // A field left out is not a field cleared: refused, naming it.
        let mut partial = entry(1, "RR8", false);
        partial.as_object_mut().unwrap().remove("hidden_from_address_book");
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": [upsert(partial)]})).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "operations[0].entry.hidden_from_address_book", "{problem}");
        let mut partial = entry(1, "RR8", false);
        partial.as_object_mut().unwrap().remove("mobile_phone");
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": [upsert(partial)]})).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (400, Some("operations[0].entry.mobile_phone")), "{problem}");
        // More than 10,000 operations: refused while reading.
        let flood: Vec<Value> = (0..10_001).map(|n| json!({"op": "delete", "id": uuid(n)})).collect();
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": flood})).await;
        assert_eq!(status, 400, "{problem}");
        assert!(problem.to_string().contains("at most 10000 operations"), "{problem}");
        assert_eq!(db.feed_head().unwrap().head, 0);

        let body = json!({"operations": [upsert(entry(1, "RR8", false)), upsert(entry(2, "RR8", false))]});
        let (status, first, replayed) = publish(&app, &publisher, Some("batch-0001"), &body).await;
        assert_eq!((status, replayed), (200, false), "{first}");
        assert_eq!(first["upserted"], 2);
        let (status, again, replayed) = publish(&app, &publisher, Some("batch-0001"), &body).await;
        assert_eq!((status, replayed), (200, true));
        assert_eq!(again, first, "a retry gets the first answer");
        let events = app.all_events().into_iter().filter(|e| e.action == "directory.changed").count();
        assert_eq!(events, 1, "a retry changes nothing");
        let other = json!({"operations": [upsert(entry(3, "RR8", false))]});
        let (status, problem, _) = publish(&app, &publisher, Some("batch-0001"), &other).await;
        assert_eq!((status, problem["errors"][0]["rule"].as_str()), (422, Some("idempotency_key_reused")));
        // An email another entry holds is refused naming the operation.
        let mut thief = entry(4, "RR8", false);
        thief["email"] = json!("person1@nhs.net");
        let (status, problem, _) = publish(&app, &publisher, None, &json!({"operations": [upsert(entry(5, "RR8", false)), upsert(thief)]})).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str(), problem["errors"][0]["rule"].as_str()), (422, Some("operations[1].entry.email"), Some("email_unique")), "{problem}");

        // Only the publisher may publish.
        let (id, reg_token, _) = app.register_ok_typed(crate::support::registration_typed(1)).await;
        let key = TestKey::new("ed25519_a", "k1");
        app.put_keys(id, &reg_token, vec![key.jwk()]).await.unwrap();
        let partner_token = app.access_token(id, &key).await;
        let (status, _, _) = publish(&app, &partner_token, None, &body).await;
        assert_eq!(status, 403);
        let response = reqwest::Client::new().post(app.url("/v1/directory/changes")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 401);
        // And a partner without an agreement gets no address book.
        let (status, _) = page(&app, &partner_token, None, 10).await;
        assert_eq!(status, 403);
    }

    async fn an_import_stopped_by_a_bad_line_resumes_without_doubling(backend) {
        let (app, _provider, _publisher, dir) = gateway(backend).await;
        let file = dir.path().join("directory.jsonl");
        let mut lines: Vec<String> = (1..=25).map(|n| upsert(entry(n, "RR8", false)).to_string()).collect();
        let good = lines[17].clone();
        lines[17] = lines[17].replace("person18@nhs.net", "person18 at nhs.net");
        lines.insert(5, String::new());
        std::fs::write(&file, lines.join("\n")).unwrap();
        let error = gateway_api::directory_import::import(&app.settings, &file, 5, false).unwrap_err();
        let bad = error.downcast_ref::<gateway_api::directory_import::BadLines>().expect("bad lines");
        assert_eq!((bad.0[0].line, bad.0[0].field.as_str()), (19, "entry.email"), "{error}");
        use gateway_domain::DirectoryRepository;
        let db = app.open_database();
        let present = |n: u32| db.get_entry(gateway_domain::directory::EntryId::parse(&uuid(n)).unwrap()).unwrap().is_some();
        assert!(present(15) && !present(16), "the batches before the bad one are committed");
        let head = db.feed_head().unwrap().head;
        assert_eq!(head, 15);

        lines[18] = good;
        std::fs::write(&file, lines.join("\n")).unwrap();
        let report = gateway_api::directory_import::import(&app.settings, &file, 5, false).unwrap();
        assert_eq!((report.batches_skipped, report.batches_applied, report.upserted), (3, 2, 10), "{report:?}");
        assert!((1..=25).all(present));
        assert_eq!(db.feed_head().unwrap().head, 25, "nothing was applied twice");
        let report = gateway_api::directory_import::import(&app.settings, &file, 5, false).unwrap();
        assert_eq!((report.batches_skipped, report.upserted), (5, 0));
    }

    async fn old_cursors_get_410_once_their_changes_are_purged(backend) {
        let (app, provider, publisher, _dir) = gateway(backend).await;
        publish(&app, &publisher, None, &json!({"operations": [upsert(entry(1, "RR8", false))]})).await;
        let (partner, _, _, _) = approved_partner(&app, &provider, 1, agreement(&["RR8"], &["display_name"])).await;
        let token = app.access_token(partner.id, &partner.key).await;
        let mut replica = BTreeMap::new();
        let cursor = follow(&app, &token, &mut replica, None, &mut vec![]).await;
        publish(&app, &publisher, None, &json!({"operations": [{"op": "delete", "id": uuid(1)}]})).await;
        let report = gateway_api::commands::maintenance(&app.settings, chrono::Utc::now() + chrono::Duration::days(181)).unwrap();
        assert_eq!(report.feed_changes_purged, 2);
        let (status, problem) = page(&app, &token, Some(&cursor), 10).await;
        assert_eq!((status, problem["type"].as_str(), problem["status"].as_u64()), (410, Some("/problems/resync-required"), Some(410)), "{problem}");
        let (status, fresh) = page(&app, &token, None, 10).await;
        assert_eq!((status, fresh["reset"].as_bool(), fresh["items"].as_array().map(Vec::len)), (200, Some(true), Some(0)));
    }

    async fn compressed_bodies_and_page_floods_are_refused(backend) {
        let (app, provider, publisher, _dir) = gateway_and(backend, |settings| {
            settings.address_book.page_burst = 3;
            settings.address_book.pages_per_minute = 1;
        })
        .await;
        let body = json!({"operations": [upsert(entry(1, "RR8", false))]});
        let response = reqwest::Client::new()
            .post(app.url("/v1/directory/changes"))
            .bearer_auth(&publisher)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let problem: Value = response.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("Content-Encoding"), "{problem}");
        use gateway_domain::DirectoryRepository;
        assert_eq!(app.open_database().feed_head().unwrap().head, 0, "a refused body stores nothing");
        let (status, _, _) = publish(&app, &publisher, None, &body).await;
        assert_eq!(status, 200);

        let (partner, _, _, _) = approved_partner(&app, &provider, 1, agreement(&["RR8"], &["display_name"])).await;
        let token = app.access_token(partner.id, &partner.key).await;
        for _ in 0..3 {
            assert_eq!(page(&app, &token, None, 10).await.0, 200);
        }
        let response = reqwest::Client::new().get(app.url("/v1/address-book/changes")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 429);
        let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        // The bucket is the organisation's: another partner still syncs.
        let (other, _, _, _) = approved_partner(&app, &provider, 2, agreement(&["RR8"], &["display_name"])).await;
        let other_token = app.access_token(other.id, &other.key).await;
        assert_eq!(page(&app, &other_token, None, 10).await.0, 200);
    }
}
