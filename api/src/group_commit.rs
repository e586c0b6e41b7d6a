//! Group commit: concurrent callers' writes go into one transaction, and each caller is
//! answered only once the transaction holding its write has committed. Nothing acknowledged
//! is ever less durable than a write of its own (PostgreSQL's `synchronous_commit` is never
//! relaxed); what is saved is the per-write BEGIN, COMMIT, pool checkout and, on PostgreSQL,
//! the flush each commit waits for.
//!
//! A few committer threads take turns at the queue: each takes what is waiting (at most
//! `max_batch`, never waiting for more), commits it, answers, and takes the next. With one
//! committer (SQLite: one writer at a time anyway) a batch forms while the previous one
//! commits; with several (PostgreSQL) one batch can be built while another waits for its flush.

use std::sync::{mpsc, Arc, Mutex};

use gateway_domain::RepositoryError;

type Ack<R> = tokio::sync::oneshot::Sender<Result<R, RepositoryError>>;

/// A write queue whose items are committed in groups by `commit`.
pub struct GroupCommit<T, R> {
    queue: mpsc::Sender<(T, Ack<R>)>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

/// The same failure for every caller of a failed group, keeping its kind (worth retrying or
/// not); the cause chain is logged once, where the group failed.
fn shared(error: &RepositoryError) -> RepositoryError {
    let cause = || std::io::Error::other(error.to_string()).into();
    match error {
        RepositoryError::NotFound => RepositoryError::NotFound,
        RepositoryError::VersionMismatch { current } => {
            RepositoryError::VersionMismatch { current: *current }
        }
        RepositoryError::Conflict(conflict) => RepositoryError::Conflict(conflict.clone()),
        RepositoryError::Unavailable(_) => RepositoryError::Unavailable(cause()),
        RepositoryError::Internal(_) => RepositoryError::Internal(cause()),
        RepositoryError::Corrupt(what) => RepositoryError::Corrupt(what.clone()),
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts `committers` threads named `name` that commit up to `max_batch` queued items at
    /// a time with `commit`, which MUST return one outcome per item, in order, or fail as a
    /// whole (nothing of the group committed). The threads end when every handle is dropped.
    pub fn start<F>(name: &str, committers: usize, max_batch: usize, commit: F) -> Self
    where
        F: Fn(Vec<T>) -> Result<Vec<R>, RepositoryError> + Send + Sync + 'static,
    {
        let (queue, inbox) = mpsc::channel::<(T, Ack<R>)>();
        let inbox = Arc::new(Mutex::new(inbox));
        let commit = Arc::new(commit);
        for n in 0..committers.max(1) {
            let (inbox, commit) = (inbox.clone(), commit.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    while let Some(group) = take_group(&inbox, max_batch.max(1)) {
                        let (items, acks): (Vec<T>, Vec<Ack<R>>) = group.into_iter().unzip();
                        let count = items.len();
                        match commit(items) {
                            Ok(outcomes) if outcomes.len() == count => {
                                for (ack, outcome) in acks.into_iter().zip(outcomes) {
                                    let _ = ack.send(Ok(outcome));
                                }
                            }
                            Ok(outcomes) => {
                                tracing::error!(
                                    count,
                                    answered = outcomes.len(),
                                    "a group commit answered the wrong number of outcomes"
                                );
                                for ack in acks {
                                    let _ = ack.send(Err(RepositoryError::Internal(
                                        std::io::Error::other("group commit outcome count").into(),
                                    )));
                                }
                            }
                            Err(error) => {
                                tracing::error!(error = ?error, count, "a group commit failed");
                                for ack in acks {
                                    let _ = ack.send(Err(shared(&error)));
                                }
                            }
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(error = %error, "could not start a group committer");
            }
        }
        Self { queue }
    }

    /// Queues `item`; resolves with its outcome once the group holding it has committed.
    pub async fn submit(&self, item: T) -> Result<R, RepositoryError> {
        let stopped = || {
            RepositoryError::Unavailable(
                std::io::Error::other("the group committer stopped").into(),
            )
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        self.queue.send((item, ack)).map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

/// Waits for the first item, then takes whatever else is already queued (up to `max`).
/// `None` once every sender is gone.
fn take_group<T>(inbox: &Mutex<mpsc::Receiver<T>>, max: usize) -> Option<Vec<T>> {
    let inbox = inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let first = inbox.recv().ok()?;
    let mut group = Vec::with_capacity(max.min(64));
    group.push(first);
    while group.len() < max {
        match inbox.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    Some(group)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_caller_gets_its_own_outcome_and_waits_for_its_group() {
        let groups = Arc::new(Mutex::new(Vec::<usize>::new()));
        let seen = groups.clone();
        let committer = GroupCommit::start("test-commit", 2, 8, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(items.into_iter().map(|i| i * 2).collect())
        });
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let committer = committer.clone();
                tokio::spawn(async move { (i, committer.submit(i).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, doubled) = call.await.unwrap();
            assert_eq!(doubled, i * 2);
        }
        let groups = groups.lock().unwrap();
        assert_eq!(groups.iter().sum::<usize>(), 200);
        assert!(groups.iter().all(|n| (1..=8).contains(n)), "{groups:?}");
        // Callers that queued while a commit ran shared the next one.
        assert!(groups.len() < 200, "{} groups for 200 items", groups.len());
    }

    #[tokio::test]
    async fn a_failed_group_fails_each_of_its_callers_with_the_same_kind() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let committer = GroupCommit::start("test-fail", 1, 4, move |_: Vec<u8>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err::<Vec<()>, _>(RepositoryError::Unavailable(
                std::io::Error::other("down").into(),
            ))
        });
        let outcome = committer.submit(1).await;
        assert!(
            matches!(outcome, Err(RepositoryError::Unavailable(_))),
            "{outcome:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1);

        let short = GroupCommit::start("test-short", 1, 4, |_: Vec<u8>| Ok(Vec::<()>::new()));
        assert!(matches!(
            short.submit(1).await,
            Err(RepositoryError::Internal(_))
        ));
    }
}
