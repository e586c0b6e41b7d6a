//! Reviewer sessions and login state, kept in encrypted, signed cookies (HttpOnly,
//! SameSite=Lax, Secure unless configured off) with a bounded lifetime.

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use gateway_domain::ReviewerIdentity;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const SESSION_COOKIE: &str = "gw_session";
pub const LOGIN_COOKIE: &str = "gw_login";
/// How long a login may take at the identity provider.
const LOGIN_LIFETIME_MINUTES: i64 = 10;

/// What `/auth/login` remembers until the provider sends the person back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub exp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionData {
    identity: ReviewerIdentity,
    exp: i64,
    /// Sent back in `X-CSRF-Token` on every change made with this session.
    #[serde(default)]
    csrf: String,
}

/// A valid session: who, and the token its changes must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: ReviewerIdentity,
    pub csrf_token: String,
}

pub struct SessionCodec {
    key: Key,
    lifetime: Duration,
    secure: bool,
}

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCodec")
            .field("lifetime", &self.lifetime)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl SessionCodec {
    pub fn new(
        configured_key: &SecretString,
        lifetime_minutes: u32,
        secure: bool,
    ) -> anyhow::Result<Self> {
        let key = if configured_key.expose_secret().is_empty() {
            tracing::warn!("oidc.session_key is not set: reviewer sessions end when this process restarts and are not shared between replicas");
            Key::generate()
        } else {
            let bytes = STANDARD.decode(configured_key.expose_secret().trim())?;
            anyhow::ensure!(
                bytes.len() >= 64,
                "oidc.session_key must be at least 64 bytes of base64"
            );
            Key::from(&bytes)
        };
        Ok(Self {
            key,
            lifetime: Duration::minutes(i64::from(lifetime_minutes.max(1))),
            secure,
        })
    }

    fn seal(
        &self,
        name: &'static str,
        value: String,
        max_age: Duration,
        path: &'static str,
    ) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(Cookie::new(name, value));
        let mut cookie = jar
            .delta()
            .next()
            .cloned()
            .unwrap_or_else(|| Cookie::new(name, ""));
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
        cookie.set_path(path);
        cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
            max_age.num_seconds(),
        ));
        cookie
    }

    fn open<T: DeserializeOwned>(&self, req: &HttpRequest, name: &'static str) -> Option<T> {
        let cookie = req.cookie(name)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        let value = jar.private(&self.key).get(name)?;
        serde_json::from_str(value.value()).ok()
    }

    pub fn session_cookie(&self, identity: &ReviewerIdentity) -> Cookie<'static> {
        let mut csrf = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut csrf[..]);
        let data = SessionData {
            identity: identity.clone(),
            exp: (Utc::now() + self.lifetime).timestamp(),
            csrf: crate::auth::b64(&csrf),
        };
        self.seal(
            SESSION_COOKIE,
            serde_json::to_string(&data).unwrap_or_default(),
            self.lifetime,
            "/",
        )
    }

    /// The reviewer of a valid, unexpired session cookie.
    pub fn session(&self, req: &HttpRequest) -> Option<ReviewerIdentity> {
        self.session_with_csrf(req).map(|s| s.identity)
    }

    /// The valid, unexpired session of the request, with its CSRF token.
    pub fn session_with_csrf(&self, req: &HttpRequest) -> Option<Session> {
        let data: SessionData = self.open(req, SESSION_COOKIE)?;
        (data.exp > Utc::now().timestamp() && !data.csrf.is_empty()).then_some(Session {
            identity: data.identity,
            csrf_token: data.csrf,
        })
    }

    pub fn login_cookie(&self, state: &LoginState) -> Cookie<'static> {
        self.seal(
            LOGIN_COOKIE,
            serde_json::to_string(state).unwrap_or_default(),
            Duration::minutes(LOGIN_LIFETIME_MINUTES),
            "/auth",
        )
    }

    pub fn login_state(&self, req: &HttpRequest) -> Option<LoginState> {
        let state: LoginState = self.open(req, LOGIN_COOKIE)?;
        (state.exp > Utc::now().timestamp()).then_some(state)
    }

    pub fn login_expiry() -> i64 {
        (Utc::now() + Duration::minutes(LOGIN_LIFETIME_MINUTES)).timestamp()
    }

    /// A cookie that deletes `name` in the browser.
    pub fn removal(&self, name: &'static str, path: &'static str) -> Cookie<'static> {
        let mut cookie = Cookie::new(name, "");
        cookie.set_path(path);
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(SameSite::Lax);
        cookie.make_removal();
        cookie
    }
}
