//! Reviewer sessions and login state. A session lives in the database (so every replica sees a
//! sign-out at once); the browser's `gw_session` cookie carries only an opaque random id
//! (256 bits), of which the database keeps the SHA-256. The short-lived login state between
//! `/auth/login` and `/auth/callback` stays in an encrypted, signed cookie (`gw_login`).
//! Both cookies are HttpOnly, SameSite=Lax and Secure unless configured off.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::{web, HttpRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use gateway_domain::{
    Actor, AuditAction, Clock, NewAuditEvent, ReviewerIdentity, ReviewerSession, SessionEnd,
    SessionPolicy, SessionRepository,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::credentials::sha256_hex;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "gw_session";
pub const LOGIN_COOKIE: &str = "gw_login";
/// How long a login may take at the identity provider.
const LOGIN_LIFETIME_MINUTES: i64 = 10;
/// Random bytes in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;

/// What `/auth/login` remembers until the provider sends the person back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub exp: i64,
}

/// A live session: who, and the token its changes must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub identity: ReviewerIdentity,
    pub csrf_token: String,
    /// The SHA-256 (hex) of the session id: its key in the database.
    pub id_sha256: String,
    pub created_at: chrono::DateTime<Utc>,
}

impl Session {
    /// A short, non-secret reference to the session for the audit trail (joins a sign-in
    /// with its sign-out).
    pub fn reference(&self) -> String {
        reference(&self.id_sha256)
    }
}

fn reference(id_sha256: &str) -> String {
    id_sha256.chars().take(16).collect()
}

/// The cookies: the login state (sealed with `oidc.session_key`) and the session cookie
/// (an opaque id, nothing to seal).
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
            tracing::warn!("oidc.session_key is not set: a sign-in started at one replica (or before a restart) cannot finish at another");
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

    fn protect(&self, cookie: &mut Cookie<'static>, max_age: Duration, path: &'static str) {
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
        cookie.set_path(path);
        cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
            max_age.num_seconds(),
        ));
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
        self.protect(&mut cookie, max_age, path);
        cookie
    }

    fn open<T: DeserializeOwned>(&self, req: &HttpRequest, name: &'static str) -> Option<T> {
        let cookie = req.cookie(name)?;
        let mut jar = CookieJar::new();
        jar.add_original(cookie);
        let value = jar.private(&self.key).get(name)?;
        serde_json::from_str(value.value()).ok()
    }

    /// The session cookie for a new session id; the browser keeps it no longer than the
    /// session's absolute lifetime.
    pub fn session_cookie(&self, session_id: &str) -> Cookie<'static> {
        let mut cookie = Cookie::new(SESSION_COOKIE, session_id.to_owned());
        self.protect(&mut cookie, self.lifetime, "/");
        cookie
    }

    /// The session id the request's cookie carries, if it looks like one of ours.
    pub fn session_id(req: &HttpRequest) -> Option<String> {
        let value = req.cookie(SESSION_COOKIE)?.value().to_owned();
        crate::auth::unb64(&value)
            .is_some_and(|bytes| bytes.len() == SESSION_ID_BYTES)
            .then_some(value)
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

/// The server-side sessions: created at sign-in, checked on every request, revoked at
/// sign-out, purged once ended.
pub struct SessionStore {
    repo: Arc<dyn SessionRepository>,
    policy: SessionPolicy,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    crate::auth::b64(&bytes)
}

/// Sessions purged per statement, so one purge never holds a long lock.
pub const PURGE_BATCH: i64 = 1_000;

impl SessionStore {
    pub fn new(
        repo: Arc<dyn SessionRepository>,
        policy: SessionPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            policy,
            clock,
        }
    }

    /// Starts a session for `identity` (roles as the provider's claims gave them at this
    /// sign-in) and records the sign-in in the audit trail, atomically. Returns the session
    /// id for the cookie: it exists nowhere else.
    pub async fn start(
        &self,
        identity: ReviewerIdentity,
        request_id: Option<String>,
    ) -> Result<String, ApiError> {
        let id = random_token();
        let now = self.clock.now();
        let session = ReviewerSession {
            id_sha256: sha256_hex(id.as_bytes()),
            csrf_token: random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: self.policy.expiry(now),
            revoked_at: None,
            identity,
        };
        let event = NewAuditEvent {
            occurred_at: now,
            actor: Actor::Reviewer(session.identity.subject.clone()),
            action: AuditAction::ReviewerLogin,
            subject_type: "reviewer",
            subject_id: Some(session.identity.subject.clone()),
            request_id,
            details: serde_json::json!({
                "roles": session.identity.roles,
                "email": session.identity.email,
                "session": reference(&session.id_sha256),
                "expires_at": session.expires_at,
            }),
        };
        let repo = self.repo.clone();
        web::block(move || repo.create_session(&session, &event)).await??;
        Ok(id)
    }

    /// The live session `session_id` stands for, if any. Refreshes `last_seen_at` when it is
    /// older than the policy's touch interval (not on every request; see
    /// [`SessionPolicy::touch_interval`]).
    pub async fn current(&self, session_id: &str) -> Result<Option<Session>, ApiError> {
        let digest = sha256_hex(session_id.as_bytes());
        let repo = self.repo.clone();
        let lookup = digest.clone();
        let Some(stored) = web::block(move || repo.find_session(&lookup)).await?? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if let Err(end) = self.policy.check(&stored, now) {
            tracing::debug!(
                session = %reference(&digest),
                reason = match end {
                    SessionEnd::Revoked => "revoked",
                    SessionEnd::Expired => "expired",
                    SessionEnd::Idle => "idle",
                },
                "ended reviewer session presented"
            );
            return Ok(None);
        }
        if self.policy.needs_touch(&stored, now) {
            let repo = self.repo.clone();
            let touched = digest.clone();
            web::block(move || repo.touch_session(&touched, now)).await??;
        }
        Ok(Some(Session {
            identity: stored.identity,
            csrf_token: stored.csrf_token,
            id_sha256: digest,
            created_at: stored.created_at,
        }))
    }

    /// Revokes `session` everywhere and records the sign-out. `Ok(false)` when another
    /// request revoked it first.
    pub async fn end(
        &self,
        session: &Session,
        request_id: Option<String>,
    ) -> Result<bool, ApiError> {
        let now = self.clock.now();
        let event = NewAuditEvent {
            occurred_at: now,
            actor: Actor::Reviewer(session.identity.subject.clone()),
            action: AuditAction::ReviewerLogout,
            subject_type: "reviewer",
            subject_id: Some(session.identity.subject.clone()),
            request_id,
            details: serde_json::json!({
                "session": session.reference(),
                "signed_in_at": session.created_at,
            }),
        };
        let repo = self.repo.clone();
        let digest = session.id_sha256.clone();
        Ok(web::block(move || repo.revoke_session(&digest, now, &event)).await??)
    }

    /// Deletes ended sessions (revoked, expired or idle) in bounded batches; returns how many.
    pub fn purge(&self) -> Result<usize, gateway_domain::RepositoryError> {
        purge_ended(self.repo.as_ref(), &self.policy, self.clock.now())
    }
}

