//! Reviewers through OpenID Connect: the authorization code flow with PKCE for people, and
//! provider-issued JWT bearer tokens for automation. Discovery happens on first use and is
//! refreshed; the provider's keys are cached and refetched on an unknown `kid`, for ID tokens
//! and bearer tokens alike. Every fetch from the provider is bounded in time and size, and
//! concurrent misses wait for one fetch.

use std::time::{Duration as StdDuration, Instant};

use gateway_domain::{ReviewerIdentity, Role};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope as OidcScope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};

use super::session::{LoginState, SessionCodec};
use crate::config::OidcSettings;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The login or token is not acceptable.
    #[error("{0}")]
    Rejected(String),
}

const METADATA_TTL: StdDuration = StdDuration::from_secs(3600);
/// Provider metadata or a key set larger than this is refused: real ones are a few kilobytes,
/// and a provider (or whoever answers in its name) must not make the gateway buffer more.
pub const FETCH_MAX_BYTES: usize = 256 * 1024;
/// How long one fetch of provider metadata or keys may take, body included.
pub const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// Bounds on what the gateway fetches from the provider.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub timeout: StdDuration,
    pub max_bytes: usize,
    /// Refetch the provider's keys at most this often when a token names an unknown `kid`.
    pub min_key_refetch: StdDuration,
}

struct ProviderKey {
    kid: Option<String>,
    key: DecodingKey,
    alg: Option<Algorithm>,
}

/// The provider's keys. `attempts` counts fetches (successful or not), so requests that
/// waited for another one's fetch can tell that it happened and share its outcome.
#[derive(Default)]
struct KeyCache {
    keys: Vec<ProviderKey>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    attempts: u64,
    last_error: Option<String>,
}

#[derive(Default)]
struct MetadataCache {
    metadata: Option<(CoreProviderMetadata, Instant)>,
    attempts: u64,
    last_error: Option<String>,
}

pub struct Oidc {
    settings: OidcSettings,
    http: openidconnect::reqwest::Client,
    limits: FetchLimits,
    metadata: RwLock<MetadataCache>,
    /// Held while metadata is fetched: concurrent misses wait for one fetch (single flight).
    metadata_flight: Mutex<()>,
    keys: RwLock<KeyCache>,
    /// Held while keys are fetched (single flight, as for metadata).
    keys_flight: Mutex<()>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer_url)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> OidcError {
    OidcError::Unavailable(error.to_string())
}

fn rejected(why: &str) -> OidcError {
    OidcError::Rejected(why.to_owned())
}

fn symmetric(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// RFC 9068: the media type of JWT access tokens (`typ` may omit the `application/` prefix).
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == "at+jwt" || typ == "application/at+jwt"
}

