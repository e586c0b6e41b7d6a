//! Reviewer sessions kept server-side: what a signed-in browser's opaque cookie stands for, the
//! rules that end a session (idle timeout, absolute lifetime, revocation), and the port that
//! stores them where every replica sees them.

use chrono::{DateTime, Duration, Utc};

use crate::access::ReviewerIdentity;
use crate::audit::NewAuditEvent;
use crate::ports::RepositoryError;

/// A session as stored. The session id itself is never stored: only its SHA-256 (hex), so a
/// copy of the table signs nobody in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerSession {
    pub id_sha256: String,
    /// Who signed in, with the roles the provider's claims gave at sign-in (re-read only at
    /// the next sign-in).
    pub identity: ReviewerIdentity,
    /// Sent back in `X-CSRF-Token` on every change made with this session.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    /// Last use, refreshed at most once per [`SessionPolicy::touch_interval`].
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, however busy the session is.
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub lifetime: Duration,
}

/// Why a stored session no longer signs anybody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Revoked,
    Expired,
    Idle,
}

impl SessionPolicy {
    /// How stale `last_seen_at` may get before a request writes it again: a minute, or a tenth
    /// of the idle timeout when that is shorter. Sessions are read on every reviewer request,
    /// so not writing each time keeps sign-in traffic off the database's write path.
    pub fn touch_interval(&self) -> Duration {
        std::cmp::min(Duration::minutes(1), self.idle_timeout / 10)
    }

    /// A new session's absolute end.
    pub fn expiry(&self, created_at: DateTime<Utc>) -> DateTime<Utc> {
        created_at + self.lifetime
    }

    /// Whether `session` still signs its reviewer in at `now`, and if not, why.
    ///
    /// The idle check counts from the stored `last_seen_at`, which may lag the real last use
    /// by up to [`Self::touch_interval`] (see there). It never counts that lag as activity:
    /// a session ends after at most `idle_timeout` without use, and possibly up to one touch
    /// interval sooner, never later.
    pub fn check(&self, session: &ReviewerSession, now: DateTime<Utc>) -> Result<(), SessionEnd> {
        if session.revoked_at.is_some() {
            return Err(SessionEnd::Revoked);
        }
        if now >= session.expires_at {
            return Err(SessionEnd::Expired);
        }
        if now >= session.last_seen_at + self.idle_timeout {
            return Err(SessionEnd::Idle);
        }
        Ok(())
    }

    /// Whether using `session` at `now` should write `last_seen_at` down.
    pub fn needs_touch(&self, session: &ReviewerSession, now: DateTime<Utc>) -> bool {
        now - session.last_seen_at >= self.touch_interval()
    }

    /// Sessions last seen before this are idle at `now` (for purging).
    pub fn idle_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.idle_timeout
    }
}

/// Reviewer sessions, shared by every replica through the database.
pub trait SessionRepository: Send + Sync {
    /// Stores `session` and appends `event` (the sign-in), atomically. MUST return
    /// `Conflict::Unique` and store nothing when a session with the same `id_sha256` exists.
    fn create_session(
        &self,
        session: &ReviewerSession,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError>;

    /// The stored session with this digest, whatever its state (revoked and expired ones
    /// too, until purged): [`SessionPolicy::check`] decides. `Ok(None)` when unknown.
    fn find_session(&self, id_sha256: &str) -> Result<Option<ReviewerSession>, RepositoryError>;

    /// Moves `last_seen_at` forward to `at`. MUST change nothing (and return `Ok(false)`)
    /// when the session is unknown, revoked, or already seen at or after `at`.
    fn touch_session(&self, id_sha256: &str, at: DateTime<Utc>) -> Result<bool, RepositoryError>;

    /// Revokes the session at `at` and appends `event`, atomically. MUST return `Ok(false)`,
    /// appending nothing, when the session is unknown or already revoked (so two sign-outs
    /// racing record one).
    fn revoke_session(
        &self,
        id_sha256: &str,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<bool, RepositoryError>;

    /// Deletes at most `limit` sessions that are revoked, past `expires_at` at `now`, or last
    /// seen at or before `idle_cutoff`; returns how many.
    fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, RepositoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(at: DateTime<Utc>) -> ReviewerSession {
        ReviewerSession {
            id_sha256: "ab".repeat(32),
            identity: ReviewerIdentity {
                subject: "reviewer1".into(),
                name: None,
                email: None,
                roles: vec![],
                person: true,
            },
            csrf_token: "csrf".into(),
            created_at: at,
            last_seen_at: at,
            expires_at: at + Duration::hours(8),
            revoked_at: None,
        }
    }

    fn policy() -> SessionPolicy {
        SessionPolicy {
            idle_timeout: Duration::minutes(30),
            lifetime: Duration::hours(8),
        }
    }

    #[test]
    fn sessions_end_when_idle_expired_or_revoked() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let p = policy();
        let mut s = session(t0);
        assert_eq!(p.check(&s, t0 + Duration::minutes(29)), Ok(()));
        assert_eq!(
            p.check(&s, t0 + Duration::minutes(30)),
            Err(SessionEnd::Idle)
        );
        s.last_seen_at = t0 + Duration::hours(7) + Duration::minutes(50);
        assert_eq!(
            p.check(&s, t0 + Duration::hours(7) + Duration::minutes(59)),
            Ok(())
        );
        assert_eq!(
            p.check(&s, t0 + Duration::hours(8)),
            Err(SessionEnd::Expired),
            "busy or not, the lifetime ends it"
        );
        s.revoked_at = Some(t0 + Duration::hours(7) + Duration::minutes(55));
        assert_eq!(
            p.check(&s, t0 + Duration::hours(7) + Duration::minutes(56)),
            Err(SessionEnd::Revoked)
        );
    }

    #[test]
    fn last_seen_is_written_at_most_once_per_touch_interval() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let p = policy();
        assert_eq!(p.touch_interval(), Duration::minutes(1));
        let s = session(t0);
        assert!(!p.needs_touch(&s, t0 + Duration::seconds(59)));
        assert!(p.needs_touch(&s, t0 + Duration::seconds(60)));
        let short = SessionPolicy {
            idle_timeout: Duration::minutes(5),
            ..p
        };
        assert_eq!(short.touch_interval(), Duration::seconds(30));
        assert_eq!(p.idle_cutoff(t0), t0 - Duration::minutes(30));
    }
}
