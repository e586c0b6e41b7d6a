//! The onboarding workflow end to end, on both backends, with a real OpenID provider for the
//! reviewers: evidence, a signed agreement, the two-person review, grants that stop at once,
//! and every refusal rule.

use base64::Engine;
use serde_json::{json, Value};

use crate::e2e_tests;
use crate::keys::{claims, sign, TestKey};
use crate::oidc_provider::OidcProvider;
use crate::reviewers::{browser_sign_in, gateway_with_provider};
use crate::support::{registration_typed, TestApp};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A minimal PDF, recognised by its content.
fn pdf(extra: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n1 0 obj <<>> endobj\n".to_vec();
    bytes.extend(std::iter::repeat_n(b' ', extra));
    bytes.extend_from_slice(b"\ntrailer <<>>\n%%EOF\n");
    bytes
}

/// A detached compact JWS (RFC 7515 appendix F) over `payload`, as a partner makes it.
fn detached_jws(key: &TestKey, payload: &[u8]) -> String {
    let alg = match key.alg {
        jsonwebtoken::Algorithm::EdDSA => "EdDSA",
        jsonwebtoken::Algorithm::ES256 => "ES256",
        _ => "RS256",
    };
    let header = b64(json!({"alg": alg, "kid": key.kid}).to_string().as_bytes());
    let input = format!("{header}.{}", b64(payload));
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding_key(), key.alg).unwrap();
    format!("{header}..{signature}")
}

/// A signed-in reviewer in a browser: cookies, plus the session's CSRF token and the origin
/// a browser would send.
pub(crate) struct Reviewer {
    browser: reqwest::Client,
    csrf: String,
    origin: String,
}

impl Reviewer {
    pub(crate) async fn sign_in(app: &TestApp, provider: &OidcProvider, login: &str) -> Self {
        let (browser, landed) = browser_sign_in(app, provider, login).await;
        let me: Value = landed.json().await.unwrap();
        assert_eq!(me["person"], true);
        Self {
            browser,
            csrf: me["csrf_token"].as_str().expect("csrf token").to_owned(),
            origin: app.public_base_url(),
        }
    }

    async fn post(&self, url: String, etag: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = self
            .browser
            .post(url)
            .header("Origin", &self.origin)
            .header("X-CSRF-Token", &self.csrf)
            .json(&body);
        if let Some(etag) = etag {
            request = request.header("If-Match", etag);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, url: String) -> reqwest::Response {
        self.browser.get(url).send().await.unwrap()
    }
}

/// A partner organisation with its registration token and one registered key.
pub(crate) struct Partner {
    pub(crate) id: uuid::Uuid,
    pub(crate) token: String,
    pub(crate) key: TestKey,
    n: u32,
}

impl Partner {
    pub(crate) async fn new(app: &TestApp, n: u32, key: TestKey) -> Self {
        let (id, token, _) = app.register_ok_typed(registration_typed(n)).await;
        app.put_keys(id, &token, vec![key.jwk()])
            .await
            .expect("keys stored");
        Self { id, token, key, n }
    }

    fn url(&self, app: &TestApp, rest: &str) -> String {
        app.url(&format!("/v1/organisations/{}{rest}", self.id))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn evidence_json(&self, app: &TestApp, metadata: Value) -> (u16, Value) {
        self.send(
            reqwest::Client::new()
                .post(self.url(app, "/evidence"))
                .json(&metadata),
        )
        .await
    }

    async fn evidence_with_document(
        &self,
        app: &TestApp,
        metadata: Value,
        document: Vec<u8>,
    ) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "document",
                reqwest::multipart::Part::bytes(document)
                    .file_name("dspt.pdf")
                    .mime_str("application/pdf")
                    .unwrap(),
            );
        self.send(
            reqwest::Client::new()
                .post(self.url(app, "/evidence"))
                .multipart(form),
        )
        .await
    }

    async fn draft(&self, app: &TestApp, body: Value) -> (u16, Value) {
        self.send(
            reqwest::Client::new()
                .post(self.url(app, "/agreements"))
                .json(&body),
        )
        .await
    }

