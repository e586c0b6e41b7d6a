//! Client assertions (RFC 7523, private_key_jwt): a JWT the client signs with one of its
//! registered keys to authenticate at the token endpoint.

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use gateway_domain::PartnerKey;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::jwk::decoding_key;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a token request is refused, in RFC 6749 section 5.2 terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 400: a parameter is missing, repeated or malformed.
    InvalidRequest(String),
    /// 401: the client could not be authenticated.
    InvalidClient(String),
    /// 400: the assertion was already used.
    InvalidGrant(String),
    /// 400: only client_credentials is supported.
    UnsupportedGrantType(String),
    /// 400: a requested scope is unknown or not granted to this client.
    InvalidScope(String),
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d) => d,
        }
    }
}

/// What an assertion must satisfy here.
#[derive(Debug, Clone)]
pub struct AssertionRules {
    /// This token endpoint's public URL: the only accepted `aud`.
    pub token_endpoint: String,
    /// How far ahead `exp` may be.
    pub max_lifetime: Duration,
    /// Clock skew allowed on `exp`.
    pub skew_seconds: u64,
    /// How far after a fresh `iat` the `exp` may be (libraries write `iat + 3600`).
    pub max_lifetime_with_iat: Duration,
}

/// An assertion whose signature and claims have been checked (replay not yet).
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub client: String,
    pub kid: String,
    pub jti: String,
    /// The last moment this assertion is accepted (`exp` plus the allowed skew): how long the
    /// replay cache must remember its `jti`.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct Unverified {
    iss: Option<String>,
    sub: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: Option<i64>,
    jti: Option<String>,
}

/// How many registered keys a `kid`-less assertion is tried against.
const MAX_CANDIDATE_KEYS: usize = 10;

fn invalid_client(why: impl Into<String>) -> Rejection {
    Rejection::InvalidClient(why.into())
}

/// The client an assertion claims to come from (`iss`), before anything is verified: only to
/// find its keys.
pub fn claimed_client(assertion: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(assertion)
        .ok()?
        .iss
}

