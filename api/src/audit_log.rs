//! Running the audit trail: the sequencer that seals committed records (continuously in the
//! server; once before exit in commands that wrote records), signed checkpoints of the head,
//! and the group-commit recorder that data endpoints use to record disclosures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use gateway_domain::audit::hex;
use gateway_domain::merkle::Sha256;
use gateway_domain::services::directory::DirectoryService;
use gateway_domain::services::Services;
use gateway_domain::{AuditRepository, Checkpoint, NewAuditEvent, RepositoryError};

use anyhow::Context;

use crate::auth::checkpoint::{AuditKeyRing, KeysVerifier};
use crate::auth::signing::SigningKeys;
use crate::group_commit::GroupCommit;

/// How many records one sealing transaction takes at most. Small, so that on SQLite (one
/// writer at a time) token issuances and other writes get the write lock between two sealing
/// transactions instead of queueing behind one long one: a seal of 5,000 records held it for
/// tens of milliseconds, which showed as the token endpoint's p99.
pub const SEAL_BATCH: i64 = 200;

/// Seals until nothing committed is left unsealed (or another process holds the sequencer).
/// Returns how many this call sealed.
pub fn seal_all(
    audit: &dyn AuditRepository,
    hasher: &dyn Sha256,
) -> Result<usize, RepositoryError> {
    let mut total = 0;
    loop {
        let sealed = audit.seal(hasher, SEAL_BATCH)?;
        total += sealed;
        if (sealed as i64) < SEAL_BATCH {
            return Ok(total);
        }
        // Let a writer waiting for the lock go first.
        std::thread::yield_now();
    }
}

/// Signs and stores a checkpoint of the sealed head, if it grew since the last one. Before it
/// signs, the last checkpoint's signature must verify with a trusted key and its signed root
/// must still be the root of that many records: a trail rewritten underneath is never signed
/// over (the refusal is logged as an error for the operators).
pub fn checkpoint(
    services: &Services,
    signing: &SigningKeys,
    ring: &AuditKeyRing,
) -> anyhow::Result<Option<Checkpoint>> {
    let head = services.tree_head()?;
    let previous = services.audit.checkpoints()?.into_iter().last();
    if head.size == 0 || previous.as_ref().is_some_and(|c| c.tree_size >= head.size) {
        return Ok(None);
    }
    let (previous_size, previous_root) = match &previous {
        None => (0, None),
        Some(previous) => {
            let verifier = KeysVerifier::new(ring.trusted(services.audit.audit_keys()?));
            let signed = verifier.claims(&previous.jws).context(
                "the last audit checkpoint does not verify with a trusted key: not signing over it",
            )?;
            let root_then = hex(&services.stored_root(signed.tree_size)?);
            anyhow::ensure!(
                root_then == signed.root_hash,
                "the first {} audit records no longer have the root signed at {}: the trail was rewritten; not signing over it",
                signed.tree_size,
                signed.signed_at
            );
            (signed.tree_size, Some(signed.root_hash))
        }
    };
    let signed_at = Utc::now();
    let payload = serde_json::json!({
        "iss": signing.issuer(),
        "tree_size": head.size,
        "root_hash": hex(&head.root),
        "chain_hash": hex(&head.chain_hash),
        "previous_tree_size": previous_size,
        "previous_root_hash": previous_root,
        "iat": signed_at.timestamp(),
    });
    let (jws, kid, jwk) = signing.sign_checkpoint(&payload)?;
    let checkpoint = Checkpoint {
        tree_size: head.size,
        root_hash: hex(&head.root),
        chain_hash: hex(&head.chain_hash),
        signed_at,
        kid: kid.clone(),
        jws,
    };
    services
        .audit
        .add_checkpoint(&checkpoint, &jwk, &ring.mac(&kid, &jwk))?;
    Ok(Some(checkpoint))
}

/// A verifier for stored checkpoints with the trusted audit keys.
pub fn stored_keys_verifier(
    services: &Services,
    ring: &AuditKeyRing,
) -> Result<KeysVerifier, RepositoryError> {
    Ok(KeysVerifier::new(
        ring.trusted(services.audit.audit_keys()?),
    ))
}

