//! Abuse limits for the public endpoints: registrations and failed attempts (client
//! assertions, reviewer sign-ins) per client address, held in memory as a cheap first line and
//! in the database's per-minute counters so that they hold across replicas; failed attempts
//! per claimed client, which only ever slow refusals; and the periodic flush that turns the
//! finished minutes' failure counts into one audit record per (source, minute).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use gateway_domain::audit::{excerpt, EXCERPT_CHARS};
use gateway_domain::{
    Actor, AuditAction, Clock, NewAuditEvent, RateLimitStore, RepositoryError, WindowCount,
};

use crate::client_address::{ClientKey, TrustedProxies};
use crate::rate_limit::{retry_after_seconds, BoundedMap, RateLimiter};

/// The database counters' window: limits are per minute.
pub const WINDOW_SECONDS: i64 = 60;

/// A limit counted in the database, by the name its counters are stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Registrations per client address (every attempt counts).
    Registration,
    /// Refused token requests per client address.
    FailedAssertion,
    /// Failed reviewer sign-ins per client address.
    FailedSignIn,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::FailedAssertion => "token.assertion_rejected",
            Self::FailedSignIn => "reviewer.login_failed",
        }
    }

    /// The aggregated audit record a finished minute of this limit's counter becomes.
    fn audit_action(name: &str) -> Option<AuditAction> {
        match name {
            "token.assertion_rejected" => Some(AuditAction::AssertionRejected),
            "reviewer.login_failed" => Some(AuditAction::ReviewerLoginFailed),
            _ => None,
        }
    }
}

/// The limits, from configuration (per minute).
#[derive(Debug, Clone)]
pub struct AbuseLimits {
    pub trusted_proxies: TrustedProxies,
    pub registrations_per_minute: u32,
    pub registration_burst: u32,
    pub failed_assertions_per_minute: u32,
    pub failed_assertions_per_client_per_minute: u32,
    pub failed_sign_ins_per_minute: u32,
    /// How many client addresses (and claimed clients) the in-memory limiters remember.
    pub tracked_clients: usize,
}

/// Refused for now: try again in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_seconds: u64,
}

/// The limits and their state; one per process, shared by the workers.
pub struct AbuseGuard {
    limits: AbuseLimits,
    store: Arc<dyn RateLimitStore>,
    clock: Arc<dyn Clock>,
    registrations: RateLimiter<ClientKey>,
    claimed: RateLimiter<u64>,
    claimed_hasher: RandomState,
    /// Addresses the database said are locked out, until when: asked first, so a locked-out
    /// address costs no database read while its window lasts.
    blocked: BoundedMap<(Limit, ClientKey), Instant>,
}

