//! Identity and access: self-service keys, the private_key_jwt token endpoint, gateway access
//! tokens and their keys, scopes, and tenant isolation; on both backends.

use std::sync::Arc;

use chrono::{Duration, Utc};
use gateway_client::types::OAuthErrorResponse;
use gateway_client::{Error as ClientError, ResponseValue};
use gateway_domain::AuditRepository;
use gateway_persistence::testing::TestDatabase;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::keys::{claims, sign, token_form, TestKey};
use crate::support::{assert_field_problem, problem_of, registration_typed, settings_for, TestApp};

/// The OAuth error a token request failed with, and its status.
fn oauth_error<T: std::fmt::Debug>(
    result: Result<ResponseValue<T>, ClientError<OAuthErrorResponse>>,
) -> (u16, String) {
    match result {
        Err(ClientError::ErrorResponse(response)) => {
            (response.status().as_u16(), response.into_inner().error)
        }
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

/// A registered organisation with one Ed25519 key `k1`.
async fn partner(app: &TestApp, n: u32, key: &TestKey) -> (uuid::Uuid, String) {
    let (id, token, _) = app.register_ok_typed(registration_typed(n)).await;
    app.put_keys(id, &token, vec![key.jwk()])
        .await
        .expect("keys stored");
    (id, token)
}

/// Signs with an HMAC secret: what an attacker tries when they know only the public key.
fn sign_hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[derive(Debug)]
struct FixedClock(chrono::DateTime<Utc>);

impl gateway_domain::Clock for FixedClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        self.0
    }
}

