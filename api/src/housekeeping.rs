//! Housekeeping the server does in the background: the client-assertion replay cache is
//! purged continuously (every `auth.replay_purge_interval_seconds`, in bounded batches), so it
//! never waits for an operator to run `maintenance`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gateway_domain::{Clock, ReplayCache, RepositoryError};

/// The most replay-cache entries one purge statement deletes: each batch is its own short
/// write, so a large backlog never holds the store's write lock (SQLite) for long.
pub const REPLAY_PURGE_BATCH: usize = 1_000;

/// Purges every replay-cache entry expired at `now`, batch by batch, until a batch comes
/// back short. Returns how many went.
pub fn purge_replay_cache(
    cache: &dyn ReplayCache,
    now: DateTime<Utc>,
) -> Result<usize, RepositoryError> {
    let mut total = 0;
    loop {
        let purged = cache.purge_expired(now, REPLAY_PURGE_BATCH)?;
        total += purged;
        if purged < REPLAY_PURGE_BATCH {
            return Ok(total);
        }
    }
}

/// The server's replay-cache purger: a thread that purges every `interval` until dropped.
#[derive(Debug)]
pub struct ReplayPurger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends.
    done: Option<mpsc::Receiver<()>>,
}

/// How long a dropped purger waits for its thread (which may be inside a database call).
const DROP_WAIT: Duration = Duration::from_secs(3);

impl ReplayPurger {
    /// A zero `interval` starts nothing (another replica purges, or `maintenance` does).
    pub fn start(cache: Arc<dyn ReplayCache>, clock: Arc<dyn Clock>, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if interval.is_zero() {
            tracing::warn!(
                "auth.replay_purge_interval_seconds is 0: this process purges no replay-cache entries"
            );
            return Self {
                stop,
                thread: None,
                done: None,
            };
        }
        let flag = stop.clone();
        let (alive, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("replay-purger".to_owned())
            .spawn(move || {
                let _alive = alive;
                while !flag.load(Ordering::Relaxed) {
                    // Sleep in short steps, so a stop is noticed at once.
                    let started = Instant::now();
                    while started.elapsed() < interval && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(interval.min(Duration::from_millis(50)));
                    }
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match purge_replay_cache(cache.as_ref(), clock.now()) {
                        Ok(0) => {}
                        Ok(purged) => tracing::debug!(purged, "purged expired replay-cache entries"),
                        Err(error) => {
                            tracing::warn!(error = %error, "purging the replay cache failed; retrying at the next interval")
                        }
                    }
                }
            })
            .map_err(|error| tracing::error!(error = %error, "could not start the replay-cache purger"))
            .ok();
        Self {
            stop,
            thread,
            done: Some(done),
        }
    }
}

impl Drop for ReplayPurger {
    /// Stops the thread and waits for it, but not for ever: a thread stuck in a database call
    /// longer than `DROP_WAIT` is left to finish on its own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let finished = self.done.take().is_some_and(|done| {
            matches!(
                done.recv_timeout(DROP_WAIT),
                Err(mpsc::RecvTimeoutError::Disconnected)
            )
        });
        if let (true, Some(thread)) = (finished, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A replay cache holding `expired` entries, recording the limit of each purge.
    struct Backlog {
        expired: Mutex<usize>,
        calls: Mutex<Vec<usize>>,
    }

    impl ReplayCache for Backlog {
        fn remember(
            &self,
            _: &str,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<bool, RepositoryError> {
            Ok(true)
        }
        fn purge_expired(&self, _: DateTime<Utc>, limit: usize) -> Result<usize, RepositoryError> {
            self.calls.lock().unwrap().push(limit);
            let mut expired = self.expired.lock().unwrap();
            let purged = (*expired).min(limit);
            *expired -= purged;
            Ok(purged)
        }
        fn record_issuances(
            &self,
            issuances: &[gateway_domain::Issuance],
            _: DateTime<Utc>,
        ) -> Result<Vec<bool>, RepositoryError> {
            Ok(vec![true; issuances.len()])
        }
    }

    #[test]
    fn a_backlog_is_purged_in_bounded_batches_until_one_comes_back_short() {
        for (backlog, batches) in [(0, 1), (999, 1), (1_000, 2), (2_500, 3)] {
            let cache = Backlog {
                expired: Mutex::new(backlog),
                calls: Mutex::new(Vec::new()),
            };
            assert_eq!(purge_replay_cache(&cache, Utc::now()).unwrap(), backlog);
            let calls = cache.calls.lock().unwrap();
            assert_eq!(calls.len(), batches, "{backlog}");
            assert!(calls.iter().all(|limit| *limit == REPLAY_PURGE_BATCH));
            assert_eq!(*cache.expired.lock().unwrap(), 0);
        }
    }
}