    async fn payload(&self, app: &TestApp, aid: &str) -> Vec<u8> {
        let response = reqwest::Client::new()
            .get(self.url(app, &format!("/agreements/{aid}/signing-payload")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap().to_vec()
    }

    async fn sign(&self, app: &TestApp, aid: &str, jws: &str) -> (u16, Value) {
        self.send(
            reqwest::Client::new()
                .put(self.url(app, &format!("/agreements/{aid}/signature")))
                .json(&json!({ "jws": jws })),
        )
        .await
    }

    async fn submit(&self, app: &TestApp, aid: &str) -> (u16, Value) {
        self.send(reqwest::Client::new().post(self.url(app, &format!("/agreements/{aid}/submit"))))
            .await
    }

    /// Drafts, signs and submits; returns the agreement id.
    pub(crate) async fn submitted_agreement(&self, app: &TestApp, body: Value) -> String {
        let (status, draft) = self.draft(app, body).await;
        assert_eq!(status, 201, "{draft}");
        let aid = draft["id"].as_str().unwrap().to_owned();
        let payload = self.payload(app, &aid).await;
        let (status, signed) = self
            .sign(app, &aid, &detached_jws(&self.key, &payload))
            .await;
        assert_eq!(status, 200, "{signed}");
        assert_eq!(signed["signature"]["status"], "valid");
        let (status, submitted) = self.submit(app, &aid).await;
        assert_eq!(status, 200, "{submitted}");
        aid
    }

    /// Submits DSPT (with a PDF) and ICO evidence; returns their ids.
    async fn required_evidence(&self, app: &TestApp, expires_on: &str) -> Vec<String> {
        let (status, dspt) = self
            .evidence_with_document(
                app,
                json!({"kind": "dspt_assessment", "dspt_status": "standards_met", "published_on": "2026-06-30", "expires_on": expires_on}),
                pdf(100),
            )
            .await;
        assert_eq!(status, 201, "{dspt}");
        let (status, ico) = self
            .evidence_json(app, json!({"kind": "ico_registration", "registration_number": "za123456", "expires_on": expires_on}))
            .await;
        assert_eq!(status, 201, "{ico}");
        vec![
            dspt["id"].as_str().unwrap().to_owned(),
            ico["id"].as_str().unwrap().to_owned(),
        ]
    }
}

fn agreement_body() -> Value {
    json!({
        "template_version": "2026-11",
        "scopes": {
            "address_book": {"attributes": ["job_title", "display_name", "job_title"], "organisations": ["rr8", "AB1"]},
            "free_busy": {"detail": "limited_details"}
        },
        "term": {"starts_on": "2026-01-01", "ends_on": "2028-06-30"},
        "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
    })
}

async fn etag_of(reviewer: &Reviewer, app: &TestApp, aid: &str) -> String {
    let response = reviewer
        .get(app.url(&format!("/v1/review/agreements/{aid}")))
        .await;
    assert_eq!(response.status(), 200);
    response.headers()["etag"].to_str().unwrap().to_owned()
}

pub(crate) async fn act(
    reviewer: &Reviewer,
    app: &TestApp,
    aid: &str,
    body: Value,
) -> (u16, Value) {
    let etag = etag_of(reviewer, app, aid).await;
    let response = reviewer
        .post(
            app.url(&format!("/v1/agreements/{aid}/transitions")),
            Some(&etag),
            body,
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn judge(reviewer: &Reviewer, app: &TestApp, eid: &str, verdict: &str) -> (u16, Value) {
    let response = reviewer
        .post(
            app.url(&format!("/v1/review/evidence/{eid}/verdict")),
            None,
            json!({"verdict": verdict, "reason": "checked against the DSPT and ICO registers"}),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn grant_status(app: &TestApp, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(app.url("/v1/grants/current"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A reviewer verifies the partner's domain by hand.
async fn verify_by_hand(reviewer: &Reviewer, app: &TestApp, partner: &Partner) {
    let response = reviewer
        .post(
            app.url(&format!(
                "/v1/review/organisations/{}/domains/care{}.example.org/verify",
                partner.id, partner.n
            )),
            None,
            json!({"reason": "confirmed with the partner's IT lead by phone"}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// A partner whose agreement (`body`) went through the whole workflow: evidence accepted, its
/// domain verified, checked by reviewer1 and approved by approver1. Returns the partner, the
/// reviewer and the approver (for later transitions) and the agreement id.
pub(crate) async fn approved_partner(
    app: &TestApp,
    provider: &OidcProvider,
    n: u32,
    body: Value,
) -> (Partner, Reviewer, Reviewer, String) {
    approved_partner_with(app, provider, n, body, json!({"action": "approve"})).await
}

/// `approved_partner`, approved with `approval` (e.g. granting `limited_details`).
pub(crate) async fn approved_partner_with(
    app: &TestApp,
    provider: &OidcProvider,
    n: u32,
    body: Value,
    approval: Value,
) -> (Partner, Reviewer, Reviewer, String) {
    let partner = Partner::new(app, n, TestKey::new("ed25519_a", &format!("k{n}"))).await;
    let evidence = partner.required_evidence(app, "2027-12-31").await;
    let aid = partner.submitted_agreement(app, body).await;
    let reviewer = Reviewer::sign_in(app, provider, "reviewer1").await;
    let approver = Reviewer::sign_in(app, provider, "approver1").await;
    verify_by_hand(&reviewer, app, &partner).await;
    for eid in &evidence {
        assert_eq!(judge(&reviewer, app, eid, "accepted").await.0, 200);
    }
    let (status, checked) = act(&reviewer, app, &aid, json!({"action": "check"})).await;
    assert_eq!(status, 200, "{checked}");
    let (status, approved) = act(&approver, app, &aid, approval).await;
    assert_eq!(status, 200, "{approved}");
    (partner, reviewer, approver, aid)
}

fn rules(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["rule"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

e2e_tests! {
    async fn the_whole_lifecycle_grants_data_scopes_that_stop_at_once(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let partner = Partner::new(&app, 1, TestKey::new("ed25519_a", "k1")).await;

        // Templates are public and identified by their hash.
        let templates: Value = reqwest::get(app.url("/v1/agreement-templates")).await.unwrap().json().await.unwrap();
        assert_eq!(templates["items"][0]["version"], "2026-11");
        assert_eq!(templates["items"][0]["sha256"].as_str().unwrap().len(), 64);

        // Where the organisation stands before anything.
        let (_, org) = partner.send(reqwest::Client::new().get(partner.url(&app, ""))).await;
        let missing: Vec<&str> = org["onboarding"]["missing_for_approval"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap()).collect();
        assert_eq!(missing, ["evidence_missing", "evidence_missing", "domains_verified", "submitted"]);

        let evidence = partner.required_evidence(&app, "2027-12-31").await;
        // The document is stored with its digest and served only as an attachment.
        let doc = reqwest::Client::new().get(partner.url(&app, &format!("/evidence/{}/document", evidence[0]))).bearer_auth(&partner.token).send().await.unwrap();
        assert_eq!(doc.status(), 200);
        assert_eq!(doc.headers()["content-type"], "application/pdf");
        assert!(doc.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
        assert_eq!(doc.headers()["x-content-type-options"], "nosniff");
        // The document's own sandboxing policy, not the API's general one.
        assert_eq!(doc.headers().get_all("content-security-policy").iter().collect::<Vec<_>>(), ["default-src 'none'; sandbox"]);
        assert_eq!(doc.bytes().await.unwrap().to_vec(), pdf(100));

        let aid = partner.submitted_agreement(&app, agreement_body()).await;
        // The signed bytes are JCS: sorted keys, sorted and de-duplicated arrays.
        let (_, stored) = partner.send(reqwest::Client::new().get(partner.url(&app, &format!("/agreements/{aid}")))).await;
        let payload = stored["signature"]["payload"].as_str().unwrap();
        assert!(payload.starts_with("{\"agreement_id\":"), "{payload}");
        assert!(payload.contains("\"attributes\":[\"display_name\",\"job_title\"]"), "{payload}");
        assert!(payload.contains("\"organisations\":[\"AB1\",\"RR8\"]"), "{payload}");

        // Anyone can verify the stored signature offline (`federation-gateway verify-agreement`).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agreement.json");
        std::fs::write(&file, stored.to_string()).unwrap();
        let verified = gateway_api::commands::verify_agreement(&file).unwrap();
        assert!(verified.starts_with("valid: EdDSA signature by key k1"), "{verified}");
        let mut tampered = stored.clone();
        tampered["signature"]["payload"] = json!(payload.replace("Caldicott Guardian", "Chief Executive"));
        std::fs::write(&file, tampered.to_string()).unwrap();
        assert!(gateway_api::commands::verify_agreement(&file).is_err());

        // Before approval the token carries only organisation:manage.
        let token = app.access_token(partner.id, &partner.key).await;
        assert_eq!(grant_status(&app, &token).await.0, 403);

        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        let approver = Reviewer::sign_in(&app, &provider, "approver1").await;
        // The partner's domain must be proven before approval (here by a reviewer by hand;
        // tests/e2e/domains.rs proves domains with DNS).
        let queue: Value = reviewer.get(app.url("/v1/review/agreements?state=submitted")).await.json().await.unwrap();
        assert!(rules(&json!({"errors": queue["items"][0]["unmet_for_approval"]})).contains(&"domains_verified".to_owned()));
        assert!(queue["items"][0]["warnings"].as_array().unwrap().iter().any(|w| w == "domain care1.example.org is not verified"));
        verify_by_hand(&reviewer, &app, &partner).await;
        for eid in &evidence {
            let (status, judged) = judge(&reviewer, &app, eid, "accepted").await;
            assert_eq!(status, 200, "{judged}");
            assert_eq!(judged["status"], "accepted");
        }
        // The organisation sees its verdicts, but not which reviewer gave them.
        let (_, list) = partner.send(reqwest::Client::new().get(partner.url(&app, "/evidence"))).await;
        assert_eq!(list["items"][0]["verdict"]["verdict"], "accepted");
        assert!(list["items"][0]["verdict"].get("by").is_none(), "{list}");
        // Reviewers see the document too; a judged item never changes.
        assert_eq!(reviewer.get(app.url(&format!("/v1/review/evidence/{}/document", evidence[0]))).await.status(), 200);
        let (status, again) = judge(&approver, &app, &evidence[0], "rejected").await;
        assert_eq!((status, again["type"].as_str()), (409, Some("/problems/evidence-already-judged")));

        // The queue shows the submitted agreement with its warnings and signature.
        let queue: Value = reviewer.get(app.url("/v1/review/agreements?state=submitted")).await.json().await.unwrap();
        let item = &queue["items"][0];
        assert_eq!(item["agreement"]["id"], aid.as_str());
        assert_eq!(item["agreement"]["signature"]["status"], "valid");
        assert!(item["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("not on the secure-email accredited list")));
        assert_eq!(rules(&json!({"errors": item["unmet_for_approval"]})), ["checked"]);

        let (status, checked) = act(&reviewer, &app, &aid, json!({"action": "check"})).await;
        assert_eq!(status, 200, "{checked}");
        let (status, approved) = act(&approver, &app, &aid, json!({"action": "approve", "grant_limited_details": true})).await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["state"], "approved");
        assert_eq!(approved["limited_details_granted"], true);

        // The approved organisation now holds its ODS code: a later registration naming it is
        // refused, without naming the holder.
        let mut copycat = crate::support::registration(90);
        copycat["ods_code"] = json!("AB001");
        let response = app.register(&copycat).await;
        assert_eq!(response.status(), 409);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/ods-code-taken");
        assert!(!problem.to_string().contains(&partner.id.to_string()), "{problem}");

        // A new token carries the data scopes; the grant answers with what was granted.
        let token = app.access_token(partner.id, &partner.key).await;
        let (status, grant) = grant_status(&app, &token).await;
        assert_eq!(status, 200, "{grant}");
        assert_eq!(grant["scopes"]["free_busy"]["detail"], "limited_details");
        assert_eq!(grant["scopes"]["address_book"]["organisations"], json!(["AB1", "RR8"]));
        let scopes = app.request_token(&sign(&partner.key, &claims(&partner.id.to_string(), &app.token_endpoint())), None).await.unwrap().into_inner().scope;
        assert_eq!(scopes, "organisation:manage address_book:read free_busy:read");

        // Suspension takes effect at once for the token issued a moment ago.
        let (status, _) = act(&approver, &app, &aid, json!({"action": "suspend", "reason": "DSPT submission under review"})).await;
        assert_eq!(status, 200);
        let (status, problem) = grant_status(&app, &token).await;
        assert_eq!((status, problem["type"].as_str()), (403, Some("/problems/grant-inactive")));
        let (status, _) = act(&approver, &app, &aid, json!({"action": "reinstate"})).await;
        assert_eq!(status, 200);
        assert_eq!(grant_status(&app, &token).await.0, 200);
        let (status, revoked) = act(&approver, &app, &aid, json!({"action": "revoke", "reason": "the partner left the scheme"})).await;
        assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")));
        assert_eq!(grant_status(&app, &token).await.0, 403);
        // Final: no way back.
        let (status, problem) = act(&approver, &app, &aid, json!({"action": "reinstate"})).await;
        assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/invalid-transition")));

        // Every step is on the agreement's history, with who did it.
        let history: Value = reviewer.get(app.url(&format!("/v1/review/agreements/{aid}"))).await.json().await.unwrap();
        let actions: Vec<&str> = history["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["agreement.drafted", "agreement.signed", "agreement.submitted", "agreement.checked", "agreement.approved", "agreement.suspended", "agreement.reinstated", "agreement.revoked"]);
        let approval = &history["history"][4];
        assert_eq!((approval["actor_id"].as_str(), approval["details"]["reviewer"]["subject"].as_str()), (Some("approver1"), Some("approver1")));
    }

    async fn approval_refuses_every_unmet_rule_at_once(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let partner = Partner::new(&app, 2, TestKey::new("ed25519_a", "k1")).await;
        let aid = partner.submitted_agreement(&app, agreement_body()).await;
        let approver = Reviewer::sign_in(&app, &provider, "approver1").await;
        // No check, no evidence: every unmet precondition listed at once.
        let (status, problem) = act(&approver, &app, &aid, json!({"action": "approve"})).await;
        assert_eq!((status, problem["type"].as_str()), (422, Some("/problems/preconditions-unmet")));
        assert_eq!(rules(&problem), ["checked", "evidence_missing", "evidence_missing", "domains_verified"]);
        // Rejected and expired evidence are named as such.
        let evidence = partner.required_evidence(&app, "2027-12-31").await;
        judge(&approver, &app, &evidence[0], "rejected").await;
        let (status, expired) = partner.evidence_json(&app, json!({"kind": "ico_registration", "registration_number": "ZA999999", "expires_on": "2026-01-31"})).await;
        assert_eq!(status, 201);
        let (status, refused) = judge(&approver, &app, expired["id"].as_str().unwrap(), "accepted").await;
        assert_eq!((status, rules(&refused)), (422, vec!["not_expired".to_owned()]));
        // The same person cannot check and approve.
        let (status, _) = act(&approver, &app, &aid, json!({"action": "check"})).await;
        assert_eq!(status, 200);
        let (_, problem) = act(&approver, &app, &aid, json!({"action": "approve"})).await;
        assert_eq!(rules(&problem), ["two_people", "evidence_rejected", "evidence_not_judged", "domains_verified"]);
        // Reject needs a reason; with one, it is final.
        let (status, problem) = act(&approver, &app, &aid, json!({"action": "reject"})).await;
        assert_eq!((status, rules(&problem)), (422, vec!["required".to_owned()]));
        let (status, _) = act(&approver, &app, &aid, json!({"action": "reject", "reason": "no IG evidence"})).await;
        assert_eq!(status, 200);
        for action in ["check", "approve", "suspend", "reinstate", "revoke"] {
            let (status, problem) = act(&approver, &app, &aid, json!({"action": action, "reason": "x"})).await;
            assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/invalid-transition")), "{action}");
        }
        let (status, _) = partner.submit(&app, &aid).await;
        assert_eq!(status, 409, "a rejected agreement is not a draft");
    }

    async fn signatures_must_be_the_organisations_over_these_bytes(backend) {
        let (app, _provider) = gateway_with_provider(backend).await;
        let partner = Partner::new(&app, 3, TestKey::new("ed25519_a", "k1")).await;
        let other = Partner::new(&app, 4, TestKey::new("ec_p256", "k-other")).await;
        let (_, draft) = partner.draft(&app, agreement_body()).await;
        let aid = draft["id"].as_str().unwrap();
        let payload = partner.payload(&app, aid).await;
        // Over different bytes.
        let (status, problem) = partner.sign(&app, aid, &detached_jws(&partner.key, b"{\"agreement_id\":\"x\"}")).await;
        assert_eq!((status, problem["type"].as_str()), (422, Some("/problems/signature-invalid")));
        // With another organisation's key (also when it names our kid).
        let (status, _) = partner.sign(&app, aid, &detached_jws(&other.key, &payload)).await;
        assert_eq!(status, 422);
        let mut impostor = other.key.clone();
        impostor.kid = "k1".into();
        let (status, _) = partner.sign(&app, aid, &detached_jws(&impostor, &payload)).await;
        assert_eq!(status, 422);
        // Not detached, or not a JWS at all.
        let attached = detached_jws(&partner.key, &payload).replacen("..", &format!(".{}.", b64(&payload)), 1);
        assert_eq!(partner.sign(&app, aid, &attached).await.0, 422);
        assert_eq!(partner.sign(&app, aid, "not-a-jws").await.0, 422);
        // Unsigned drafts cannot be submitted.
        let (status, problem) = partner.submit(&app, aid).await;
        assert_eq!((status, rules(&problem)), (422, vec!["signature_valid".to_owned()]));
        // Nothing was stored by the refusals.
        let signed_events = app.all_events().into_iter().filter(|e| e.action == "agreement.signed").count();
        assert_eq!(signed_events, 0);
        // The right key over the right bytes; then a change to the draft drops it.
        let (status, signed) = partner.sign(&app, aid, &detached_jws(&partner.key, &payload)).await;
        assert_eq!(status, 200);
        let mut changed = agreement_body();
        changed["signatory"]["role"] = json!("Data Protection Officer");
        let response = reqwest::Client::new().put(partner.url(&app, &format!("/agreements/{aid}"))).bearer_auth(&partner.token)
            .header("If-Match", format!("\"{}\"", signed["version"])).json(&changed).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let changed: Value = response.json().await.unwrap();
        assert!(changed["signature"].is_null());
        assert_ne!(partner.payload(&app, aid).await, payload);
        // Another organisation cannot see this agreement at all.
        let (status, _) = other.send(reqwest::Client::new().get(app.url(&format!("/v1/organisations/{}/agreements/{aid}", partner.id)))).await;
        assert_eq!(status, 404);
    }

    async fn two_approvers_at_once_exactly_one_wins(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let partner = Partner::new(&app, 5, TestKey::new("ed25519_a", "k1")).await;
        let evidence = partner.required_evidence(&app, "2027-12-31").await;
        let aid = partner.submitted_agreement(&app, agreement_body()).await;
        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        verify_by_hand(&reviewer, &app, &partner).await;
        for eid in &evidence {
            judge(&reviewer, &app, eid, "accepted").await;
        }
        act(&reviewer, &app, &aid, json!({"action": "check"})).await;
        let first = Reviewer::sign_in(&app, &provider, "approver1").await;
        let second = Reviewer::sign_in(&app, &provider, "approver2").await;
        let etag = etag_of(&first, &app, &aid).await;
        let url = app.url(&format!("/v1/agreements/{aid}/transitions"));
        let (a, b) = tokio::join!(
            first.post(url.clone(), Some(&etag), json!({"action": "approve"})),
            second.post(url.clone(), Some(&etag), json!({"action": "reject", "reason": "duplicate"})),
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412]);
        // Without If-Match: 428, after the role and existence checks.
        let response = first.post(url, None, json!({"action": "suspend", "reason": "x"})).await;
        assert_eq!(response.status(), 428);
    }

    async fn cookie_changes_need_the_own_origin_and_the_csrf_token(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let partner = Partner::new(&app, 6, TestKey::new("ed25519_a", "k1")).await;
        let aid = partner.submitted_agreement(&app, agreement_body()).await;
        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        let etag = etag_of(&reviewer, &app, &aid).await;
        let url = app.url(&format!("/v1/agreements/{aid}/transitions"));
        for (origin, csrf) in [("https://evil.example", reviewer.csrf.as_str()), (reviewer.origin.as_str(), "forged"), (reviewer.origin.as_str(), "")] {
            let response = reviewer.browser.post(&url).header("Origin", origin).header("X-CSRF-Token", csrf)
                .header("If-Match", &etag).json(&json!({"action": "check"})).send().await.unwrap();
            assert_eq!(response.status(), 403, "{origin} {csrf}");
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["type"], "/problems/csrf-rejected");
        }
        // No Origin and no Referer at all: refused too.
        let response = reviewer.browser.post(&url).header("X-CSRF-Token", &reviewer.csrf).header("If-Match", &etag)
            .json(&json!({"action": "check"})).send().await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(etag_of(&reviewer, &app, &aid).await, etag, "nothing changed");
        // Automation tokens read, but never change state.
        let automation = provider.client_token("automation-reviewer", "urn:federation-gateway").await;
        let client = reqwest::Client::new();
        assert_eq!(client.get(app.url("/v1/review/agreements")).bearer_auth(&automation).send().await.unwrap().status(), 200);
        let response = client.post(&url).bearer_auth(&automation).header("If-Match", &etag).json(&json!({"action": "check"})).send().await.unwrap();
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/person-required");
    }

    async fn documents_must_be_pdfs_of_at_most_10_mib(backend) {
        let app = TestApp::spawn(backend).await;
        let partner = Partner::new(&app, 7, TestKey::new("ed25519_a", "k1")).await;
        let meta = json!({"kind": "ig_policy", "title": "Information governance policy"});
        let (status, problem) = partner.evidence_with_document(&app, meta.clone(), b"<html><script>alert(1)</script></html>".to_vec()).await;
        assert_eq!((status, problem["type"].as_str()), (415, Some("/problems/document-not-pdf")));
        let (status, problem) = partner.evidence_with_document(&app, meta.clone(), pdf(11 * 1024 * 1024)).await;
        assert_eq!((status, problem["type"].as_str()), (413, Some("/problems/payload-too-large")));
        // Bad metadata names the field and rule.
        let (status, problem) = partner.evidence_json(&app, json!({"kind": "dspt_assessment", "dspt_status": "great"})).await;
        assert_eq!(status, 422);
        assert_eq!(rules(&problem), ["required", "required", "one_of"]);
        let (status, _) = partner.evidence_json(&app, json!({"kind": "dpia", "colour": "blue"})).await;
        assert_eq!(status, 400);
        // Nothing was stored by any refusal.
        let (_, list) = partner.send(reqwest::Client::new().get(partner.url(&app, "/evidence"))).await;
        assert_eq!(list["items"], json!([]));
        assert!(!app.all_events().iter().any(|e| e.action == "evidence.submitted"));
        // A PDF just under the limit is stored with its SHA-256.
        let document = pdf(10 * 1024 * 1024 - 200);
        let (status, stored) = partner.evidence_with_document(&app, meta, document.clone()).await;
        assert_eq!(status, 201, "{stored}");
        use sha2_check::digest;
        assert_eq!(stored["document"]["sha256"], digest(&document));
        assert_eq!(stored["document"]["size"], document.len());
    }

    async fn a_rejected_registration_frees_its_ods_code_and_domains(backend) {
        let (app, provider) = gateway_with_provider(backend).await;
        let squatter = Partner::new(&app, 8, TestKey::new("ed25519_a", "k1")).await;
        let approver = Reviewer::sign_in(&app, &provider, "approver1").await;
        let reviewer = Reviewer::sign_in(&app, &provider, "reviewer1").await;
        let url = app.url(&format!("/v1/review/organisations/{}/reject", squatter.id));
        // Only approvers reject registrations, and only with a reason.
        assert_eq!(reviewer.post(url.clone(), None, json!({"reason": "squatting"})).await.status(), 403);
        assert_eq!(approver.post(url.clone(), None, json!({"reason": " "})).await.status(), 422);
        let response = approver.post(url.clone(), None, json!({"reason": "not the organisation that holds this ODS code"})).await;
        assert_eq!(response.status(), 200);
        let rejected: Value = response.json().await.unwrap();
        assert_eq!(rejected["status"], "rejected");
        assert_eq!(approver.post(url, None, json!({"reason": "again"})).await.status(), 409);
        // The rightful organisation registers the same code and domains.
        let (status, _) = {
            let response = app.register_typed(registration_typed(8)).await;
            match response { Ok(r) => (r.status().as_u16(), ()), Err(e) => (e.status().map_or(0, |s| s.as_u16()), ()) }
        };
        assert_eq!(status, 201);
        // The rejected organisation cannot go on.
        let (status, problem) = squatter.draft(&app, agreement_body()).await;
        assert_eq!((status, problem["type"].as_str()), (409, Some("/problems/organisation-rejected")));
    }
}

/// SHA-256 hex, computed independently of the gateway.
mod sha2_check {
    pub fn digest(bytes: &[u8]) -> String {
        let output = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(bytes)?;
                child.wait_with_output()
            })
            .expect("sha256sum");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}
