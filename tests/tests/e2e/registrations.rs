//! Registration: the whole slice through HTTP, on both backends.

use std::sync::Arc;

use gateway_domain::AuditRepository;
use gateway_persistence::testing::TestDatabase;
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::support::{assert_problem, registration, settings_for, TestApp};

/// Applies `edit` to a valid registration.
fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = registration(1);
    edit(&mut body);
    body
}

e2e_tests! {
    async fn register_read_update_and_conflicting_update(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.register(&registration(1)).await;
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["etag"], "\"1\"");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let created: Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(location, format!("/v1/organisations/{id}"));
        assert_eq!(created["ods_code"], "AB001", "ODS codes are upper-cased");
        assert_eq!(created["domains"], json!([{"name": "care1.example.org", "accredited": false}]));
        assert_eq!(created["registration_client_uri"], app.url(&location));
        let token = created["registration_access_token"].as_str().unwrap();
        assert!(token.len() >= 43 + 22, "at least 256 bits of secret");

        let read = app.get_organisation(id, Some(token)).await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.headers()["etag"], "\"1\"");
        let read: Value = read.json().await.unwrap();
        assert!(read.get("registration_access_token").is_none(), "the token is shown only once");
        assert_eq!(read["name"], created["name"]);

        let patch = json!({"name": "Renamed Care", "domains": ["care1.example.org", "mail.care1.example.org"], "contacts": {"technical": {"name": "Grace Hopper", "email": "grace@care1.example.org"}}});
        let updated = app.patch_organisation(id, token, Some("\"1\""), &patch).await;
        assert_eq!(updated.status(), 200);
        assert_eq!(updated.headers()["etag"], "\"2\"");
        let updated: Value = updated.json().await.unwrap();
        assert_eq!(updated["version"], 2);
        assert_eq!(updated["name"], "Renamed Care");
        assert_eq!(updated["contacts"]["technical"]["name"], "Grace Hopper");
        assert_eq!(updated["contacts"]["ig_lead"], created["contacts"]["ig_lead"], "contacts not named are kept");
        assert_eq!(updated["domains"].as_array().unwrap().len(), 2);

        // A writer still holding version 1 is refused and changes nothing.
        let stale = app.patch_organisation(id, token, Some("\"1\""), &json!({"name": "Lost Update"})).await;
        assert_eq!(stale.status(), 412);
        assert_eq!(stale.headers()["content-type"], "application/problem+json");
        let missing = app.patch_organisation(id, token, None, &json!({"name": "Blind Write"})).await;
        assert_eq!(missing.status(), 428);
        let star = app.patch_organisation(id, token, Some("*"), &json!({"name": "Blind Write"})).await;
        assert_eq!(star.status(), 428);
        let now: Value = app.get_organisation(id, Some(token)).await.json().await.unwrap();
        assert_eq!(now["name"], "Renamed Care");
        assert_eq!(now["version"], 2);

        // Registration and update are both on the audit trail, attributed and without secrets.
        let events = app.open_database().list(0, 100).unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["organisation.registered", "organisation.updated"]);
        assert_eq!(events[1].actor_id.as_deref(), Some(id));
        assert_eq!(events[1].details["changed"], json!(["name", "domains", "contacts.technical"]));
        assert!(events.iter().all(|e| !e.details.to_string().contains(token)));
        assert!(events.iter().all(|e| e.request_id.is_some()));
    }

    async fn every_broken_rule_is_refused_naming_the_field_and_storing_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let too_many: Vec<String> = (0..239).map(|i| format!("d{i}.example.org")).collect();
        let cases: Vec<(Value, u16, &str, &str)> = vec![
            (with(|b| b["ods_code"] = json!("A-1")), 422, "ods_code", "alphanumeric"),
            (with(|b| b["ods_code"] = json!("AB")), 422, "ods_code", "length"),
            (with(|b| b["ods_code"] = json!("ABCDEFGHIJK")), 422, "ods_code", "length"),
            (with(|b| b["name"] = json!("  ")), 422, "name", "required"),
            (with(|b| b["name"] = json!("x".repeat(201))), 422, "name", "length"),
            (with(|b| b["category"] = json!("hospital")), 422, "category", "one_of"),
            (with(|b| b["exchange_version"] = json!("exchange_2007")), 422, "exchange_version", "minimum_version"),
            (with(|b| b["exchange_version"] = json!("exchange_2003")), 422, "exchange_version", "minimum_version"),
            (with(|b| b["exchange_version"] = json!("notes")), 422, "exchange_version", "one_of"),
            (with(|b| b["domains"] = json!([])), 422, "domains", "count"),
            (with(|b| b["domains"] = json!(too_many)), 422, "domains", "count"),
            (with(|b| b["domains"] = json!(["not a domain"])), 422, "domains[0]", "dns_name"),
            (with(|b| b["domains"] = json!(["localhost"])), 422, "domains[0]", "dns_name"),
            (with(|b| b["domains"] = json!(["ok.example.org", "nhs.net"])), 422, "domains[1]", "reserved_domain"),
            (with(|b| b["domains"] = json!(["leeds.NHS.net"])), 422, "domains[0]", "reserved_domain"),
            (with(|b| b["domains"] = json!(["council.gcsx.gov.uk"])), 422, "domains[0]", "retired_domain"),
            (with(|b| b["domains"] = json!(["a.example.org", "A.example.org"])), 422, "domains[1]", "unique"),
            (with(|b| b["contacts"]["ig_lead"]["email"] = json!("nope")), 422, "contacts.ig_lead.email", "email"),
            (with(|b| b["contacts"]["technical"]["name"] = json!("")), 422, "contacts.technical.name", "required"),
            (with(|b| b["business_need"] = json!("")), 422, "business_need", "required"),
            (with(|b| b["business_need"] = json!("x".repeat(4001))), 422, "business_need", "length"),
            (with(|b| b["surprise"] = json!(true)), 400, "surprise", "unknown_field"),
            (with(|b| b["contacts"]["ig_lead"]["phone"] = json!("1")), 400, "contacts.ig_lead.phone", "unknown_field"),
            (with(|b| { b.as_object_mut().unwrap().remove("name"); }), 400, "name", "required"),
            (with(|b| b["ods_code"] = json!(5)), 400, "ods_code", "type"),
            (with(|b| b["domains"] = json!("care1.example.org")), 400, "domains", "type"),
        ];
        for (body, status, field, rule) in cases {
            let problem = assert_problem(app.register(&body).await, status, field, rule).await;
            if rule == "minimum_version" {
                assert!(problem.to_string().contains("Exchange 2010 or later"), "{problem}");
            }
        }

        let syntax = app.client.post(app.url("/v1/registrations")).header("content-type", "application/json").body("{\"ods_code\":").send().await.unwrap();
        assert_problem(syntax, 400, "", "json_syntax").await;

        let text = app.client.post(app.url("/v1/registrations")).header("content-type", "text/plain").body(registration(1).to_string()).send().await.unwrap();
        assert_eq!(text.status(), 415);
        assert_eq!(text.headers()["content-type"], "application/problem+json");

        let mut huge = registration(1);
        huge["business_need"] = json!("x".repeat(app.settings.server.json_body_limit_bytes + 1));
        let huge = app.register(&huge).await;
        assert_eq!(huge.status(), 413);
        assert_eq!(huge.headers()["content-type"], "application/problem+json");

        // Nothing was stored: the trail is empty and the same registration still succeeds.
        assert!(app.open_database().list(0, 10).unwrap().is_empty());
        app.register_ok(&registration(1)).await;
    }

    async fn a_domain_or_ods_code_belongs_to_one_organisation(backend) {
        let app = TestApp::spawn(backend).await;
        app.register_ok(&registration(1)).await;

        let mut second = registration(2);
        second["domains"] = json!(["care2.example.org", "CARE1.example.org"]);
        let problem = assert_problem(app.register(&second).await, 409, "domains", "unique_domain").await;
        assert!(problem["detail"].as_str().unwrap().contains("care1.example.org"), "{problem}");
        assert_eq!(problem["type"], "/problems/domain-taken");

        let mut same_ods = registration(3);
        same_ods["ods_code"] = json!("AB001");
        let problem = assert_problem(app.register(&same_ods).await, 409, "ods_code", "unique_ods_code").await;
        assert_eq!(problem["type"], "/problems/ods-code-taken");

        // The refused registrations left nothing behind: their free domains are still free.
        app.register_ok(&registration(2)).await;
        app.register_ok(&registration(3)).await;

        // Updating into another organisation's domain is refused too.
        let (id4, token4, _) = app.register_ok(&registration(4)).await;
        let taken = app.patch_organisation(&id4, &token4, Some("\"1\""), &json!({"domains": ["care2.example.org"]})).await;
        assert_problem(taken, 409, "domains", "unique_domain").await;
    }

    async fn tokens_see_only_their_own_organisation(backend) {
        let app = TestApp::spawn(backend).await;
        let (id_a, token_a, _) = app.register_ok(&registration(1)).await;
        let (id_b, token_b, _) = app.register_ok(&registration(2)).await;

        let none = app.get_organisation(&id_a, None).await;
        assert_eq!(none.status(), 401);
        assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let garbage = app.get_organisation(&id_a, Some("gwrat_nonsense")).await;
        assert_eq!(garbage.status(), 401);
        let forged = format!("{}x", &token_a[..token_a.len() - 1]);
        assert_eq!(app.get_organisation(&id_a, Some(&forged)).await.status(), 401);

        // A's token on B, on an unknown id and on a malformed id: all alike 404.
        let cross = app.get_organisation(&id_b, Some(&token_a)).await;
        assert_eq!(cross.status(), 404);
        let cross_body = cross.text().await.unwrap();
        let unknown = app.get_organisation(&uuid::Uuid::now_v7().to_string(), Some(&token_a)).await;
        assert_eq!(unknown.status(), 404);
        assert_eq!(unknown.text().await.unwrap(), cross_body, "another's and a missing organisation answer alike");
        assert_eq!(app.get_organisation("not-a-uuid", Some(&token_a)).await.status(), 404);
        let cross_patch = app.patch_organisation(&id_b, &token_a, Some("\"1\""), &json!({"name": "Hijacked"})).await;
        assert_eq!(cross_patch.status(), 404);
        let b: Value = app.get_organisation(&id_b, Some(&token_b)).await.json().await.unwrap();
        assert_eq!(b["name"], "Care Organisation 2");
    }

    async fn patch_refuses_nulls_unknown_fields_and_rule_breaks(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, token, _) = app.register_ok(&registration(1)).await;
        assert_problem(app.patch_organisation(&id, &token, Some("\"1\""), &json!({"name": null})).await, 400, "name", "type").await;
        assert_problem(app.patch_organisation(&id, &token, Some("\"1\""), &json!({"ods_code": "ZZ999"})).await, 400, "ods_code", "unknown_field").await;
        assert_problem(app.patch_organisation(&id, &token, Some("\"1\""), &json!({"exchange_version": "exchange_2007"})).await, 422, "exchange_version", "minimum_version").await;
        assert_problem(app.patch_organisation(&id, &token, Some("\"1\""), &json!({"domains": ["x.nhs.net"]})).await, 422, "domains[0]", "reserved_domain").await;
        let unchanged: Value = app.get_organisation(&id, Some(&token)).await.json().await.unwrap();
        assert_eq!(unchanged["version"], 1);
        // A patch that changes nothing keeps the version.
        let same = app.patch_organisation(&id, &token, Some("\"1\""), &json!({"name": "Care Organisation 1"})).await;
        assert_eq!(same.status(), 200);
        assert_eq!(same.headers()["etag"], "\"1\"");
    }

    async fn data_survives_a_restart(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, token, created) = app.register_ok(&registration(1)).await;
        let (database, settings) = app.stop().await;
        let app = TestApp::spawn_with(database, settings).await;
        let read = app.get_organisation(&id, Some(&token)).await;
        assert_eq!(read.status(), 200, "the token still works after a restart");
        let read: Value = read.json().await.unwrap();
        assert_eq!(read["ods_code"], created["ods_code"]);
        assert_eq!(read["created_at"], created["created_at"]);
    }

    async fn imported_accreditation_shows_on_domains(backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = registration(1);
        body["domains"] = json!(["care1.example.org", "a.council.gov.uk", "other.example.net"]);
        let (id, token, _) = app.register_ok(&body).await;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dcb1596.txt");
        std::fs::write(&list, "# accredited\ncare1.example.org\n*.council.gov.uk\n").unwrap();
        let stored = gateway_api::commands::import_secure_domains(&app.settings, &list).unwrap();
        assert_eq!(stored, 2);
        let read: Value = app.get_organisation(&id, Some(&token)).await.json().await.unwrap();
        assert_eq!(read["domains"], json!([
            {"name": "care1.example.org", "accredited": true},
            {"name": "a.council.gov.uk", "accredited": true},
            {"name": "other.example.net", "accredited": false},
        ]));
        let events = app.open_database().list(0, 10).unwrap();
        assert_eq!(events.last().unwrap().action, "secure_domains.imported");
    }

    async fn registration_is_rate_limited_per_client(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        settings.registration.rate_limit_per_minute = 2;
        settings.registration.rate_limit_burst = 2;
        let app = TestApp::spawn_with(database, settings).await;
        app.register_ok(&registration(1)).await;
        app.register_ok(&registration(2)).await;
        let limited = app.register(&registration(3)).await;
        assert_eq!(limited.status(), 429);
        let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert_eq!(limited.headers()["content-type"], "application/problem+json");
    }
}
