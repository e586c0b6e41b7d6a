//! Registration: the whole slice through HTTP, on both backends. Well-formed requests go
//! through the generated client; raw HTTP only for bodies and headers it cannot send.

use std::sync::Arc;

use gateway_client::types::{self, ContactDto, ContactsPatch, OrganisationPatch};
use gateway_domain::AuditRepository;
use gateway_persistence::testing::TestDatabase;
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::support::{
    assert_field_problem, assert_problem, problem_of, registration, registration_typed,
    settings_for, TestApp,
};

/// Applies `edit` to a valid registration (typed).
fn with(edit: impl FnOnce(&mut types::RegistrationRequest)) -> types::RegistrationRequest {
    let mut body = registration_typed(1);
    edit(&mut body);
    body
}

/// Applies `edit` to a valid registration (raw JSON).
fn with_raw(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = registration(1);
    edit(&mut body);
    body
}

/// A value of one of the client's checked string types (they enforce the document's
/// constraints on construction).
fn v<T>(raw: impl Into<String>) -> T
where
    T: TryFrom<String>,
    T::Error: std::fmt::Debug,
{
    T::try_from(raw.into()).unwrap()
}

fn rename(name: &str) -> OrganisationPatch {
    OrganisationPatch {
        name: Some(v(name)),
        ..OrganisationPatch::default()
    }
}