/// Deletes sessions ended at `now` (revoked, expired or idle under `policy`) in batches of
/// [`PURGE_BATCH`]; returns how many.
pub fn purge_ended(
    repo: &dyn SessionRepository,
    policy: &SessionPolicy,
    now: chrono::DateTime<Utc>,
) -> Result<usize, gateway_domain::RepositoryError> {
    let mut total = 0;
    loop {
        let purged = repo.purge_sessions(now, policy.idle_cutoff(now), PURGE_BATCH)?;
        total += purged;
        if (purged as i64) < PURGE_BATCH {
            return Ok(total);
        }
    }
}

/// Purges ended sessions in the server, every `every`, until dropped.
pub struct SessionJanitor {
    stop: Option<mpsc::Sender<()>>,
    done: Option<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SessionJanitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionJanitor").finish_non_exhaustive()
    }
}

/// How long a dropped janitor waits for its thread (which may be inside a database call).
const JANITOR_DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl SessionJanitor {
    pub fn start(store: Arc<SessionStore>, every: std::time::Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let (alive, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("session-janitor".to_owned())
            .spawn(move || {
                let _alive = alive;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match store.purge() {
                        Ok(0) => {}
                        Ok(purged) => tracing::debug!(purged, "purged ended reviewer sessions"),
                        Err(error) => {
                            tracing::warn!(error = %error, "purging reviewer sessions failed; retrying later")
                        }
                    }
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            done: Some(done),
            thread,
        }
    }
}

impl Drop for SessionJanitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        let finished = self.done.take().is_some_and(|done| {
            matches!(
                done.recv_timeout(JANITOR_DROP_WAIT),
                Err(mpsc::RecvTimeoutError::Disconnected)
            )
        });
        if let (true, Some(thread)) = (finished, self.thread.take()) {
            let _ = thread.join();
        }
    }
}
