//! The registration access token: only it changes keys, its holder rotates it (one of
//! concurrent rotations wins, the old token stops working), an approver revokes it (then it
//! works nowhere) and issues a fresh one; reviewers see its state; every step is audited.

use serde_json::{json, Value};

use crate::e2e_tests;
use crate::keys::TestKey;
use crate::oidc_provider::OidcProvider;
use crate::reviewers::{browser_sign_in, gateway_with_provider};
use crate::support::{problem_of, registration_typed, TestApp};

/// A signed-in reviewer in a browser, sending the session's CSRF token from the own origin.
struct Person {
    browser: reqwest::Client,
    csrf: String,
    origin: String,
}

impl Person {
    async fn sign_in(app: &TestApp, provider: &OidcProvider, login: &str) -> Self {
        let (browser, landed) = browser_sign_in(app, provider, login).await;
        let me: Value = landed.json().await.unwrap();
        Self {
            browser,
            csrf: me["csrf_token"].as_str().expect("csrf token").to_owned(),
            origin: app.public_base_url(),
        }
    }

    async fn post(&self, url: String, body: Value) -> (u16, Value) {
        let response = self
            .browser
            .post(url)
            .header("Origin", &self.origin)
            .header("X-CSRF-Token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Rotates with the generated client: (status, new token if any).
async fn rotate(app: &TestApp, id: uuid::Uuid, token: &str) -> (u16, Option<String>) {
    match app
        .api_as(token)
        .rotate_registration_token()
        .id(id)
        .send()
        .await
    {
        Ok(response) => {
            assert_eq!(response.headers()["cache-control"], "no-store");
            (200, Some(response.into_inner().registration_access_token))
        }
        Err(error) => (error.status().map_or(0, |s| s.as_u16()), None),
    }
}

async fn reads_itself(app: &TestApp, id: uuid::Uuid, token: &str) -> u16 {
    match app.api_as(token).get_organisation().id(id).send().await {
        Ok(_) => 200,
        Err(error) => error.status().map_or(0, |s| s.as_u16()),
    }
}

/// Every operation the served document secures with the registration token, called with
/// `token`: (method, path, status).
async fn every_registration_token_operation(
    app: &TestApp,
    id: uuid::Uuid,
    domain: &str,
    token: &str,
) -> Vec<(String, String, u16)> {
    let document: Value = reqwest::get(app.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s.get("registration_token").is_some());
            if !secured {
                continue;
            }
            let url = app.url(
                &path
                    .replace("{id}", &id.to_string())
                    .replace("{aid}", &uuid::Uuid::new_v4().to_string())
                    .replace("{eid}", &uuid::Uuid::new_v4().to_string())
                    .replace("{domain}", domain),
            );
            let method_ = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let content_type = if method == "patch" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            let mut request = reqwest::Client::new()
                .request(method_, url)
                .bearer_auth(token)
                .header("If-Match", "\"1\"");
            if method != "get" {
                // The documented example body, so that no body rule answers before the token.
                let body = operation["requestBody"]["content"]
                    .as_object()
                    .and_then(|content| {
                        content
                            .values()
                            .find_map(|media| media["schema"]["$ref"].as_str())
                    })
                    .and_then(|reference| document.pointer(&reference.replace("#/", "/")))
                    .and_then(|schema| {
                        schema
                            .get("example")
                            .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
                    })
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                request = request
                    .header("content-type", content_type)
                    .body(body.to_string());
            }
            let status = request.send().await.unwrap().status().as_u16();
            out.push((method.to_uppercase(), path.clone(), status));
        }
    }
    assert!(
        out.len() >= 10,
        "the document lists the registration-token operations: {out:?}"
    );
    out
}

e2e_tests! {
    async fn access_tokens_read_keys_but_only_the_registration_token_changes_them(backend) {
        let app = TestApp::spawn(backend).await;
        let key = TestKey::new("ed25519_a", "k1");
        let (id, token, _) = app.register_ok_typed(registration_typed(1)).await;
        app.put_keys(id, &token, vec![key.jwk()]).await.expect("the registration token changes keys");
        let access = app.access_token(id, &key).await;
        // Reading with organisation:manage still works.
        let keys = app.api_as(&access).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.len(), 1);
        // Changing keys or rotating with it: authenticated, but not allowed (403, not 401).
        let other = TestKey::new("ed25519_b", "k2");
        let (status, problem) = problem_of(app.put_keys(id, &access, vec![key.jwk(), other.jwk()]).await);
        assert_eq!((status, problem.type_.as_str()), (403, "/problems/forbidden"));
        assert!(problem.detail.contains("registration access token"), "{problem:?}");
        assert_eq!(rotate(&app, id, &access).await, (403, None));
        // Nor contacts or domains: the technical contact is where a reviewer sends a fresh
        // registration token after a revocation, so it must not be changeable with keys alone.
        let patch = json!({"contacts": {"technical": {"name": "Mallory", "email": "mallory@care1.example.org"}}});
        assert_eq!(app.patch_organisation(&id.to_string(), &access, Some("\"1\""), &patch).await.status(), 403);
        assert_eq!(app.patch_organisation(&id.to_string(), &token, Some("\"1\""), &patch).await.status(), 200);
        // Nothing else changed, and the refusal is not audited as a change.
        let keys = app.api_as(&token).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k1"]);
        assert_eq!(app.all_events().iter().filter(|e| e.action == "keys.replaced").count(), 1);
        assert_eq!(reads_itself(&app, id, &token).await, 200, "the registration token still works");
    }