/// The `aud` claim as a list (it may be a string or an array).
fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The ID-token signing algorithms the provider advertises that the gateway accepts (never
/// HMAC or `none`); RS256 when it advertises none of those (OpenID Connect's default).
fn id_token_algorithms(metadata: &CoreProviderMetadata) -> Vec<Algorithm> {
    let advertised: Vec<Algorithm> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter_map(|alg| serde_json::to_value(alg).ok())
        .filter_map(|alg| alg.as_str().and_then(|a| a.parse().ok()))
        .filter(|alg| !symmetric(*alg))
        .collect();
    if advertised.is_empty() {
        vec![Algorithm::RS256]
    } else {
        advertised
    }
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let limits = FetchLimits {
            timeout: FETCH_TIMEOUT,
            max_bytes: FETCH_MAX_BYTES,
            min_key_refetch: StdDuration::from_secs(settings.jwks_min_refetch_seconds),
        };
        Self::with_limits(settings, limits)
    }

    pub fn with_limits(settings: OidcSettings, limits: FetchLimits) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects from the provider would open the door to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(limits.timeout)
            .build()?;
        Ok(Self {
            settings,
            http,
            limits,
            metadata: RwLock::new(MetadataCache::default()),
            metadata_flight: Mutex::new(()),
            keys: RwLock::new(KeyCache::default()),
            keys_flight: Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer_url
    }

    /// The audience provider bearer tokens must carry, when bearer tokens are on: it must be
    /// set and differ from the gateway's client id, or every ID token issued to the gateway
    /// (whose audience is the client id) would pass as an access token.
    fn bearer_audience(&self) -> Option<&str> {
        let audience = self.settings.audience.trim();
        (!audience.is_empty() && audience != self.settings.client_id).then_some(audience)
    }

    /// Whether provider-issued bearer tokens (automation) are accepted at all.
    pub fn bearer_enabled(&self) -> bool {
        self.bearer_audience().is_some()
    }

    /// GETs `url` within the fetch limits (time and size).
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        let max = self.limits.max_bytes;
        let too_large = || OidcError::Unavailable(format!("{url} answered more than {max} bytes"));
        let read = async {
            let mut response = self
                .http
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(unavailable)?;
            if !response.status().is_success() {
                return Err(OidcError::Unavailable(format!(
                    "{url} answered {}",
                    response.status()
                )));
            }
            if response.content_length().is_some_and(|n| n > max as u64) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
                if body.len() + chunk.len() > max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.limits.timeout, read)
            .await
            .map_err(|_| OidcError::Unavailable(format!("{url} did not answer in time")))?
    }

    /// Fetches and checks the provider's discovery document.
    async fn discover(&self) -> Result<CoreProviderMetadata, OidcError> {
        let issuer = IssuerUrl::new(self.settings.issuer_url.clone()).map_err(unavailable)?;
        let url = issuer
            .join(".well-known/openid-configuration")
            .map_err(unavailable)?;
        let body = self.fetch(url.as_str()).await?;
        let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Unavailable(format!("provider metadata: {e}")))?;
        if metadata.issuer() != &issuer {
            return Err(OidcError::Unavailable(format!(
                "the provider metadata names issuer {} (expected {})",
                metadata.issuer().as_str(),
                issuer.as_str()
            )));
        }
        Ok(metadata)
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let seen = {
            let cache = self.metadata.read().await;
            if let Some((metadata, at)) = &cache.metadata {
                if at.elapsed() < METADATA_TTL {
                    return Ok(metadata.clone());
                }
            }
            cache.attempts
        };
        let _flight = self.metadata_flight.lock().await;
        {
            let cache = self.metadata.read().await;
            if cache.attempts != seen {
                // Another request fetched while this one waited: share its outcome.
                return match (&cache.metadata, &cache.last_error) {
                    (Some((metadata, _)), None) => Ok(metadata.clone()),
                    (_, Some(error)) => Err(OidcError::Unavailable(error.clone())),
                    (None, None) => Err(unavailable("no provider metadata")),
                };
            }
        }
        let result = self.discover().await;
        let mut cache = self.metadata.write().await;
        cache.attempts += 1;
        match result {
            Ok(metadata) => {
                cache.metadata = Some((metadata.clone(), Instant::now()));
                cache.last_error = None;
                Ok(metadata)
            }
            Err(error) => {
                cache.last_error = Some(error.to_string());
                match &cache.metadata {
                    // Stale metadata beats none while the provider is briefly away.
                    Some((metadata, _)) => {
                        tracing::warn!(error = %error, "refreshing the identity provider's metadata failed; using the cached copy");
                        Ok(metadata.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let metadata = self.metadata().await?;
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone()).map_err(unavailable)?;
        let secret = Some(self.settings.client_secret.expose_secret())
            .filter(|s| !s.is_empty())
            .map(|s| ClientSecret::new(s.to_owned()));
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send the person, and what to remember until they come back.
    pub async fn begin_login(&self) -> Result<(String, LoginState), OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(OidcScope::new("profile".to_owned()))
            .add_scope(OidcScope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            LoginState {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                exp: SessionCodec::login_expiry(),
            },
        ))
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token: signature from
    /// the provider's keys (the same refreshing cache as bearer tokens, so a key rotation is
    /// picked up), an algorithm the provider advertises, issuer, audience, expiry and nonce.
    pub async fn complete_login(
        &self,
        code: &str,
        login: &LoginState,
    ) -> Result<ReviewerIdentity, OidcError> {
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(unavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::Request(error) => unavailable(error),
                other => OidcError::Rejected(format!("the provider refused the code: {other}")),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| rejected("the provider returned no ID token"))?;
        let claims = self
            .verify_id_token(&id_token.to_string(), &login.nonce)
            .await?;
        Ok(ReviewerIdentity {
            subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
            name: claims
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned),
            roles: self.roles(&claims),
            person: true,
        })
    }

    /// Verifies an ID token from the provider's token endpoint; returns its claims.
    async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<Value, OidcError> {
        let metadata = self.metadata().await?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| rejected("the ID token is not a signed JWT"))?;
        if !id_token_algorithms(&metadata).contains(&header.alg) {
            return Err(OidcError::Rejected(format!(
                "the ID token is signed with {:?}, which the provider does not advertise",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer_url]);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| OidcError::Rejected(format!("the ID token is not valid: {e}")))?
            .claims;
        let returned = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(returned.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(rejected("the ID token's nonce does not match the login"));
        }
        // OpenID Connect Core 3.1.3.7: with several audiences, or an azp, the gateway must be
        // the party the token was issued to.
        let azp = claims.get("azp").and_then(Value::as_str);
        if (audiences(&claims).len() > 1 || azp.is_some())
            && azp != Some(self.settings.client_id.as_str())
        {
            return Err(rejected("the ID token was issued to another party (azp)"));
        }
        Ok(claims)
    }

    /// The roles the configured claim grants (a string, a space-separated string or a list).
    pub fn roles(&self, claims: &Value) -> Vec<Role> {
        let values: Vec<String> = match claims.get(&self.settings.roles_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let mut roles: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|role| {
                let wanted = match role {
                    Role::Reviewer => &self.settings.reviewer_role,
                    Role::Approver => &self.settings.approver_role,
                    Role::Auditor => &self.settings.auditor_role,
                };
                // A blank role name (refused by configuration) must never match anything.
                !wanted.trim().is_empty() && values.iter().any(|v| v == wanted)
            })
            .collect();
        roles.sort();
        roles
    }

    /// Fetches the provider's keys when they are older than the metadata TTL, or (`force`:
    /// a token named an unknown key) when the last attempt is older than the refetch gap.
    async fn refresh_keys(&self, force: bool) -> Result<(), OidcError> {
        let seen = {
            let cache = self.keys.read().await;
            let too_soon = cache
                .attempted
                .is_some_and(|at| at.elapsed() < self.limits.min_key_refetch);
            // Keys the provider dropped must stop working: refetch by age as well.
            let fresh = cache.fetched.is_some_and(|at| at.elapsed() < METADATA_TTL);
            if too_soon || (!force && fresh) {
                return match (&cache.last_error, cache.keys.is_empty()) {
                    (Some(error), true) => Err(OidcError::Unavailable(error.clone())),
                    _ => Ok(()),
                };
            }
            cache.attempts
        };
        let _flight = self.keys_flight.lock().await;
        {
            let cache = self.keys.read().await;
            if cache.attempts != seen {
                // Another request fetched while this one waited: share its outcome.
                return match &cache.last_error {
                    Some(error) => Err(OidcError::Unavailable(error.clone())),
                    None => Ok(()),
                };
            }
        }
        let result = self.fetch_keys().await;
        let mut cache = self.keys.write().await;
        cache.attempts += 1;
        cache.attempted = Some(Instant::now());
        match result {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched = cache.attempted;
                cache.last_error = None;
                Ok(())
            }
            Err(error) => {
                cache.last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<Vec<ProviderKey>, OidcError> {
        let metadata = self.metadata().await?;
        let body = self.fetch(metadata.jwks_uri().url().as_str()).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Unavailable(format!("provider keys: {e}")))?;
        Ok(set
            .keys
            .iter()
            // A shared secret is never a provider's signing key, nor is an encryption key.
            .filter(|jwk| {
                !matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                ) && jwk
                    .common
                    .public_key_use
                    .as_ref()
                    .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
            })
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(ProviderKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    alg: jwk
                        .common
                        .key_algorithm
                        .and_then(|a| a.to_string().parse().ok()),
                })
            })
            .collect())
    }

    /// The cached key that signed a token with this `kid` and `alg`, if any. Without a `kid`
    /// only an unambiguous key qualifies (a provider with a single key may omit it).
    async fn find_key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<DecodingKey>, OidcError> {
        let cache = self.keys.read().await;
        let candidates: Vec<&ProviderKey> = match kid {
            Some(kid) => cache
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => cache
                .keys
                .iter()
                .filter(|k| k.alg.is_none_or(|a| a == alg))
                .collect(),
        };
        match candidates.as_slice() {
            [] => Ok(None),
            [one] if one.alg.is_some_and(|a| a != alg) => {
                Err(rejected("algorithm does not match the provider's key"))
            }
            [one] => Ok(Some(one.key.clone())),
            _ => Err(rejected(
                "the token does not say which of the provider's keys signed it",
            )),
        }
    }

    /// The provider key for a token: from the cache, refreshed by age, refetched once when
    /// the token names a key the cache does not hold (the provider rotated).
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
        if let Err(error) = self.refresh_keys(false).await {
            // A failed refresh by age keeps the cached keys; with none cached, give up.
            if self.keys.read().await.keys.is_empty() {
                return Err(error);
            }
            tracing::warn!(error = %error, "refreshing the identity provider's keys failed; using the cached ones");
        }
        if self.find_key(kid, alg).await?.is_none() {
            self.refresh_keys(true).await?;
        }
        self.find_key(kid, alg)
            .await?
            .ok_or_else(|| rejected("the token was not signed by the identity provider"))
    }

    /// Checks a provider-issued JWT access token: signature (provider keys), `typ`, issuer,
    /// audience (`oidc.audience`, which must not be the client id), expiry; refuses ID
    /// tokens. `person` is set when it was issued to a person (authorization-code flow: its
    /// subject is not the client it was issued to).
    pub async fn verify_bearer(&self, token: &str) -> Result<ReviewerIdentity, OidcError> {
        let audience = self.bearer_audience().ok_or_else(|| {
            rejected("provider bearer tokens are off: oidc.audience is empty or the client id")
        })?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| rejected("not a signed JWT"))?;
        if symmetric(header.alg) {
            return Err(rejected("symmetric algorithms are not accepted"));
        }
        // RFC 9068: a provider that types its tokens calls access tokens `at+jwt`; any other
        // type (an ID token's `JWT`, a logout token) is not an access token.
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !is_access_token_type(t))
        {
            return Err(rejected("the token's typ is not at+jwt"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| rejected("the token names no key"))?;
        let key = self.key_for(Some(kid), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer_url]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| OidcError::Rejected(format!("the token is not valid here: {e}")))?;
        let claims = data.claims;
        // An ID token is not an access token, even where its audience would pass: ID-token
        // claims, or the gateway's client id among the audiences, give it away.
        let id_token_claims = ["nonce", "at_hash", "c_hash"];
        if id_token_claims.iter().any(|c| claims.get(c).is_some())
            || audiences(&claims).contains(&self.settings.client_id.as_str())
        {
            return Err(rejected("an ID token is not accepted as a bearer token"));
        }
        Ok(ReviewerIdentity {
            subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
            name: claims
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned),
            roles: self.roles(&claims),
            person: self.settings.bearer_people == crate::config::BearerPeople::SubjectNotClient
                && names_a_person(&claims),
        })
    }
}

