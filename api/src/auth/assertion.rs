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
    jti: Option<String>,
}

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

/// Verifies `assertion` with the key `key_of(client, kid)` finds. Checks, in order: a
/// registered `kid`, an algorithm allowed for that key (never `none` or HMAC), the signature,
/// `iss` = `sub` = the client, `aud` = this token endpoint, `exp` present, in the future and
/// not too far ahead, and a `jti`.
pub fn verify(
    assertion: &str,
    rules: &AssertionRules,
    now: DateTime<Utc>,
    key_of: impl FnOnce(&str, &str) -> Result<Option<PartnerKey>, Rejection>,
) -> Result<VerifiedAssertion, Rejection> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_client("client_assertion is not a signed JWT with a supported algorithm (none and unknown algorithms are refused)"))?;
    let kid = header
        .kid
        .clone()
        .ok_or_else(|| invalid_client("client_assertion header has no kid"))?;
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
    let key = key_of(&client, &kid)?.ok_or_else(|| {
        invalid_client(format!(
            "no key with kid {kid:?} is registered for this client"
        ))
    })?;
    let alg_name = format!("{:?}", header.alg);
    if !key.allows(&alg_name) {
        return Err(invalid_client(format!(
            "algorithm {alg_name} is not allowed for key {kid:?}"
        )));
    }
    let algorithm =
        Algorithm::from_str(&alg_name).map_err(|_| invalid_client("unsupported algorithm"))?;
    let decoding = decoding_key(&key).map_err(invalid_client)?;
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&client]);
    validation.set_audience(&[&rules.token_endpoint]);
    validation.sub = Some(client.clone());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = rules.skew_seconds;
    let data =
        jsonwebtoken::decode::<Claims>(assertion, &decoding, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            invalid_client(match error.kind() {
                ErrorKind::InvalidSignature => {
                    "client_assertion signature does not verify".to_owned()
                }
                ErrorKind::ExpiredSignature => "client_assertion has expired".to_owned(),
                ErrorKind::InvalidAudience => {
                    format!("client_assertion aud must be {}", rules.token_endpoint)
                }
                ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                    "client_assertion iss and sub must both be the client id".to_owned()
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("client_assertion has no {claim}")
                }
                ErrorKind::InvalidAlgorithm => "algorithm does not match the key".to_owned(),
                _ => "client_assertion is invalid".to_owned(),
            })
        })?;
    let claims = data.claims;
    debug_assert_eq!(claims.sub, client);
    let expires_at = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .ok_or_else(|| invalid_client("client_assertion exp is out of range"))?;
    let latest = now
        + rules.max_lifetime
        + Duration::seconds(i64::try_from(rules.skew_seconds).unwrap_or(0));
    if expires_at > latest {
        return Err(invalid_client(format!(
            "client_assertion exp is too far ahead: at most {} seconds from now",
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
        // Accepted until exp + skew, so the replay cache must hold the jti that long too.
        expires_at: expires_at + Duration::seconds(i64::try_from(rules.skew_seconds).unwrap_or(0)),
    })
}