    async fn rotation_returns_a_working_token_and_the_old_one_stops_working(backend) {
        let app = TestApp::spawn(backend).await;
        let (id, first, _) = app.register_ok_typed(registration_typed(2)).await;
        let (status, second) = rotate(&app, id, &first).await;
        assert_eq!(status, 200);
        let second = second.unwrap();
        assert_ne!(second, first);
        assert_eq!(reads_itself(&app, id, &second).await, 200);
        let key = TestKey::new("ed25519_a", "k1");
        app.put_keys(id, &second, vec![key.jwk()]).await.expect("the new token changes keys");
        // The old token works nowhere: reading, keys, rotating again.
        assert_eq!(reads_itself(&app, id, &first).await, 401);
        assert_eq!(problem_of(app.put_keys(id, &first, vec![key.jwk()]).await).0, 401);
        assert_eq!(rotate(&app, id, &first).await, (401, None));
        // Another organisation's token cannot rotate this one (404, as for any foreign id).
        let (_, foreign, _) = app.register_ok_typed(registration_typed(3)).await;
        assert_eq!(rotate(&app, id, &foreign).await, (404, None));
        assert_eq!(reads_itself(&app, id, &second).await, 200);

        // Concurrent rotations with one token: exactly one wins, the others' token is dead.
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let client = app.api_as(&second);
                tokio::spawn(async move {
                    match client.rotate_registration_token().id(id).send().await {
                        Ok(response) => (200, Some(response.into_inner().registration_access_token)),
                        Err(error) => (error.status().map_or(0, |s| s.as_u16()), None),
                    }
                })
            })
            .collect();
        let mut attempts = Vec::new();
        for handle in handles {
            attempts.push(handle.await.unwrap());
        }
        let winners: Vec<String> = attempts.iter().filter_map(|(_, t)| t.clone()).collect();
        assert_eq!(winners.len(), 1, "{attempts:?}");
        assert!(attempts.iter().all(|(s, _)| *s == 200 || *s == 401), "{attempts:?}");
        assert_eq!(reads_itself(&app, id, &winners[0]).await, 200);
        assert_eq!(reads_itself(&app, id, &second).await, 401);

        // Audited as the organisation's, twice, and no token ever appears in the trail.
        let events = app.all_events();
        let rotations: Vec<_> = events.iter().filter(|e| e.action == "registration_token.rotated").collect();
        assert_eq!(rotations.len(), 2);
        assert!(rotations.iter().all(|e| e.actor_type == "organisation" && e.actor_id.as_deref() == Some(id.to_string().as_str())));
        for token in [&first, &second, &winners[0]] {
            let secret = token.rsplit('.').next().unwrap();
            assert!(events.iter().all(|e| !e.details.to_string().contains(secret)));
        }
    }

    async fn an_approver_revokes_the_token_and_issues_a_fresh_one(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let (id, token, registered) = app.register_ok_typed(registration_typed(4)).await;
        let domain = registered.domains[0].name.clone();
        let revoke = app.url(&format!("/v1/review/organisations/{id}/registration-token/revoke"));
        let issue = app.url(&format!("/v1/review/organisations/{id}/registration-token"));
        let reason = json!({"reason": "the token was pasted into a public ticket"});

        // Not signed in: 401. A reviewer without the approver role, and an automation token: 403.
        let anonymous = reqwest::Client::new().post(&revoke).json(&reason).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let reviewer = Person::sign_in(&app, &provider, "reviewer1").await;
        let (status, problem) = reviewer.post(revoke.clone(), reason.clone()).await;
        assert_eq!((status, problem["type"].as_str()), (403, Some("/problems/role-required")));
        let automation = provider.client_token("automation-reviewer", "urn:federation-gateway").await;
        let response = reqwest::Client::new().post(&revoke).bearer_auth(&automation).json(&reason).send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(reads_itself(&app, id, &token).await, 200, "refusals change nothing");

        // An approver: unknown organisation 404, no reason 422, then revoked; again 409.
        let approver = Person::sign_in(&app, &provider, "approver2").await;
        let unknown = app.url(&format!("/v1/review/organisations/{}/registration-token/revoke", uuid::Uuid::new_v4()));
        assert_eq!(approver.post(unknown, reason.clone()).await.0, 404);
        let (status, problem) = approver.post(revoke.clone(), json!({"reason": "  "})).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "reason");
        assert_eq!(reads_itself(&app, id, &token).await, 200, "a refused revocation changes nothing");
        let (status, revoked) = approver.post(revoke.clone(), reason.clone()).await;
        assert_eq!(status, 200, "{revoked}");
        assert_eq!((revoked["state"].as_str(), revoked["revoked_by"].as_str()), (Some("revoked"), Some("approver2")));
        let (status, problem) = approver.post(revoke.clone(), reason.clone()).await;
        assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/registration-token-state")));

        // The revoked token works on no endpoint at all.
        for (method, path, status) in every_registration_token_operation(&app, id, &domain, &token).await {
            assert_eq!(status, 401, "{method} {path}");
        }

        // Reviewers see the state where they read organisations.
        let listed: Value = reviewer.browser.get(app.url("/v1/review/organisations?limit=200")).send().await.unwrap().json().await.unwrap();
        let shown = listed["items"].as_array().unwrap().iter().find(|o| o["id"] == id.to_string()).unwrap()["registration_token"].clone();
        assert_eq!(shown["state"], "revoked");
        assert_eq!(shown["issued_by"], "registration");
        assert_eq!(shown["revoked_by"], "approver2");
        assert_eq!(shown["revocation_reason"], "the token was pasted into a public ticket");

        // Recovery: only an approver issues a fresh token, with a reason, once revoked.
        assert_eq!(reviewer.post(issue.clone(), reason.clone()).await.0, 403);
        assert_eq!(approver.post(issue.clone(), json!({})).await.0, 400);
        let (status, issued) = approver.post(issue.clone(), json!({"reason": "new technical contact confirmed by phone"})).await;
        assert_eq!(status, 200, "{issued}");
        let fresh = issued["registration_access_token"].as_str().unwrap().to_owned();
        assert_eq!(issued["registration_token"]["state"], "active");
        assert_eq!(issued["registration_token"]["issued_by"], "approver");
        assert_eq!(issued["registration_token"]["issued_by_subject"], "approver2");
        assert_eq!(approver.post(issue.clone(), reason.clone()).await.0, 409, "one token in force at a time");
        assert_eq!(reads_itself(&app, id, &fresh).await, 200);
        assert_eq!(reads_itself(&app, id, &token).await, 401, "the revoked token stays dead");
        // The organisation rotates the handed-over token, so the copy the approver saw dies.
        let (status, own) = rotate(&app, id, &fresh).await;
        assert_eq!(status, 200);
        assert_eq!(reads_itself(&app, id, &fresh).await, 401);
        assert_eq!(reads_itself(&app, id, &own.unwrap()).await, 200);

        // Audited with the approver and the reason; never a token.
        let events = app.all_events();
        let revocations: Vec<_> = events.iter().filter(|e| e.action == "registration_token.revoked").collect();
        assert_eq!(revocations.len(), 1);
        assert_eq!((revocations[0].actor_type.as_str(), revocations[0].actor_id.as_deref()), ("reviewer", Some("approver2")));
        assert_eq!(revocations[0].details["reason"], "the token was pasted into a public ticket");
        assert_eq!(revocations[0].subject_id.as_deref(), Some(id.to_string().as_str()));
        let issues: Vec<_> = events.iter().filter(|e| e.action == "registration_token.issued").collect();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].actor_id.as_deref(), Some("approver2"));
        for secret in [&token, &fresh].map(|t| t.rsplit('.').next().unwrap().to_owned()) {
            assert!(events.iter().all(|e| !e.details.to_string().contains(&secret)));
        }
    }

    async fn a_change_begun_before_a_rotation_does_not_complete_after_it(backend) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = TestApp::spawn(backend).await;
        let key = TestKey::new("ed25519_a", "k1");
        let (id, token, _) = app.register_ok_typed(registration_typed(4)).await;
        app.put_keys(id, &token, vec![key.jwk()]).await.expect("keys stored");
        // Someone holding the token starts replacing the keys and holds back the last byte of
        // the body: the token was checked when the headers arrived.
        let planted = TestKey::new("ed25519_b", "k-planted");
        let body = json!({"keys": [planted.jwk()]}).to_string();
        let address = app.base.trim_start_matches("http://").to_owned();
        let mut held = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "PUT /v1/organisations/{id}/jwks HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        held.write_all(head.as_bytes()).await.unwrap();
        held.write_all(&body.as_bytes()[..body.len() - 1]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Meanwhile the owner rotates the token.
        let (status, fresh) = rotate(&app, id, &token).await;
        assert_eq!(status, 200);
        let fresh = fresh.unwrap();
        // The held request completes after the rotation: refused, and nothing changed.
        held.write_all(&body.as_bytes()[body.len() - 1..]).await.unwrap();
        let mut answer = String::new();
        held.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        let keys = app.api_as(&fresh).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k1"]);
    }

    async fn a_trickled_body_is_cut_off_at_the_deadline(backend) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let database = std::sync::Arc::new(gateway_persistence::testing::TestDatabase::new(backend));
        let mut settings = crate::support::settings_for(&database);
        settings.server.body_timeout_seconds = 1;
        let app = TestApp::spawn_with(database, settings).await;
        let key = TestKey::new("ed25519_a", "k1");
        let (id, token, _) = app.register_ok_typed(registration_typed(5)).await;
        app.put_keys(id, &token, vec![key.jwk()]).await.expect("keys stored");
        let address = app.base.trim_start_matches("http://").to_owned();
        // Headers and all but the last byte of a body, then nothing: refused at the deadline.
        let held = |path: String, headers: String, body: String| {
            let address = address.clone();
            async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                let head = format!("{path} HTTP/1.1\r\nHost: {address}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&body.as_bytes()[..body.len() - 1]).await.unwrap();
                let mut answer = String::new();
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut answer))
                    .await
                    .expect("answered at the deadline, not left hanging")
                    .unwrap();
                answer
            }
        };
        let planted = TestKey::new("ed25519_b", "k-planted");
        let answer = held(
            format!("PUT /v1/organisations/{id}/jwks"),
            format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"),
            json!({"keys": [planted.jwk()]}).to_string(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("/problems/body-timeout"), "{answer}");
        let keys = app.api_as(&token).get_organisation_jwks().id(id).send().await.unwrap().into_inner();
        assert_eq!(keys.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k1"], "nothing changed");
        // The token endpoint answers in OAuth's own form.
        let answer = held(
            "POST /oauth2/token".to_owned(),
            "Content-Type: application/x-www-form-urlencoded\r\n".to_owned(),
            "grant_type=client_credentials&client_assertion=x".to_owned(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"invalid_request\"") && answer.contains("did not arrive in time"), "{answer}");
        // So does a form body over the limit (not a bare text 413).
        let huge = "g".repeat(app.settings.server.json_body_limit_bytes + 1);
        let refused = app.client.post(app.url("/oauth2/token")).form(&[("grant_type", huge)]).send().await.unwrap();
        assert_eq!(refused.status(), 400);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
}
