//! Test keys (fixtures/test-keys.json: made for these tests only, never used elsewhere) and
//! client assertions signed with them.

use std::sync::OnceLock;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn fixtures() -> &'static Value {
    static KEYS: OnceLock<Value> = OnceLock::new();
    KEYS.get_or_init(|| {
        serde_json::from_str(include_str!("../../fixtures/test-keys.json")).expect("test keys")
    })
}

/// A test key pair: its public JWK (with `kid`) and its private signing key.
#[derive(Clone)]
pub struct TestKey {
    pub name: &'static str,
    pub kid: String,
    pub alg: Algorithm,
}

impl TestKey {
    pub fn new(name: &'static str, kid: &str) -> Self {
        let alg = match name {
            n if n.starts_with("ed25519") => Algorithm::EdDSA,
            n if n.starts_with("ec") => Algorithm::ES256,
            _ => Algorithm::RS256,
        };
        Self {
            name,
            kid: kid.to_owned(),
            alg,
        }
    }

    pub fn jwk(&self) -> Value {
        let mut jwk = fixtures()[self.name]["jwk"].clone();
        jwk["kid"] = json!(self.kid);
        jwk
    }

    pub fn pem(&self) -> String {
        fixtures()[self.name]["private_pem"]
            .as_str()
            .expect("pem")
            .to_owned()
    }

    pub fn encoding_key(&self) -> EncodingKey {
        let pem = self.pem();
        match self.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("encoding key")
    }
}

/// The claims of a well-formed assertion from `client` for `audience`.
pub fn claims(client: &str, audience: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({
        "iss": client,
        "sub": client,
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// Signs `claims` with `key` (header `kid` = the key's).
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).expect("signed")
}

/// A form body for the token endpoint.
pub fn token_form(assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_assertion_type", ASSERTION_TYPE.to_owned()),
        ("client_assertion", assertion.to_owned()),
    ]
}