/// Verifies `assertion` (RFC 7523 as mainstream libraries write it) with the client's keys
/// from `keys_of(client)`: the header's `kid` when it names one, otherwise each registered key
/// that allows the header's `alg` (at most 10). Checks, in order: an algorithm allowed for the
/// key (never `none` or HMAC), the signature, `iss` = `sub` = the client, `aud` = this token
/// endpoint, `nbf` if present, `exp` present and in the future, and not too far ahead: at
/// most `max_lifetime_with_iat` after a fresh `iat` (not in the future, at most `max_lifetime`
/// old), otherwise at most `max_lifetime` from now; and a `jti`. Refusals never say which keys
/// the client holds.
pub fn verify(
    assertion: &str,
    rules: &AssertionRules,
    now: DateTime<Utc>,
    keys_of: impl FnOnce(&str) -> Result<Vec<PartnerKey>, Rejection>,
) -> Result<VerifiedAssertion, Rejection> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_client("client_assertion is not a signed JWT with a supported algorithm (none and unknown algorithms are refused)"))?;
    let unverified = jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(assertion)
        .map_err(|_| invalid_client("client_assertion claims are not readable"))?;
    let client = unverified
        .iss
        .ok_or_else(|| invalid_client("client_assertion has no iss"))?;
    if unverified.sub.as_deref() != Some(client.as_str()) {
        return Err(invalid_client(
            "client_assertion iss and sub must both be the client id",
        ));
    }
    let alg_name = format!("{:?}", header.alg);
    let algorithm =
        Algorithm::from_str(&alg_name).map_err(|_| invalid_client("unsupported algorithm"))?;
    let no_key = || {
        invalid_client(
            "client_assertion is not signed by a key registered for this client with an algorithm that key allows",
        )
    };
    let candidates: Vec<PartnerKey> = keys_of(&client)?
        .into_iter()
        .filter(|k| header.kid.as_deref().is_none_or(|kid| k.kid == kid))
        .filter(|k| k.allows(&alg_name))
        .take(MAX_CANDIDATE_KEYS)
        .collect();
    if candidates.is_empty() {
        return Err(no_key());
    }
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&client]);
    validation.set_audience(&[&rules.token_endpoint]);
    validation.sub = Some(client.clone());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = rules.skew_seconds;
    let mut verified = None;
    for key in &candidates {
        let Ok(decoding) = decoding_key(key) else {
            continue;
        };
        match jsonwebtoken::decode::<Claims>(assertion, &decoding, &validation) {
            Ok(data) => {
                verified = Some((key.kid.clone(), data.claims));
                break;
            }
            // Another candidate key may have signed it.
            Err(error)
                if matches!(
                    error.kind(),
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                ) => {}
            Err(error) => {
                use jsonwebtoken::errors::ErrorKind;
                return Err(invalid_client(match error.kind() {
                    ErrorKind::ExpiredSignature => "client_assertion has expired".to_owned(),
                    ErrorKind::ImmatureSignature => {
                        "client_assertion is not valid yet (nbf)".to_owned()
                    }
                    ErrorKind::InvalidAudience => {
                        format!("client_assertion aud must be {}", rules.token_endpoint)
                    }
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                        "client_assertion iss and sub must both be the client id".to_owned()
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("client_assertion has no {claim}")
                    }
                    _ => "client_assertion is invalid".to_owned(),
                }));
            }
        }
    }
    let (kid, claims) = verified.ok_or_else(|| {
        invalid_client(
            "client_assertion signature does not verify with this client's registered keys",
        )
    })?;
    debug_assert_eq!(claims.sub, client);
    let at = |seconds: i64, what: &str| {
        Utc.timestamp_opt(seconds, 0)
            .single()
            .ok_or_else(|| invalid_client(format!("client_assertion {what} is out of range")))
    };
    let expires_at = at(claims.exp, "exp")?;
    let skew = Duration::seconds(i64::try_from(rules.skew_seconds).unwrap_or(0));
    let issued_at = claims.iat.map(|iat| at(iat, "iat")).transpose()?;
    if issued_at.is_some_and(|iat| iat > now + skew) {
        return Err(invalid_client("client_assertion iat is in the future"));
    }
    // A fresh iat vouches for a longer exp, as libraries write it (Authlib: iat + 3600).
    let latest = match issued_at.filter(|iat| now - *iat <= rules.max_lifetime + skew) {
        Some(iat) => iat + rules.max_lifetime_with_iat,
        None => now + rules.max_lifetime,
    } + skew;
    if expires_at > latest {
        return Err(invalid_client(format!(
            "client_assertion exp is too far ahead: at most {} seconds after a fresh iat (at most {} seconds old), otherwise at most {} seconds from now",
            rules.max_lifetime_with_iat.num_seconds(),
            rules.max_lifetime.num_seconds(),
            rules.max_lifetime.num_seconds()
        )));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid_client("client_assertion needs a jti (1 to 256 characters)"))?;
    Ok(VerifiedAssertion {
        client,
        kid,
        jti,
        // Accepted until exp + skew, compared in whole seconds: the replay cache holds the jti
        // one second longer than that, so the last accepted second can never replay.
        expires_at: expires_at + skew + Duration::seconds(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_domain::keys::KeyType;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};

    fn fixture(name: &str) -> (EncodingKey, Value) {
        let all: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/test-keys.json")).unwrap();
        let pem = all[name]["private_pem"].as_str().unwrap();
        (
            EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            all[name]["jwk"].clone(),
        )
    }

    fn key(name: &str, kid: &str) -> PartnerKey {
        PartnerKey {
            kid: kid.into(),
            key_type: KeyType::Ed25519,
            alg: None,
            jwk: fixture(name).1,
            added_at: Utc::now(),
            last_used_at: None,
        }
    }

    fn rules() -> AssertionRules {
        AssertionRules {
            token_endpoint: "https://gw/oauth2/token".into(),
            max_lifetime: Duration::seconds(300),
            skew_seconds: 30,
            max_lifetime_with_iat: Duration::seconds(3600),
        }
    }

    fn assertion(kid: Option<&str>, edit: impl Fn(&mut Value)) -> String {
        let now = Utc::now().timestamp();
        let mut claims = json!({"iss": "c1", "sub": "c1", "aud": "https://gw/oauth2/token",
            "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()});
        edit(&mut claims);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &fixture("ed25519_a").0).unwrap()
    }

    fn check(token: &str) -> Result<VerifiedAssertion, Rejection> {
        // The client holds two keys; only k1 (ed25519_a) signs.
        verify(token, &rules(), Utc::now(), |_| {
            Ok(vec![key("ed25519_b", "k0"), key("ed25519_a", "k1")])
        })
    }

    #[test]
    fn an_assertion_without_kid_is_tried_against_the_clients_keys() {
        assert_eq!(check(&assertion(None, |_| {})).unwrap().kid, "k1");
        assert_eq!(check(&assertion(Some("k1"), |_| {})).unwrap().kid, "k1");
        let wrong = check(&assertion(Some("k0"), |_| {})).unwrap_err();
        assert!(wrong.description().contains("does not verify"), "{wrong:?}");
        // A refusal never says which kids the client holds.
        let unknown = check(&assertion(Some("k-secret"), |_| {})).unwrap_err();
        assert!(
            !unknown.description().contains("k-secret") && !unknown.description().contains("k1")
        );
    }

    #[test]
    fn a_fresh_iat_vouches_for_an_hour_as_libraries_write_it() {
        let now = Utc::now().timestamp();
        assert!(
            check(&assertion(None, |c| c["exp"] = json!(now + 3600))).is_ok(),
            "Authlib's iat + 3600"
        );
        let too_far = |c: &mut Value| c["exp"] = json!(now + 3600 + 60);
        assert!(check(&assertion(None, too_far)).is_err());
        let no_iat = |c: &mut Value| {
            c.as_object_mut().unwrap().remove("iat");
            c["exp"] = json!(now + 600);
        };
        assert!(
            check(&assertion(None, no_iat)).is_err(),
            "without iat: 5 minutes at most"
        );
        let stale_iat = |c: &mut Value| {
            c["iat"] = json!(now - 600);
            c["exp"] = json!(now + 600);
        };
        assert!(
            check(&assertion(None, stale_iat)).is_err(),
            "an old iat vouches for nothing"
        );
        let future_iat = |c: &mut Value| c["iat"] = json!(now + 300);
        assert!(check(&assertion(None, future_iat)).is_err());
        let not_yet = |c: &mut Value| c["nbf"] = json!(now + 300);
        assert!(check(&assertion(None, not_yet))
            .unwrap_err()
            .description()
            .contains("nbf"));
    }

    #[test]
    fn the_replay_cache_outlives_the_last_accepted_second() {
        let now = Utc::now().timestamp();
        let verified = check(&assertion(None, |c| c["exp"] = json!(now + 100))).unwrap();
        // Accepted through exp + skew (30 s), compared in whole seconds: held one second more.
        assert_eq!(verified.expires_at.timestamp(), now + 100 + 30 + 1);
    }
}