impl std::fmt::Debug for AbuseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseGuard")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AbuseGuard {
    pub fn new(limits: AbuseLimits, store: Arc<dyn RateLimitStore>, clock: Arc<dyn Clock>) -> Self {
        let tracked = limits.tracked_clients.max(SHARD_FLOOR);
        Self {
            registrations: RateLimiter::per_minute(
                limits.registrations_per_minute,
                limits.registration_burst,
                tracked,
            ),
            claimed: RateLimiter::per_minute(
                limits.failed_assertions_per_client_per_minute,
                limits.failed_assertions_per_client_per_minute,
                tracked,
            ),
            claimed_hasher: RandomState::new(),
            blocked: BoundedMap::new(tracked),
            limits,
            store,
            clock,
        }
    }

    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.limits.trusted_proxies
    }

    fn per_minute(&self, limit: Limit) -> i64 {
        i64::from(match limit {
            Limit::Registration => self.limits.registrations_per_minute,
            Limit::FailedAssertion => self.limits.failed_assertions_per_minute,
            Limit::FailedSignIn => self.limits.failed_sign_ins_per_minute,
        })
    }

    /// The current window's start and the whole seconds left in it (at least 1).
    fn window(&self) -> (i64, u64) {
        let now = self.clock.now();
        let start = now.timestamp() - now.timestamp().rem_euclid(WINDOW_SECONDS);
        let end = Utc
            .timestamp_opt(start + WINDOW_SECONDS, 0)
            .single()
            .unwrap_or(now);
        let left = (end - now).num_milliseconds().max(0) as f64 / 1000.0;
        (start, retry_after_seconds(Duration::from_secs_f64(left)))
    }

    fn block(&self, limit: Limit, key: ClientKey, seconds: u64) {
        let until = Instant::now() + Duration::from_secs(seconds);
        self.blocked
            .with((limit, key), || until, |slot| *slot = (*slot).max(until));
    }

    /// The in-memory answer alone (no database): whether `key` is known to be locked out.
    pub fn locally_blocked(&self, limit: Limit, key: ClientKey) -> Option<Limited> {
        let until = self.blocked.peek((limit, key))?;
        let now = Instant::now();
        (until > now).then(|| Limited {
            retry_after_seconds: retry_after_seconds(until - now),
        })
    }

    /// Before any work for `key`: refused while its failures this minute (on any replica)
    /// reached the limit. Blocking (reads the database).
    pub fn check_failures(
        &self,
        limit: Limit,
        key: ClientKey,
    ) -> Result<Result<(), Limited>, RepositoryError> {
        if let Some(limited) = self.locally_blocked(limit, key) {
            return Ok(Err(limited));
        }
        let (start, left) = self.window();
        if self.store.hits(limit.name(), &key.to_string(), start)? >= self.per_minute(limit) {
            self.block(limit, key, left);
            return Ok(Err(Limited {
                retry_after_seconds: left,
            }));
        }
        Ok(Ok(()))
    }

    /// Counts a failed attempt of `key` (one upsert; the count is what the minute's
    /// aggregated audit record will say), with a short note (a reason code and an excerpt of
    /// the claimed client). Blocking.
    pub fn record_failure(
        &self,
        limit: Limit,
        key: ClientKey,
        note: &str,
    ) -> Result<(), RepositoryError> {
        let (start, left) = self.window();
        let note = excerpt(note, MAX_NOTE_CHARS);
        let hits = self
            .store
            .hit(limit.name(), &key.to_string(), start, Some(&note))?;
        if hits >= self.per_minute(limit) {
            self.block(limit, key, left);
        }
        Ok(())
    }

    /// A registration attempt from `key`: the in-memory bucket first, then the database's
    /// per-minute count (shared by every replica). Blocking.
    pub fn check_registration(
        &self,
        key: ClientKey,
    ) -> Result<Result<(), Limited>, RepositoryError> {
        if let Err(wait) = self.registrations.check(key, Instant::now()) {
            return Ok(Err(Limited {
                retry_after_seconds: retry_after_seconds(wait),
            }));
        }
        if let Some(limited) = self.locally_blocked(Limit::Registration, key) {
            return Ok(Err(limited));
        }
        let (start, left) = self.window();
        let hits = self
            .store
            .hit(Limit::Registration.name(), &key.to_string(), start, None)?;
        if hits > self.per_minute(Limit::Registration) {
            self.block(Limit::Registration, key, left);
            return Ok(Err(Limited {
                retry_after_seconds: left,
            }));
        }
        Ok(Ok(()))
    }

    /// After an assertion claiming `client` failed (never before, so a valid assertion is
    /// never refused for what others sent in its name): whether this refusal is answered
    /// with 429 instead, because that client id draws too many failures (per process).
    pub fn claimed_client_refusal(&self, client: &str) -> Option<Limited> {
        let key = self.claimed_hasher.hash_one(client);
        self.claimed
            .check(key, Instant::now())
            .err()
            .map(|wait| Limited {
                retry_after_seconds: retry_after_seconds(wait),
            })
    }
}

/// The most characters of a failure's note (callers pass a short JSON object of excerpts).
const MAX_NOTE_CHARS: usize = 8 * EXCERPT_CHARS;

/// The in-memory maps keep at least this many entries (one or two per shard).
const SHARD_FLOOR: usize = 64;

/// The aggregated audit record of one finished minute of failures, or none for counters that
/// are not audited (registrations).
pub fn failure_record(count: &WindowCount) -> Option<NewAuditEvent> {
    let action = Limit::audit_action(&count.limit)?;
    let minute: DateTime<Utc> = Utc.timestamp_opt(count.window_start, 0).single()?;
    Some(NewAuditEvent {
        occurred_at: minute,
        actor: Actor::Anonymous,
        action,
        subject_type: "client_address",
        subject_id: Some(count.key.clone()),
        request_id: None,
        details: serde_json::json!({
            "source": count.key,
            "minute": minute.to_rfc3339(),
            "count": count.hits,
            "last": count.note.as_deref().map(|note| {
                serde_json::from_str::<serde_json::Value>(note)
                    .unwrap_or_else(|_| serde_json::Value::String(note.to_owned()))
            }),
        }),
    })
}

/// Flushes every minute that ended before `now`: failure counters become aggregated audit
/// records, and all finished counters are removed. Returns how many counters were flushed.
pub fn flush_finished(
    store: &dyn RateLimitStore,
    now: DateTime<Utc>,
) -> Result<usize, RepositoryError> {
    let current = now.timestamp() - now.timestamp().rem_euclid(WINDOW_SECONDS);
    let mut total = 0;
    loop {
        let flushed = store.flush_windows(current, &failure_record)?;
        total += flushed;
        if flushed == 0 {
            return Ok(total);
        }
    }
}

/// The server's periodic flush: a thread that flushes finished minutes every `interval`.
#[derive(Debug)]
pub struct Flusher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(
        store: Arc<dyn RateLimitStore>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rate-limit-flush".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    if let Err(error) = flush_finished(store.as_ref(), clock.now()) {
                        tracing::warn!(error = %error, "flushing rate-limit counters failed; retrying");
                    }
                    let started = Instant::now();
                    while started.elapsed() < interval && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(interval.min(Duration::from_millis(50)));
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    /// Stops the thread; it is not waited for (it may be inside a database call that a
    /// vanished database makes slow), and it exits at its next check of the flag.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