e2e_tests! {
    async fn register_read_update_and_conflicting_update(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.register_typed(registration_typed(1)).await.unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["etag"], "\"1\"");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let created = response.into_inner();
        let id = created.id;
        assert_eq!(location, format!("/v1/organisations/{id}"));
        assert_eq!(created.ods_code, "AB001", "ODS codes are upper-cased");
        assert_eq!(created.version, 1);
        assert_eq!(created.domains.len(), 1);
        assert_eq!(created.domains[0].name, "care1.example.org");
        assert!(!created.domains[0].accredited);
        assert_eq!(created.registration_client_uri, app.url(&location));
        let token = created.registration_access_token.clone();
        assert!(token.len() >= 43 + 22, "at least 256 bits of secret");

        let api = app.api_as(&token);
        let read = api.get_organisation().id(id).send().await.unwrap();
        assert_eq!(read.headers()["etag"], "\"1\"");
        let read = read.into_inner();
        assert_eq!(read.name, created.name);
        let raw: Value = app.get_organisation(&id.to_string(), Some(&token)).await.json().await.unwrap();
        assert!(raw.get("registration_access_token").is_none(), "the token is shown only once");

        let patch = OrganisationPatch {
            name: Some(v("Renamed Care")),
            domains: Some(vec![v("care1.example.org"), v("mail.care1.example.org")]),
            contacts: Some(ContactsPatch {
                technical: Some(ContactDto { name: v("Grace Hopper"), email: v("grace@care1.example.org") }),
                ig_lead: None,
            }),
            ..OrganisationPatch::default()
        };
        let updated = api.update_organisation().id(id).if_match("\"1\"").body(patch).send().await.unwrap();
        assert_eq!(updated.headers()["etag"], "\"2\"");
        let updated = updated.into_inner();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.name, "Renamed Care");
        assert_eq!(updated.contacts.technical.name.as_str(), "Grace Hopper");
        assert_eq!(updated.contacts.ig_lead, created.contacts.ig_lead, "contacts not named are kept");
        assert_eq!(updated.domains.len(), 2);

        // A writer still holding version 1 is refused and changes nothing.
        let stale = problem_of(api.update_organisation().id(id).if_match("\"1\"").body(rename("Lost Update")).send().await);
        assert_eq!(stale.0, 412);
        assert_eq!(stale.1.type_, "/problems/precondition-failed");
        // If-Match values the generated client refuses to send (it checks the documented
        // pattern), and a missing If-Match: raw HTTP.
        let blind = json!({"name": "Blind Write"});
        assert_eq!(app.patch_organisation(&id.to_string(), &token, Some("*"), &blind).await.status(), 428);
        assert_problem(app.patch_organisation(&id.to_string(), &token, Some("2"), &blind).await, 400, "If-Match", "entity_tag").await;
        assert_eq!(app.patch_organisation(&id.to_string(), &token, None, &blind).await.status(), 428);
        let now = api.get_organisation().id(id).send().await.unwrap().into_inner();
        assert_eq!(now.name, "Renamed Care");
        assert_eq!(now.version, 2);

        // Registration and update are both on the audit trail, attributed and without secrets.
        let events = app.organisation_events();
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["organisation.registered", "organisation.updated"]);
        assert_eq!(events[1].actor_id, Some(id.to_string()));
        assert_eq!(events[1].details["changed"], json!(["name", "domains", "contacts.technical"]));
        assert!(events.iter().all(|e| !e.details.to_string().contains(&token)));
        assert!(events.iter().all(|e| e.request_id.is_some()));
    }

    async fn every_broken_rule_is_refused_naming_the_field_and_storing_nothing(backend) {
        let app = TestApp::spawn(backend).await;
        let too_many: Vec<String> = (0..239).map(|i| format!("d{i}.example.org")).collect();
        // Requests that fit the document but break a rule: through the generated client.
        // Requests that fit the document but break a rule no schema states (reserved and
        // retired domains, a name listed twice in another case): through the generated client.
        let cases: Vec<(types::RegistrationRequest, &str, &str)> = vec![
            (with(|b| b.domains = vec![v("ok.example.org"), v("nhs.net")]), "domains[1]", "reserved_domain"),
            (with(|b| b.domains = vec![v("leeds.NHS.net")]), "domains[0]", "reserved_domain"),
            (with(|b| b.domains = vec![v("council.gcsx.gov.uk")]), "domains[0]", "retired_domain"),
            (with(|b| b.domains = vec![v("a.example.org"), v("A.example.org")]), "domains[1]", "unique"),
        ];
        for (body, field, rule) in cases {
            assert_field_problem(&problem_of(app.register_typed(body).await), 422, field, rule);
        }
        // The generated client checks what the document states before sending.
        let contact = |name: &str, email: &str| -> Result<ContactDto, String> {
            Ok(ContactDto { name: name.try_into().map_err(|e| format!("{e:?}"))?, email: email.try_into().map_err(|e| format!("{e:?}"))? })
        };
        assert!(contact("Ada", "nope").is_err());
        assert!(contact(" ", "alan@care1.example.org").is_err());
        assert!(types::OdsCode::try_from("A-1").is_err());
        assert!(types::DnsName::try_from("not a domain").is_err());

        // Values the document itself excludes (the generated client will not send them), and
        // malformed bodies: raw HTTP.
        let raw_cases: Vec<(Value, u16, &str, &str)> = vec![
            (with_raw(|b| b["ods_code"] = json!("A-1")), 422, "ods_code", "alphanumeric"),
            (with_raw(|b| b["ods_code"] = json!("ABCDEFGHIJK")), 422, "ods_code", "length"),
            (with_raw(|b| b["name"] = json!("  ")), 422, "name", "required"),
            (with_raw(|b| b["name"] = json!("x".repeat(201))), 422, "name", "length"),
            (with_raw(|b| b["domains"] = json!(["not a domain"])), 422, "domains[0]", "dns_name"),
            (with_raw(|b| b["domains"] = json!(["localhost"])), 422, "domains[0]", "dns_name"),
            (with_raw(|b| b["domains"] = json!(["a.example.org", "a.example.org"])), 422, "domains[1]", "unique"),
            (with_raw(|b| b["contacts"]["ig_lead"]["email"] = json!("nope")), 422, "contacts.ig_lead.email", "email"),
            (with_raw(|b| b["contacts"]["technical"]["name"] = json!(" ")), 422, "contacts.technical.name", "required"),
            (with_raw(|b| b["business_need"] = json!("x".repeat(4001))), 422, "business_need", "length"),
            (with_raw(|b| b["ods_code"] = json!("AB")), 422, "ods_code", "length"),
            (with_raw(|b| b["domains"] = json!([])), 422, "domains", "count"),
            (with_raw(|b| b["domains"] = json!(too_many)), 422, "domains", "count"),
            (with_raw(|b| b["contacts"]["technical"]["name"] = json!("")), 422, "contacts.technical.name", "required"),
            (with_raw(|b| b["business_need"] = json!("")), 422, "business_need", "required"),
            (with_raw(|b| b["category"] = json!("hospital")), 422, "category", "one_of"),
            (with_raw(|b| b["exchange_version"] = json!("exchange_2007")), 422, "exchange_version", "minimum_version"),
            (with_raw(|b| b["exchange_version"] = json!("exchange_2003")), 422, "exchange_version", "minimum_version"),
            (with_raw(|b| b["exchange_version"] = json!("notes")), 422, "exchange_version", "one_of"),
            (with_raw(|b| b["surprise"] = json!(true)), 400, "surprise", "unknown_field"),
            (with_raw(|b| b["contacts"]["ig_lead"]["phone"] = json!("1")), 400, "contacts.ig_lead.phone", "unknown_field"),
            (with_raw(|b| { b.as_object_mut().unwrap().remove("name"); }), 400, "name", "required"),
            (with_raw(|b| b["ods_code"] = json!(5)), 400, "ods_code", "type"),
            (with_raw(|b| b["domains"] = json!("care1.example.org")), 400, "domains", "type"),
        ];
        for (body, status, field, rule) in raw_cases {
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

        // Nothing was stored: no organisation event and the same registration still succeeds.
        assert!(app.organisation_events().is_empty());
        app.register_ok_typed(registration_typed(1)).await;
    }

    async fn unverified_claims_and_unheld_ods_codes_block_nobody(backend) {
        // Holding a name needs proof (tests/e2e/domains.rs): a claim alone blocks nobody.
        let app = TestApp::spawn(backend).await;
        let (_, _, first) = app.register_ok_typed(registration_typed(1)).await;
        assert_eq!(first.domains[0].verification, gateway_client::types::DomainVerificationStatus::Unverified);

        let mut second = registration_typed(2);
        second.domains = vec![v("care2.example.org"), v("CARE1.example.org")];
        second.ods_code = v("ab001");
        let (_, _, second) = app.register_ok_typed(second).await;
        assert_eq!(second.domains[1].name, "care1.example.org");
        assert_eq!(second.ods_code, "AB001");

        // Each claim has its own token; updating into another organisation's claim is fine too.
        assert_ne!(first.domains[0].txt_record.as_ref().unwrap().value, second.domains[1].txt_record.as_ref().unwrap().value);
        let (id4, token4, _) = app.register_ok_typed(registration_typed(4)).await;
        let patch = OrganisationPatch { domains: Some(vec![v("care2.example.org")]), ..OrganisationPatch::default() };
        app.api_as(&token4).update_organisation().id(id4).if_match("\"1\"").body(patch).send().await.unwrap();
    }

    async fn tokens_see_only_their_own_organisation(backend) {
        let app = TestApp::spawn(backend).await;
        let (id_a, token_a, _) = app.register_ok_typed(registration_typed(1)).await;
        let (id_b, token_b, _) = app.register_ok_typed(registration_typed(2)).await;

        let none = app.get_organisation(&id_a.to_string(), None).await;
        assert_eq!(none.status(), 401);
        assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_eq!(problem_of(app.api().get_organisation().id(id_a).send().await).0, 401);
        assert_eq!(problem_of(app.api_as("gwrat_nonsense").get_organisation().id(id_a).send().await).0, 401);
        let forged = format!("{}x", &token_a[..token_a.len() - 1]);
        assert_eq!(problem_of(app.api_as(&forged).get_organisation().id(id_a).send().await).0, 401);

        // A's token on B, on an unknown id and on a malformed id: all alike 404.
        let api_a = app.api_as(&token_a);
        let cross = problem_of(api_a.get_organisation().id(id_b).send().await);
        assert_eq!(cross.0, 404);
        let unknown = problem_of(api_a.get_organisation().id(uuid::Uuid::now_v7()).send().await);
        assert_eq!(unknown.0, 404);
        assert_eq!(format!("{:?}", unknown.1), format!("{:?}", cross.1), "another's and a missing organisation answer alike");
        assert_eq!(app.get_organisation("not-a-uuid", Some(&token_a)).await.status(), 404);
        let cross_patch = problem_of(api_a.update_organisation().id(id_b).if_match("\"1\"").body(rename("Hijacked")).send().await);
        assert_eq!(cross_patch.0, 404);
        let b = app.api_as(&token_b).get_organisation().id(id_b).send().await.unwrap().into_inner();
        assert_eq!(b.name, "Care Organisation 2");
    }

    async fn patch_refuses_nulls_unknown_fields_and_rule_breaks(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, token, _) = app.register_ok_typed(registration_typed(1)).await;
        let raw_id = id.to_string();
        assert_problem(app.patch_organisation(&raw_id, &token, Some("\"1\""), &json!({"name": null})).await, 400, "name", "type").await;
        assert_problem(app.patch_organisation(&raw_id, &token, Some("\"1\""), &json!({"ods_code": "ZZ999"})).await, 400, "ods_code", "unknown_field").await;
        assert_problem(app.patch_organisation(&raw_id, &token, Some("\"1\""), &json!({"exchange_version": "exchange_2007"})).await, 422, "exchange_version", "minimum_version").await;
        let api = app.api_as(&token);
        let patch = OrganisationPatch { domains: Some(vec![v("x.nhs.net")]), ..OrganisationPatch::default() };
        assert_field_problem(&problem_of(api.update_organisation().id(id).if_match("\"1\"").body(patch).send().await), 422, "domains[0]", "reserved_domain");
        let unchanged = api.get_organisation().id(id).send().await.unwrap().into_inner();
        assert_eq!(unchanged.version, 1);
        // A patch that changes nothing keeps the version.
        let same = api.update_organisation().id(id).if_match("\"1\"").body(rename("Care Organisation 1")).send().await.unwrap();
        assert_eq!(same.headers()["etag"], "\"1\"");
    }

    async fn data_survives_a_restart(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, token, created) = app.register_ok_typed(registration_typed(1)).await;
        let (database, settings) = app.stop().await;
        let app = TestApp::spawn_with(database, settings).await;
        let read = app.api_as(&token).get_organisation().id(id).send().await.unwrap().into_inner();
        assert_eq!(read.ods_code, created.ods_code, "the token still works after a restart");
        assert_eq!(read.created_at, created.created_at);
    }

    async fn imported_accreditation_shows_on_domains(backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = registration_typed(1);
        body.domains = vec![v("care1.example.org"), v("a.council.gov.uk"), v("other.example.net")];
        let (id, token, _) = app.register_ok_typed(body).await;
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dcb1596.txt");
        std::fs::write(&list, "# accredited\ncare1.example.org\n*.council.gov.uk\n").unwrap();
        let stored = gateway_api::commands::import_secure_domains(&app.settings, &list).unwrap();
        assert_eq!(stored, 2);
        let read = app.api_as(&token).get_organisation().id(id).send().await.unwrap().into_inner();
        let flags: Vec<_> = read.domains.iter().map(|d| (d.name.as_str(), d.accredited)).collect();
        assert_eq!(flags, [("care1.example.org", true), ("a.council.gov.uk", true), ("other.example.net", false)]);
        let events = app.open_database().list_events(0, 10).unwrap();
        assert_eq!(events.last().unwrap().action, "secure_domains.imported");
    }

    async fn registration_is_rate_limited_per_client(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        settings.registration.rate_limit_per_minute = 2;
        settings.registration.rate_limit_burst = 2;
        let app = TestApp::spawn_with(database, settings).await;
        app.register_ok_typed(registration_typed(1)).await;
        app.register_ok_typed(registration_typed(2)).await;
        let limited = app.register(&registration(3)).await;
        assert_eq!(limited.status(), 429);
        let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert_eq!(limited.headers()["content-type"], "application/problem+json");
    }
}