e2e_tests! {
    async fn keys_rotate_self_service_and_tokens_work(backend) {
        let app = TestApp::spawn(backend).await;
        let old = TestKey::new("ed25519_a", "k-old");
        let (id, registration_token) = partner(&app, 1, &old).await;

        let keys = app.api_as(&registration_token).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].kid, "k-old");
        assert!(keys.keys[0].last_used_at.is_none() && keys.keys[0].days_until_removal.is_none());
        assert!(keys.keys[0].jwk.get("d").is_none());

        let assertion = sign(&old, &claims(&id.to_string(), &app.token_endpoint()));
        let issued = app.request_token(&assertion, None).await.unwrap();
        assert_eq!(issued.headers()["cache-control"], "no-store");
        let issued = issued.into_inner();
        assert_eq!(issued.token_type, "Bearer");
        assert_eq!(issued.scope, "organisation:manage", "no data scopes without an approved agreement");
        assert!(issued.expires_in > 0 && issued.expires_in <= 600);

        // The access token manages the organisation like the registration token does.
        let api = app.api_as(&issued.access_token);
        assert_eq!(api.get_organisation().id(id).send().await.unwrap().into_inner().id, id);
        let used = api.get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert!(used.keys[0].last_used_at.is_some(), "using a key records it");

        // Only the registration token changes keys: the access token reads them (above) but
        // gets 403 here, and nothing changes.
        let new = TestKey::new("ec_p256", "k-new");
        let refused = problem_of(app.put_keys(id, &issued.access_token, vec![old.jwk(), new.jwk()]).await);
        assert_eq!((refused.0, refused.1.type_.as_str()), (403, "/problems/forbidden"));
        assert_eq!(api.get_organisation_jwks().id(id).send().await.unwrap().into_inner().keys.len(), 1);

        // Rotation with no downtime: add the new key, use it, drop the old one.
        app.put_keys(id, &registration_token, vec![old.jwk(), new.jwk()]).await.unwrap();
        let still_used = api.get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert!(still_used.keys.iter().find(|k| k.kid == "k-old").unwrap().last_used_at.is_some(), "an unchanged key keeps its history");
        app.access_token(id, &new).await;
        app.access_token(id, &old).await;
        app.put_keys(id, &registration_token, vec![new.jwk()]).await.unwrap();
        let stale = sign(&old, &claims(&id.to_string(), &app.token_endpoint()));
        assert_eq!(oauth_error(app.request_token(&stale, None).await), (401, "invalid_client".to_owned()));
        app.access_token(id, &new).await;

        // RSA works too.
        let rsa = TestKey::new("rsa_2048", "k-rsa");
        app.put_keys(id, &registration_token, vec![rsa.jwk()]).await.unwrap();
        app.access_token(id, &rsa).await;

        // Audited: key changes and token issuance, never the token itself.
        let events = app.open_database().list_events(0, 1000).unwrap();
        assert!(events.iter().filter(|e| e.action == "keys.replaced").count() >= 4);
        let issued_events: Vec<_> = events.iter().filter(|e| e.action == "token.issued").collect();
        assert!(issued_events.len() >= 4);
        assert!(events.iter().all(|e| !e.details.to_string().contains(&issued.access_token)));
        assert!(!events.iter().any(|e| e.action == "token.assertion_rejected"), "refusals write no rows of their own");
        app.flush_failure_counts();
        assert!(app.all_events().iter().any(|e| e.action == "token.assertion_rejected" && e.details["count"].as_i64() >= Some(1)));
    }

    async fn every_assertion_rule_is_enforced(backend) {
        let app = TestApp::spawn(backend).await;
        let key = TestKey::new("ed25519_a", "k1");
        let (id, _) = partner(&app, 1, &key).await;
        let other_key = TestKey::new("ed25519_b", "k-b");
        let (id_b, _) = partner(&app, 2, &other_key).await;
        let client = id.to_string();
        let aud = app.token_endpoint();
        let good = || claims(&client, &aud);
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut c = good();
            edit(&mut c);
            c
        };
        let now = Utc::now().timestamp();

        // Reused jti: the first use works, the replay is refused (and stays refused).
        let once = sign(&key, &good());
        app.request_token(&once, None).await.unwrap();
        assert_eq!(oauth_error(app.request_token(&once, None).await), (400, "invalid_grant".to_owned()));
        // Also inside the clock-skew window after exp: the cache holds the jti as long as the
        // assertion is accepted.
        let just_expired = sign(&key, &with(&|c| c["exp"] = json!(now - 5)));
        app.request_token(&just_expired, None).await.unwrap();
        assert_eq!(oauth_error(app.request_token(&just_expired, None).await), (400, "invalid_grant".to_owned()));

        let rejected: Vec<(&str, String)> = vec![
            ("exp more than an hour after a fresh iat", sign(&key, &with(&|c| c["exp"] = json!(now + 3600 + 120)))),
            ("exp 10 minutes ahead without iat", sign(&key, &with(&|c| { c.as_object_mut().unwrap().remove("iat"); c["exp"] = json!(now + 600); }))),
            ("a stale iat with a long exp", sign(&key, &with(&|c| { c["iat"] = json!(now - 900); c["exp"] = json!(now + 600); }))),
            ("nbf in the future", sign(&key, &with(&|c| c["nbf"] = json!(now + 300)))),
            ("expired", sign(&key, &with(&|c| c["exp"] = json!(now - 120)))),
            ("no exp", sign(&key, &with(&|c| { c.as_object_mut().unwrap().remove("exp"); }))),
            ("wrong aud", sign(&key, &with(&|c| c["aud"] = json!("https://other.example/oauth2/token")))),
            ("unknown kid", sign(&TestKey::new("ed25519_a", "k-unknown"), &good())),
            ("iss differs from sub", sign(&key, &with(&|c| c["sub"] = json!(id_b.to_string())))),
            ("no jti", sign(&key, &with(&|c| { c.as_object_mut().unwrap().remove("jti"); }))),
            ("another organisation's key", sign(&TestKey::new("ed25519_b", "k1"), &good())),
            ("B's key claiming to be A", sign(&other_key, &good())),
            ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "kid": "k1"})), b64(&good()))),
            ("HS256 with the public key as secret", sign_hs256("k1", key.jwk()["x"].as_str().unwrap().as_bytes(), &good())),
            ("tampered signature", {
                let token = sign(&key, &good());
                let (head, sig) = token.rsplit_once('.').unwrap();
                let mut chars: Vec<char> = sig.chars().collect();
                chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
                let flipped: String = chars.into_iter().collect();
                format!("{head}.{flipped}")
            }),
            ("tampered claims", {
                let token = sign(&key, &good());
                let parts: Vec<&str> = token.split('.').collect();
                format!("{}.{}.{}", parts[0], b64(&with(&|c| c["exp"] = json!(now + 200))), parts[2])
            }),
        ];
        for (rule, assertion) in rejected {
            assert_eq!(oauth_error(app.request_token(&assertion, None).await), (401, "invalid_client".to_owned()), "{rule}");
        }
        // Not a JWT at all: the generated client will not send it (the document states a JWT's
        // shape), so raw HTTP.
        let response = app.client.post(app.token_endpoint()).form(&crate::keys::token_form("garbage")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");
        // RFC 7523 as libraries write it: no kid (the client's keys are tried), and an exp an
        // hour after a fresh iat.
        let no_kid = jsonwebtoken::encode(&Header::new(key.alg), &with(&|c| c["exp"] = json!(now + 3600)), &key.encoding_key()).unwrap();
        assert!(app.request_token(&no_kid, None).await.is_ok(), "a kid-less assertion with exp = iat + 3600");

        // Another organisation's token gets only its own subject.
        let b_token = app.access_token(id_b, &other_key).await;
        assert_eq!(problem_of(app.api_as(&b_token).get_organisation().id(id).send().await).0, 404);

        // Scopes: only what the client may have.
        let scoped = sign(&key, &good());
        assert_eq!(oauth_error(app.request_token(&scoped, Some("free_busy:read")).await), (400, "invalid_scope".to_owned()));
        // An unknown scope name: the generated client will not send it (the document lists the
        // names), so raw HTTP.
        let mut unknown = crate::keys::token_form(&sign(&key, &good()));
        unknown.push(("scope", "admin".to_owned()));
        let response = app.client.post(app.token_endpoint()).form(&unknown).send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_scope");

        // Form-level errors, raw (the generated client sends well-formed requests).
        let raw = |form: Vec<(&'static str, String)>| app.client.post(app.token_endpoint()).form(&form).send();
        let mut password = token_form(&sign(&key, &good()));
        password[0].1 = "password".into();
        let response = raw(password).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
        let mut wrong_type = token_form(&sign(&key, &good()));
        wrong_type[1].1 = "urn:example:other".into();
        let response = raw(wrong_type).await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
        let mut missing = token_form(&sign(&key, &good()));
        missing.pop();
        assert_eq!(raw(missing).await.unwrap().json::<Value>().await.unwrap()["error"], "invalid_request");
        let json_body = app.client.post(app.token_endpoint()).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
        assert_eq!(json_body.status(), 400);
        assert_eq!(json_body.json::<Value>().await.unwrap()["error"], "invalid_request");

        // Failed assertions are audited in aggregate: one record per source and minute, with
        // the count and the last refusal's reason code and claimed client.
        app.flush_failure_counts();
        let events = app.open_database().list_events(0, 1000).unwrap();
        let rejections: Vec<_> = events.iter().filter(|e| e.action == "token.assertion_rejected").collect();
        assert!((1..=2).contains(&rejections.len()), "{rejections:?}");
        let total: i64 = rejections.iter().map(|e| e.details["count"].as_i64().unwrap()).sum();
        assert!(total >= 14, "{total}");
        assert!(rejections.iter().all(|e| e.details["source"] == "127.0.0.1" && e.details["last"]["error"].is_string()));
        let _ = json!(client);
    }

    async fn uploaded_keys_are_checked(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, token, _) = app.register_ok_typed(registration_typed(1)).await;
        let small = TestKey::new("rsa_1024", "small").jwk();
        assert_field_problem(&problem_of(app.put_keys(id, &token, vec![small]).await), 422, "keys[0]", "rsa_key_size");
        let mut private = TestKey::new("ed25519_a", "p").jwk();
        private["d"] = json!("nMYA6Yfb9pqBnKcfNOrc9uA2EJwMbqq6JQQQnKnh5A0");
        let problem = problem_of(app.put_keys(id, &token, vec![private]).await);
        assert_field_problem(&problem, 422, "keys[0]", "private_key_material");
        assert!(problem.1.errors.unwrap()[0].message.contains("private key material"));
        let a = TestKey::new("ed25519_a", "same").jwk();
        let b = TestKey::new("ed25519_b", "same").jwk();
        assert_field_problem(&problem_of(app.put_keys(id, &token, vec![a, b]).await), 422, "keys[1].kid", "unique");
        // RSA keys the verifier cannot use are refused now, not at the first assertion.
        let rsa = TestKey::new("rsa_2048", "r").jwk();
        let mut huge = rsa.clone();
        huge["n"] = json!(format!("{}{}", "_".repeat(700), rsa["n"].as_str().unwrap()));
        assert_field_problem(&problem_of(app.put_keys(id, &token, vec![huge]).await), 422, "keys[0]", "rsa_key_size");
        let mut small_exponent = rsa.clone();
        small_exponent["e"] = json!("Aw");
        assert_field_problem(&problem_of(app.put_keys(id, &token, vec![small_exponent]).await), 422, "keys[0]", "rsa_exponent");
        let eleven = (0..11).map(|i| TestKey::new("ed25519_a", &format!("k{i}")).jwk()).collect();
        assert_field_problem(&problem_of(app.put_keys(id, &token, eleven).await), 422, "keys", "count");
        let mut no_kid = TestKey::new("ed25519_a", "x").jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_field_problem(&problem_of(app.put_keys(id, &token, vec![no_kid]).await), 422, "keys[0]", "kid");
        // Nothing was stored by the refused uploads.
        assert!(app.api_as(&token).get_organisation_jwks().id(id).send().await.unwrap().into_inner().keys.is_empty());
    }

    async fn organisation_tokens_never_reach_another_organisation(backend) {
        let app = TestApp::spawn(backend).await;
        let key_a = TestKey::new("ed25519_a", "a1");
        let key_b = TestKey::new("ed25519_b", "b1");
        let (id_a, registration_a) = partner(&app, 1, &key_a).await;
        let (id_b, _) = partner(&app, 2, &key_b).await;
        let access_a = app.access_token(id_a, &key_a).await;
        for token in [&registration_a, &access_a] {
            let api = app.api_as(token);
            assert_eq!(problem_of(api.get_organisation().id(id_b).send().await).0, 404);
            // An access token may not change keys, contacts or domains at all (403 before 404).
            let refused = if token == &access_a { 403 } else { 404 };
            assert_eq!(problem_of(api.update_organisation().id(id_b).if_match("\"1\"").body(gateway_client::types::OrganisationPatch::default()).send().await).0, refused);
            assert_eq!(problem_of(api.get_organisation_jwks().id(id_b).send().await).0, 404);
            assert_eq!(problem_of(app.put_keys(id_b, token, vec![key_a.jwk()]).await).0, refused);
        }
        // B's keys are untouched.
        let b_token = app.access_token(id_b, &key_b).await;
        let keys = app.api_as(&b_token).get_organisation_jwks().id(id_b).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["b1"]);
        // A forged access token (not signed by the gateway) is refused.
        let forged = sign(&key_a, &json!({"iss": app.base, "aud": app.base, "sub": id_b.to_string(), "scope": "organisation:manage", "exp": Utc::now().timestamp() + 60}));
        assert_eq!(problem_of(app.api_as(&forged).get_organisation().id(id_b).send().await).0, 401);
    }

    async fn gateway_keys_are_published_and_rotate_with_overlap(backend) {
        // A fixed public address, so tokens stay valid across restarts on new ports.
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        settings.server.public_base_url = "https://gateway.test".into();
        let app = TestApp::spawn_with(database, settings).await;
        let key = TestKey::new("ed25519_a", "k1");
        let (id, _) = partner(&app, 1, &key).await;
        let metadata = app.api().authorization_server_metadata().send().await.unwrap().into_inner();
        assert_eq!(metadata.token_endpoint, app.token_endpoint());
        assert_eq!(metadata.token_endpoint_auth_methods_supported, ["private_key_jwt"]);
        assert_eq!(metadata.issuer, "https://gateway.test");
        assert_eq!(metadata.jwks_uri, "https://gateway.test/.well-known/jwks.json");

        let first = app.access_token(id, &key).await;
        let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let published = |set: &gateway_client::types::JwksResponse| set.keys.iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let before = app.api().gateway_jwks().send().await.unwrap().into_inner();
        assert_eq!(published(&before), [kid_of(&first)]);
        assert!(before.keys[0].get("d").is_none(), "only public keys are published");

        // The token verifies with the published key, as a resource server would check it.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(Value::Object(before.keys[0].clone())).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["https://gateway.test"]);
        validation.set_issuer(&["https://gateway.test"]);
        let data = jsonwebtoken::decode::<Value>(&first, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();
        assert_eq!(data.claims["sub"], id.to_string());
        assert_eq!(data.claims["scope"], "organisation:manage");
        assert!(data.claims["jti"].is_string() && data.claims["iat"].is_number());

        let new_kid = gateway_api::commands::rotate_signing_key(&app.settings).unwrap();
        // Replicas pick the new key up; the old one keeps verifying during the overlap.
        let (database, settings) = app.stop().await;
        let app = TestApp::spawn_with(database, settings).await;
        let second = app.access_token(id, &key).await;
        assert_eq!(kid_of(&second), new_kid);
        let after = published(&app.api().gateway_jwks().send().await.unwrap().into_inner());
        assert!(after.contains(&new_kid) && after.contains(&kid_of(&first)), "{after:?}");
        for token in [&first, &second] {
            app.api_as(token).get_organisation().id(id).send().await.unwrap();
        }
        // Past the overlap, maintenance retires the old key and its tokens stop working.
        let report = gateway_api::commands::maintenance(&app.settings, Utc::now() + Duration::hours(25)).unwrap();
        assert_eq!(report.signing_keys_retired, 1);
        let (database, settings) = app.stop().await;
        let app = TestApp::spawn_with(database, settings).await;
        assert_eq!(published(&app.api().gateway_jwks().send().await.unwrap().into_inner()), [new_kid]);
        assert_eq!(problem_of(app.api_as(&first).get_organisation().id(id).send().await).0, 401);
    }

    async fn unused_keys_count_down_and_maintenance_removes_them(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let settings = settings_for(&database);
        let app = TestApp::spawn_with(database.clone(), settings.clone()).await;
        let key = TestKey::new("ed25519_a", "idle");
        let (id, token) = partner(&app, 1, &key).await;
        let (database, settings) = app.stop().await;

        // 100 days later the unused key shows its countdown (90 days unused + 30 grace).
        let later = Utc::now() + Duration::days(100);
        let app = TestApp::spawn_with_clock(database, settings, Arc::new(FixedClock(later))).await;
        let keys = app.api_as(&token).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys[0].days_until_removal, Some(19));
        let report = gateway_api::commands::maintenance(&app.settings, later).unwrap();
        assert_eq!(report.keys_removed, 0);

        let report = gateway_api::commands::maintenance(&app.settings, Utc::now() + Duration::days(121)).unwrap();
        assert_eq!(report.keys_removed, 1);
        assert!(app.api_as(&token).get_organisation_jwks().id(id).send().await.unwrap().into_inner().keys.is_empty());
        let events = app.open_database().list_events(0, 1000).unwrap();
        assert!(events.iter().any(|e| e.action == "keys.removed" && e.details["kids"] == json!(["idle"])));
    }

    async fn the_publisher_gets_write_scopes_only(backend) {
        let database = Arc::new(TestDatabase::new(backend));
        let mut settings = settings_for(&database);
        let dir = tempfile::tempdir().unwrap();
        let publisher_key = TestKey::new("ec_p256", "pub-1");
        let jwks_file = dir.path().join("publisher.jwks.json");
        std::fs::write(&jwks_file, json!({"keys": [publisher_key.jwk()]}).to_string()).unwrap();
        settings.publisher.client_id = "directory-publisher".into();
        settings.publisher.jwks_file = jwks_file.display().to_string();
        let app = TestApp::spawn_with(database, settings).await;
        let assertion = sign(&publisher_key, &claims("directory-publisher", &app.token_endpoint()));
        let token = app.request_token(&assertion, None).await.unwrap().into_inner();
        assert_eq!(token.scope, "directory:write calendar:write");
        let (id, _, _) = app.register_ok_typed(registration_typed(1)).await;
        assert_eq!(problem_of(app.api_as(&token.access_token).get_organisation().id(id).send().await).0, 403);
        let narrowed = sign(&publisher_key, &claims("directory-publisher", &app.token_endpoint()));
        assert_eq!(app.request_token(&narrowed, Some("calendar:write")).await.unwrap().into_inner().scope, "calendar:write");
        let greedy = sign(&publisher_key, &claims("directory-publisher", &app.token_endpoint()));
        assert_eq!(oauth_error(app.request_token(&greedy, Some("organisation:manage")).await), (400, "invalid_scope".to_owned()));
    }
}