/// Whether a provider access token names a person rather than the client itself: client
/// credentials tokens carry the client as their subject.
fn names_a_person(claims: &Value) -> bool {
    let subject = claims.get("sub").and_then(Value::as_str);
    let client = claims
        .get("client_id")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str);
    matches!((subject, client), (Some(sub), Some(client)) if sub != client)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::auth::b64;

    /// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), then the 32-byte seed.
    const ED25519_PKCS8_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];

    struct Key {
        kid: String,
        encoding: EncodingKey,
        jwk: Value,
    }

    fn key(seed: u8) -> Key {
        let seed = [seed; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let kid = format!("key-{}", seed[0]);
        Key {
            encoding: EncodingKey::from_ed_der(&[ED25519_PKCS8_PREFIX.as_slice(), &seed].concat()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "alg": "EdDSA", "use": "sig"}),
            kid,
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Answer {
        Normally,
        /// Accepts connections and never answers.
        Never,
    }

    /// A stand-in identity provider on loopback: discovery and keys, counting fetches.
    struct FakeProvider {
        issuer: String,
        jwks: Arc<StdMutex<String>>,
        algs: Arc<StdMutex<Vec<&'static str>>>,
        jwks_hits: Arc<AtomicUsize>,
        metadata_hits: Arc<AtomicUsize>,
    }

    impl FakeProvider {
        fn start(answer: Answer, jwks_delay: StdDuration) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let issuer = format!("http://{}", listener.local_addr().unwrap());
            let this = Self {
                issuer: issuer.clone(),
                jwks: Arc::new(StdMutex::new(json!({"keys": [key(1).jwk]}).to_string())),
                algs: Arc::new(StdMutex::new(vec!["EdDSA"])),
                jwks_hits: Arc::default(),
                metadata_hits: Arc::default(),
            };
            let (jwks, algs) = (this.jwks.clone(), this.algs.clone());
            let (jwks_hits, metadata_hits) = (this.jwks_hits.clone(), this.metadata_hits.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let (jwks, algs, issuer) = (jwks.clone(), algs.clone(), issuer.clone());
                    let (jwks_hits, metadata_hits) = (jwks_hits.clone(), metadata_hits.clone());
                    std::thread::spawn(move || {
                        let mut request = Vec::new();
                        let mut buffer = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buffer) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buffer[..n]),
                            }
                        }
                        if answer == Answer::Never {
                            std::thread::sleep(StdDuration::from_secs(30));
                            return;
                        }
                        let request = String::from_utf8_lossy(&request);
                        let path = request.split(' ').nth(1).unwrap_or("");
                        let body = match path {
                            "/.well-known/openid-configuration" => {
                                metadata_hits.fetch_add(1, Ordering::SeqCst);
                                json!({
                                    "issuer": issuer,
                                    "authorization_endpoint": format!("{issuer}/auth"),
                                    "token_endpoint": format!("{issuer}/token"),
                                    "jwks_uri": format!("{issuer}/jwks"),
                                    "response_types_supported": ["code"],
                                    "subject_types_supported": ["public"],
                                    "id_token_signing_alg_values_supported": *algs.lock().unwrap(),
                                })
                                .to_string()
                            }
                            "/jwks" => {
                                jwks_hits.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(jwks_delay);
                                jwks.lock().unwrap().clone()
                            }
                            _ => String::new(),
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    });
                }
            });
            this
        }

        fn normal() -> Self {
            Self::start(Answer::Normally, StdDuration::ZERO)
        }
    }

    fn limits() -> FetchLimits {
        FetchLimits {
            timeout: StdDuration::from_secs(5),
            max_bytes: FETCH_MAX_BYTES,
            min_key_refetch: StdDuration::ZERO,
        }
    }

    fn gateway(provider: &FakeProvider, audience: &str, limits: FetchLimits) -> Arc<Oidc> {
        let mut settings = crate::config::Settings::defaults().unwrap().oidc;
        settings.issuer_url = provider.issuer.clone();
        settings.client_id = "gateway".into();
        settings.redirect_url = "http://127.0.0.1:1/auth/callback".into();
        settings.audience = audience.into();
        Arc::new(Oidc::with_limits(settings, limits).unwrap())
    }

    fn sign(key: &Key, typ: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn access_claims(issuer: &str, aud: Value) -> Value {
        json!({"iss": issuer, "aud": aud, "sub": "automation", "client_id": "automation",
               "exp": chrono::Utc::now().timestamp() + 300, "roles": ["reviewer"]})
    }

    fn refused(result: Result<ReviewerIdentity, OidcError>) -> String {
        match result {
            Err(OidcError::Rejected(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bearer_tokens_need_an_audience_distinct_from_the_client_id() {
        let provider = FakeProvider::normal();
        // With no audience, or the client id (the audience of the gateway's ID tokens), no
        // provider token passes: not even one made out to exactly that audience.
        for audience in ["", "gateway"] {
            let oidc = gateway(&provider, audience, limits());
            assert!(!oidc.bearer_enabled());
            let token = sign(
                &key(1),
                Some("at+jwt"),
                &access_claims(&provider.issuer, json!("gateway")),
            );
            assert!(refused(oidc.verify_bearer(&token).await).contains("oidc.audience"));
        }
        let oidc = gateway(&provider, "urn:api", limits());
        assert!(oidc.bearer_enabled());
        let token = sign(
            &key(1),
            Some("at+jwt"),
            &access_claims(&provider.issuer, json!("urn:api")),
        );
        let identity = oidc.verify_bearer(&token).await.unwrap();
        assert_eq!(identity.subject, "automation");
        assert_eq!(identity.roles, [Role::Reviewer]);
    }

    #[tokio::test]
    async fn a_typed_bearer_token_must_be_typed_at_jwt() {
        let provider = FakeProvider::normal();
        let oidc = gateway(&provider, "urn:api", limits());
        let claims = access_claims(&provider.issuer, json!("urn:api"));
        for typ in [
            Some("at+jwt"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
            None,
        ] {
            assert!(
                oidc.verify_bearer(&sign(&key(1), typ, &claims))
                    .await
                    .is_ok(),
                "{typ:?}"
            );
        }
        for typ in ["JWT", "logout+jwt", "gw-checkpoint+jws"] {
            let why = refused(oidc.verify_bearer(&sign(&key(1), Some(typ), &claims)).await);
            assert!(why.contains("typ"), "{typ}: {why}");
        }
    }

    #[tokio::test]
    async fn id_tokens_are_refused_as_bearer_tokens() {
        let provider = FakeProvider::normal();
        let oidc = gateway(&provider, "urn:api", limits());
        let with = |name: &str, value: Value| {
            let mut claims = access_claims(&provider.issuer, json!("urn:api"));
            claims[name] = value;
            claims
        };
        for claims in [
            with("nonce", json!("n-1")),
            with("at_hash", json!("abc")),
            with("c_hash", json!("abc")),
            // Made out to the API and to the gateway's client: an ID token with two audiences.
            with("aud", json!(["urn:api", "gateway"])),
        ] {
            let why = refused(oidc.verify_bearer(&sign(&key(1), None, &claims)).await);
            assert!(why.contains("ID token"), "{claims}: {why}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_key_misses_wait_for_one_fetch_and_rotation_is_picked_up() {
        let provider = FakeProvider::start(Answer::Normally, StdDuration::from_millis(300));
        let oidc = gateway(&provider, "urn:api", limits());
        let token = sign(
            &key(1),
            Some("at+jwt"),
            &access_claims(&provider.issuer, json!("urn:api")),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (oidc, token) = (oidc.clone(), token.clone());
            tasks.spawn(async move { oidc.verify_bearer(&token).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        assert_eq!(provider.metadata_hits.load(Ordering::SeqCst), 1);
        assert_eq!(provider.jwks_hits.load(Ordering::SeqCst), 1);

        // The provider rotates: a token naming the new key makes the gateway refetch, once.
        *provider.jwks.lock().unwrap() = json!({"keys": [key(2).jwk]}).to_string();
        let rotated = sign(
            &key(2),
            Some("at+jwt"),
            &access_claims(&provider.issuer, json!("urn:api")),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (oidc, token) = (oidc.clone(), rotated.clone());
            tasks.spawn(async move { oidc.verify_bearer(&token).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        assert_eq!(provider.jwks_hits.load(Ordering::SeqCst), 2);
        // The dropped key no longer verifies anything.
        assert!(refused(oidc.verify_bearer(&token).await).contains("not signed"));
    }

    #[tokio::test]
    async fn unknown_keys_are_refetched_at_most_once_per_gap() {
        let provider = FakeProvider::normal();
        let mut slow = limits();
        slow.min_key_refetch = StdDuration::from_secs(3600);
        let oidc = gateway(&provider, "urn:api", slow);
        let claims = access_claims(&provider.issuer, json!("urn:api"));
        oidc.verify_bearer(&sign(&key(1), None, &claims))
            .await
            .unwrap();
        for seed in 10..15 {
            refused(oidc.verify_bearer(&sign(&key(seed), None, &claims)).await);
        }
        assert_eq!(provider.jwks_hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn oversized_provider_answers_are_refused() {
        let provider = FakeProvider::normal();
        let padding = "a".repeat(FETCH_MAX_BYTES);
        *provider.jwks.lock().unwrap() =
            json!({"keys": [key(1).jwk], "padding": padding}).to_string();
        let oidc = gateway(&provider, "urn:api", limits());
        let token = sign(
            &key(1),
            None,
            &access_claims(&provider.issuer, json!("urn:api")),
        );
        match oidc.verify_bearer(&token).await {
            Err(OidcError::Unavailable(why)) => assert!(why.contains("more than"), "{why}"),
            other => panic!("expected the provider to count as unavailable: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_times_out() {
        let provider = FakeProvider::start(Answer::Never, StdDuration::ZERO);
        let mut short = limits();
        short.timeout = StdDuration::from_millis(300);
        let oidc = gateway(&provider, "urn:api", short);
        let token = sign(
            &key(1),
            None,
            &access_claims(&provider.issuer, json!("urn:api")),
        );
        assert!(matches!(
            oidc.verify_bearer(&token).await,
            Err(OidcError::Unavailable(_))
        ));
        assert!(matches!(
            oidc.begin_login().await,
            Err(OidcError::Unavailable(_))
        ));
    }

    fn id_claims(issuer: &str) -> Value {
        json!({"iss": issuer, "aud": "gateway", "sub": "reviewer1", "nonce": "n-1",
               "exp": chrono::Utc::now().timestamp() + 300, "iat": chrono::Utc::now().timestamp(),
               "name": "Test reviewer1", "email": "reviewer1@example.org", "roles": ["reviewer"]})
    }

    #[tokio::test]
    async fn id_tokens_verify_with_the_advertised_algorithms_and_rotated_keys() {
        let provider = FakeProvider::normal();
        let oidc = gateway(&provider, "urn:api", limits());
        let claims = oidc
            .verify_id_token(&sign(&key(1), None, &id_claims(&provider.issuer)), "n-1")
            .await
            .unwrap();
        assert_eq!(oidc.roles(&claims), [Role::Reviewer]);
        // The provider rotates: the new key is fetched for sign-in as well.
        *provider.jwks.lock().unwrap() = json!({"keys": [key(2).jwk]}).to_string();
        oidc.verify_id_token(&sign(&key(2), None, &id_claims(&provider.issuer)), "n-1")
            .await
            .unwrap();

        let expect_refusal = |result: Result<Value, OidcError>, want: &str| match result {
            Err(OidcError::Rejected(why)) => assert!(why.contains(want), "{why}"),
            other => panic!("expected a refusal ({want}), got {other:?}"),
        };
        let mut other_party = id_claims(&provider.issuer);
        other_party["azp"] = json!("someone-else");
        expect_refusal(
            oidc.verify_id_token(&sign(&key(2), None, &other_party), "n-1")
                .await,
            "azp",
        );
        expect_refusal(
            oidc.verify_id_token(&sign(&key(2), None, &id_claims(&provider.issuer)), "n-2")
                .await,
            "nonce",
        );
        let mut for_the_api = id_claims(&provider.issuer);
        for_the_api["aud"] = json!("urn:api");
        expect_refusal(
            oidc.verify_id_token(&sign(&key(2), None, &for_the_api), "n-1")
                .await,
            "not valid",
        );

        // A provider advertising RS256 only: an EdDSA ID token is refused.
        let rs256_only = FakeProvider::normal();
        *rs256_only.algs.lock().unwrap() = vec!["RS256"];
        let oidc = gateway(&rs256_only, "urn:api", limits());
        expect_refusal(
            oidc.verify_id_token(&sign(&key(1), None, &id_claims(&rs256_only.issuer)), "n-1")
                .await,
            "does not advertise",
        );
    }

    #[test]
    fn a_blank_role_name_matches_nothing() {
        let mut settings = crate::config::Settings::defaults().unwrap().oidc;
        settings.reviewer_role = String::new();
        let oidc = Oidc::with_limits(settings, limits()).unwrap();
        assert!(oidc.roles(&json!({"roles": ""})).is_empty());
        assert!(oidc.roles(&json!({"roles": [""]})).is_empty());
        assert_eq!(
            oidc.roles(&json!({"roles": "approver  auditor"})),
            [Role::Approver, Role::Auditor]
        );
    }
}
