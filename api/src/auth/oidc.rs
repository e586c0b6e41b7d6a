//! Reviewers through OpenID Connect: the authorization code flow with PKCE for people, and
//! provider-issued JWT bearer tokens for automation. Discovery happens on first use and is
//! refreshed; the provider's keys are cached and refetched on an unknown `kid`.

use std::collections::HashMap;
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
use tokio::sync::RwLock;

use super::session::{LoginState, SessionCodec};
use super::unb64;
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
/// Refetch the provider's keys at most this often when a token names an unknown `kid`.
const JWKS_MIN_REFRESH: StdDuration = StdDuration::from_secs(10);

struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
}

pub struct Oidc {
    settings: OidcSettings,
    http: openidconnect::reqwest::Client,
    metadata: RwLock<Option<(CoreProviderMetadata, Instant)>>,
    keys: RwLock<KeyCache>,
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

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects from the provider would open the door to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(StdDuration::from_secs(10))
            .build()?;
        Ok(Self {
            settings,
            http,
            metadata: RwLock::new(None),
            keys: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched: None,
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer_url
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        if let Some((metadata, at)) = self.metadata.read().await.as_ref() {
            if at.elapsed() < METADATA_TTL {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer_url.clone()).map_err(unavailable)?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(unavailable)?;
        *self.metadata.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
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
    /// the provider's keys, issuer, audience, expiry and nonce.
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
            .ok_or_else(|| OidcError::Rejected("the provider returned no ID token".to_owned()))?;
        let claims = id_token
            .claims(
                &client.id_token_verifier(),
                &Nonce::new(login.nonce.clone()),
            )
            .map_err(|e| OidcError::Rejected(format!("the ID token is not valid: {e}")))?;
        // The signature is verified: read the role claim from the same token's payload.
        let payload = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(unb64)
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or_default();
        Ok(ReviewerIdentity {
            subject: claims.subject().to_string(),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            email: claims.email().map(|e| e.to_string()),
            roles: self.roles(&payload),
            person: true,
        })
    }

    /// The roles the configured claim grants (a string, a space-separated string or a list).
    pub fn roles(&self, claims: &Value) -> Vec<Role> {
        let values: Vec<String> = match claims.get(&self.settings.roles_claim) {
            Some(Value::String(s)) => s.split(' ').map(str::to_owned).collect(),
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
                values.iter().any(|v| v == wanted)
            })
            .collect();
        roles.sort();
        roles
    }

    async fn refresh_keys(&self, force: bool) -> Result<(), OidcError> {
        {
            let cache = self.keys.read().await;
            if let Some(at) = cache.fetched {
                let too_soon = at.elapsed() < JWKS_MIN_REFRESH;
                let fresh = at.elapsed() < METADATA_TTL;
                // Keys the provider dropped must stop working: refetch by age as well.
                if too_soon || (!force && fresh) {
                    return Ok(());
                }
            }
        }
        let metadata = self.metadata().await?;
        let body = self
            .http
            .get(metadata.jwks_uri().url().as_str())
            .send()
            .await
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(unavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse().ok());
            keys.insert(kid, (key, alg));
        }
        *self.keys.write().await = KeyCache {
            keys,
            fetched: Some(Instant::now()),
        };
        Ok(())
    }

    /// Verifies a provider-issued JWT access token: signature (provider keys), issuer,
    /// audience, expiry; then reads its roles.
    /// Checks a provider-issued bearer token; `person` is set when it was issued to a person
    /// (authorization-code flow: its subject is not the client it was issued to).
    pub async fn verify_bearer(&self, token: &str) -> Result<ReviewerIdentity, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OidcError::Rejected("not a signed JWT".to_owned()))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(OidcError::Rejected(
                "symmetric algorithms are not accepted".to_owned(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Rejected("the token names no key".to_owned()))?;
        if let Err(error) = self.refresh_keys(false).await {
            // A failed refresh by age keeps the cached keys; with none cached, give up.
            if self.keys.read().await.keys.is_empty() {
                return Err(error);
            }
            tracing::warn!(error = %error, "refreshing the identity provider's keys failed; using the cached ones");
        }
        if !self.keys.read().await.keys.contains_key(&kid) {
            self.refresh_keys(true).await?;
        }
        let cache = self.keys.read().await;
        let (key, pinned) = cache.keys.get(&kid).ok_or_else(|| {
            OidcError::Rejected("the token was not signed by the identity provider".to_owned())
        })?;
        if pinned.is_some_and(|alg| alg != header.alg) {
            return Err(OidcError::Rejected(
                "algorithm does not match the provider's key".to_owned(),
            ));
        }
        let audience = if self.settings.audience.is_empty() {
            &self.settings.client_id
        } else {
            &self.settings.audience
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer_url]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| OidcError::Rejected(format!("the token is not valid here: {e}")))?;
        let claims = data.claims;
        // An ID token is not an access token, even where its audience would pass.
        if claims.get("nonce").is_some() || claims.get("at_hash").is_some() {
            return Err(OidcError::Rejected(
                "an ID token is not accepted as a bearer token".to_owned(),
            ));
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
