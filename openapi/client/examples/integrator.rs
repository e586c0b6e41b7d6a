//! An integrator's whole path with the generated client: register an organisation, upload a
//! public key, rotate the registration access token, sign a client assertion with the private
//! key, get an access token, and call an endpoint with it.
//!
//! ```sh
//! cargo run -p gateway-client --example integrator -- http://127.0.0.1:8080
//! ```
//! `--emit-env` prints `GW_ORG_ID=`, `GW_TOKEN=` (the rotated registration token) and `GW_ACCESS_TOKEN=` lines
//! instead of the narrative, for scripts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gateway_client::types::{self, ContactDto, ContactsDto};
use gateway_client::Client;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn authorised(base: &str, token: &str) -> Result<Client, Box<dyn std::error::Error>> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(Client::new_with_client(
        base,
        reqwest::Client::builder()
            .default_headers(headers)
            .build()?,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let emit_env = args.iter().any(|a| a == "--emit-env");
    let base = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let say = |line: String| {
        if !emit_env {
            println!("{line}");
        }
    };

    // 1. Register. The registration access token is shown once: keep it safe.
    let suffix = rand::rng().next_u32() % 100_000;
    let domain = format!("example{suffix}.care.example.org");
    let registration = types::RegistrationRequest {
        ods_code: format!("EX{suffix:05}").try_into()?,
        name: "Example Care Partnership".try_into()?,
        category: types::CareCategory::OtherCareProvider,
        exchange_version: types::ExchangeVersion::Exchange2019,
        domains: vec![domain.as_str().try_into()?],
        contacts: ContactsDto {
            ig_lead: ContactDto {
                name: "Ada Lovelace".try_into()?,
                email: format!("ig@{domain}").try_into()?,
            },
            technical: ContactDto {
                name: "Alan Turing".try_into()?,
                email: format!("it@{domain}").try_into()?,
            },
        },
        business_need: "Our care teams need to find and email GP practice staff.".try_into()?,
    };
    let registered = Client::new(&base)
        .register_organisation()
        .body(registration)
        .send()
        .await?
        .into_inner();
    say(format!(
        "registered organisation {} ({})",
        registered.id, registered.ods_code
    ));

    // 2. Make a key pair and upload the public half (self-service; rotate the same way).
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let kid = format!("example-{suffix}");
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": kid, "alg": "EdDSA", "use": "sig"});
    let with_registration = authorised(&base, &registered.registration_access_token)?;
    with_registration
        .put_organisation_jwks()
        .id(registered.id)
        .body(types::JwksRequest {
            keys: vec![jwk.as_object().cloned().unwrap_or_default()],
        })
        .send()
        .await?;
    say(format!("uploaded public key {kid}"));

    // 3. Rotate the registration access token (RFC 7592 style): the answer carries a new one,
    // shown once, and the old one stops working at once. Only this token changes keys.
    let rotated = with_registration
        .rotate_registration_token()
        .id(registered.id)
        .send()
        .await?
        .into_inner();
    let registration_token = rotated.registration_access_token;
    authorised(&base, &registration_token)?
        .get_organisation()
        .id(registered.id)
        .send()
        .await?;
    say(format!(
        "rotated the registration access token ({} rotation so far)",
        rotated.registration_token.rotations
    ));

    // 4. Find the token endpoint, sign a client assertion, get an access token.
    let metadata = Client::new(&base)
        .authorization_server_metadata()
        .send()
        .await?
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": registered.id.to_string(),
        "sub": registered.id.to_string(),
        "aud": metadata.token_endpoint,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let signing_key = EncodingKey::from_ed_der(&[ED25519_PKCS8_PREFIX.as_slice(), &seed].concat());
    let assertion = jsonwebtoken::encode(&header, &claims, &signing_key)?;
    let token = Client::new(&base)
        .issue_token()
        .body(types::TokenRequest {
            grant_type: types::GrantType::ClientCredentials,
            client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                .parse()?,
            client_assertion: assertion.parse()?,
            scope: None,
        })
        .send()
        .await?
        .into_inner();
    say(format!(
        "got a {} token for scope {:?}, valid {} s",
        token.token_type, token.scope, token.expires_in
    ));

    // 5. Call an endpoint with the access token (it reads; only the registration token
    // changes keys).
    let with_access = authorised(&base, &token.access_token)?;
    let organisation = with_access
        .get_organisation()
        .id(registered.id)
        .send()
        .await?
        .into_inner();
    let keys = with_access
        .get_organisation_jwks()
        .id(registered.id)
        .send()
        .await?
        .into_inner();
    say(format!(
        "read back {} (version {}); key {} last used at {:?}",
        organisation.name.as_str(),
        organisation.version,
        keys.keys[0].kid,
        keys.keys[0].last_used_at
    ));
    if emit_env {
        println!("GW_ORG_ID={}", registered.id);
        println!("GW_TOKEN={registration_token}");
        println!("GW_ACCESS_TOKEN={}", token.access_token);
    }
    Ok(())
}