/// The server's sequencer: a thread that seals every `interval` and signs a checkpoint every
/// `checkpoint_every`, until stopped.
#[derive(Debug)]
pub struct Sequencer {
    stop: Arc<AtomicBool>,
    /// Whether to seal once more on the way out (a graceful stop; not when merely dropped).
    final_seal: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends.
    done: Option<mpsc::Receiver<()>>,
}

/// How long a dropped sequencer waits for its thread (which may be inside a database call).
const DROP_WAIT: Duration = Duration::from_secs(3);

impl Sequencer {
    /// A zero `interval` starts nothing (records then wait for another process's sequencer).
    /// With `directory`, the same thread also positions the directory's committed changes
    /// (the same mechanism, see `DirectoryRepository`).
    pub fn start(
        services: Services,
        directory: Option<DirectoryService>,
        signing: Arc<SigningKeys>,
        ring: AuditKeyRing,
        interval: Duration,
        checkpoint_every: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let final_seal = Arc::new(AtomicBool::new(false));
        if interval.is_zero() {
            tracing::warn!("audit.seal_interval_ms is 0: this process seals no audit records");
            return Self {
                stop,
                final_seal,
                thread: None,
                done: None,
            };
        }
        let flag = stop.clone();
        let seal_on_exit = final_seal.clone();
        let (alive, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("audit-sequencer".to_owned())
            .spawn(move || {
                let _alive = alive;
                let mut last_checkpoint = Instant::now() - checkpoint_every;
                while !flag.load(Ordering::Relaxed) {
                    if let Err(error) = seal_all(services.audit.as_ref(), services.hasher.as_ref()) {
                        tracing::warn!(error = %error, "sealing audit records failed; retrying");
                    }
                    if let Some(directory) = &directory {
                        if let Err(error) = directory.sequence_all() {
                            tracing::warn!(error = %error, "positioning directory changes failed; retrying");
                        }
                    }
                    if last_checkpoint.elapsed() >= checkpoint_every {
                        match checkpoint(&services, &signing, &ring) {
                            Ok(_) => last_checkpoint = Instant::now(),
                            Err(error) => {
                                tracing::error!(error = %format!("{error:#}"), "signing an audit checkpoint failed")
                            }
                        }
                    }
                    // Sleep in short steps, so a stop is noticed at once.
                    let started = Instant::now();
                    while started.elapsed() < interval && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(interval.min(Duration::from_millis(20)));
                    }
                }
                // A graceful stop seals what the last requests wrote before going.
                if seal_on_exit.load(Ordering::Relaxed) {
                    if let Some(directory) = &directory {
                        let _ = directory.sequence_all();
                    }
                    let _ = seal_all(services.audit.as_ref(), services.hasher.as_ref());
                }
            })
            .ok();
        Self {
            stop,
            final_seal,
            thread,
            done: Some(done),
        }
    }

    /// Stops after sealing what is left, and waits for that.
    pub fn stop(&mut self) {
        self.final_seal.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sequencer {
    /// Dropped without a graceful stop (the runtime went away): the thread stops without a
    /// final seal (whatever it left, the next sequencer seals). It is waited for, so it never
    /// outlives the process's teardown, but not for ever: a thread stuck in a database call
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

/// Records audit events with group commit ([`GroupCommit`]): concurrent callers' events go
/// into one transaction, and each caller is answered only once its event is committed.
/// Thousands of disclosures a second cost a few commits a second.
#[derive(Debug, Clone)]
pub struct AuditRecorder {
    events: GroupCommit<NewAuditEvent, ()>,
}

/// The most events one group commit takes.
const GROUP_MAX: usize = 1_000;

impl AuditRecorder {
    pub fn start(audit: Arc<dyn AuditRepository>) -> Self {
        let events = GroupCommit::start("audit-recorder", 1, GROUP_MAX, move |events| {
            audit.append_all(&events)?;
            Ok(vec![(); events.len()])
        });
        Self { events }
    }

    /// Records `event`; resolves once it is committed.
    pub async fn record(&self, event: NewAuditEvent) -> Result<(), crate::error::ApiError> {
        Ok(self.events.submit(event).await?)
    }
}
