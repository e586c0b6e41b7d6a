//! The directory's use cases: the publisher applies batches of changes; partners page through
//! a snapshot of their view and then follow the change feed.

use std::sync::Arc;

use crate::agreement::OdsSelection;
use crate::audit::AuditAction;
use crate::clock::Clock;
use crate::directory::{
    AddressBookView, BatchOutcome, DirectoryBatch, EntryId, FeedItem, OperationForm,
};
use crate::ports::{Conflict, DirectoryRepository, IdempotentAnswer, RepositoryError};
use crate::validation::{FieldError, ValidationErrors};

use super::{Context, ServiceError, ServiceResult};

/// How many changes one sequencer transaction positions.
pub const SEQUENCE_BATCH: i64 = 20_000;

/// How many change rows one purge transaction removes.
const PURGE_BATCH: i64 = 10_000;

/// Where a partner's sync stands (what its cursor holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPosition {
    /// No cursor: a snapshot from the beginning.
    Start,
    /// Within a snapshot that began when the feed's head was `head`, after entry `after`.
    Snapshot { head: i64, after: EntryId },
    /// Following the feed, after position `after`.
    Feed { after: i64 },
}

/// One page for a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPage {
    pub items: Vec<FeedItem>,
    /// Where the next page starts.
    pub next: SyncPosition,
    /// More items are waiting now (ask again at once).
    pub has_more: bool,
    /// The first page of a snapshot: discard any local copy.
    pub reset: bool,
    /// The feed positions this page covers (`from` exclusive, `to` inclusive), for the
    /// disclosure record; for snapshot pages, the head the snapshot continues from.
    pub from: i64,
    pub to: i64,
}

/// A publisher request's answer, and whether it is a replay of a stored one.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub answer: serde_json::Value,
    pub replayed: bool,
}

/// The key a publisher sent with a batch, bound to who sent it and to the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub request_sha256: String,
}

/// How far one page may scan (see `DirectoryService::page_within`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanWindows {
    /// Entries (of any organisation) one snapshot page of a narrow view reads at most.
    pub entries: i64,
    /// Feed positions one page reads at most.
    pub positions: i64,
}

impl Default for ScanWindows {
    fn default() -> Self {
        Self {
            entries: 50_000,
            positions: 100_000,
        }
    }
}

#[derive(Clone)]
pub struct DirectoryService {
    pub directory: Arc<dyn DirectoryRepository>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DirectoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryService").finish_non_exhaustive()
    }
}

fn key_reused() -> ServiceError {
    ServiceError::Invalid(ValidationErrors(vec![FieldError::new(
        "Idempotency-Key",
        "idempotency_key_reused",
        "this key was used with a different request body; use a new key for a new batch",
    )]))
}

fn outcome_json(operations: usize, outcome: &BatchOutcome) -> serde_json::Value {
    serde_json::json!({
        "operations": operations,
        "upserted": outcome.upserted,
        "deleted": outcome.deleted,
        "unchanged": outcome.unchanged,
    })
}

impl DirectoryService {
    fn stored(&self, key: &IdempotencyKey) -> ServiceResult<Option<Published>> {
        match self.directory.idempotent_answer(&key.scope, &key.key)? {
            Some(stored) if stored.request_sha256 == key.request_sha256 => Ok(Some(Published {
                answer: stored.answer,
                replayed: true,
            })),
            Some(_) => Err(key_reused()),
            None => Ok(None),
        }
    }

    /// Applies one batch, all or nothing, then positions what is waiting. With a key, a retry
    /// of the same body gets the first answer and changes nothing.
    pub fn publish(
        &self,
        ctx: &Context,
        forms: &[OperationForm],
        key: Option<&IdempotencyKey>,
    ) -> ServiceResult<Published> {
        if let Some(key) = key {
            if let Some(replay) = self.stored(key)? {
                return Ok(replay);
            }
        }
        let batch = DirectoryBatch::parse(forms)?;
        let now = self.clock.now();
        let operations = forms.len();
        let make = |outcome: &BatchOutcome| {
            let answer = outcome_json(operations, outcome);
            let mut details = answer.clone();
            details["idempotency_key"] = serde_json::json!(key.map(|k| k.key.clone()));
            let event = ctx.event(
                now,
                AuditAction::DirectoryChanged,
                "directory",
                "national".to_owned(),
                details,
            );
            let stored = key.map(|k| IdempotentAnswer {
                scope: k.scope.clone(),
                key: k.key.clone(),
                request_sha256: k.request_sha256.clone(),
                answer: answer.clone(),
            });
            (event, stored)
        };
        let outcome = match self.directory.apply_changes(&batch.operations, now, &make) {
            Ok(outcome) => outcome,
            Err(RepositoryError::Conflict(Conflict::EmailTaken(email))) => {
                let index =
                    batch
                        .operations
                        .iter()
                        .zip(&batch.indexes)
                        .find_map(|(op, i)| match op {
                            crate::directory::DirectoryOperation::Upsert(e)
                                if e.email.as_str().eq_ignore_ascii_case(&email) =>
                            {
                                Some(*i)
                            }
                            _ => None,
                        });
                return Err(ServiceError::Invalid(ValidationErrors(vec![
                    FieldError::new(
                        format!("operations[{}].entry.email", index.unwrap_or(0)),
                        "email_unique",
                        "another directory entry has this email address",
                    ),
                ])));
            }
            Err(RepositoryError::Conflict(Conflict::Unique { constraint }))
                if key.is_some() && constraint.contains("idempotency_keys") =>
            {
                // A concurrent retry with the same key committed first: its answer stands.
                if let Some(replay) = key.map(|k| self.stored(k)).transpose()?.flatten() {
                    return Ok(replay);
                }
                return Err(ServiceError::Storage(RepositoryError::Conflict(
                    Conflict::Unique {
                        constraint: "idempotency".into(),
                    },
                )));
            }
            Err(other) => return Err(other.into()),
        };
        // Position the new changes now rather than at the server's next sequencer tick; a
        // sequencer busy elsewhere will pick them up.
        let _ = self.directory.sequence_changes(SEQUENCE_BATCH);
        Ok(Published {
            answer: outcome_json(operations, &outcome),
            replayed: false,
        })
    }

    /// Positions every committed change that waits for a position (the server runs this
    /// continuously; a command that published runs it before it exits).
    pub fn sequence_all(&self) -> ServiceResult<usize> {
        let mut total = 0;
        loop {
            let positioned = self.directory.sequence_changes(SEQUENCE_BATCH)?;
            total += positioned;
            if positioned < usize::try_from(SEQUENCE_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }

    /// One page of `view` from `position`. Refused with `Gone` when the changes the cursor
    /// needs were purged (or the feed was reset): the partner must resync from scratch.
    pub fn page(
        &self,
        view: &AddressBookView,
        position: SyncPosition,
        limit: i64,
    ) -> ServiceResult<SyncPage> {
        self.page_within(view, position, limit, ScanWindows::default())
    }

    /// `page`, with the scan bounded by `windows`: a page of a view that covers a few
    /// organisations reads at most `windows.entries` entries or `windows.positions` feed
    /// positions, and may then hold fewer items than asked (even none) with `has_more`.
    pub fn page_within(
        &self,
        view: &AddressBookView,
        position: SyncPosition,
        limit: i64,
        windows: ScanWindows,
    ) -> ServiceResult<SyncPage> {
        let limit = limit.max(1);
        let full = usize::try_from(limit).unwrap_or(usize::MAX);
        match position {
            SyncPosition::Start | SyncPosition::Snapshot { .. } => {
                let now = self.directory.feed_head()?;
                let (head, after) = match position {
                    SyncPosition::Snapshot { head, after } => (head, Some(after)),
                    _ => (now.head, None),
                };
                if head < now.purged_through || head > now.head {
                    return Err(ServiceError::Gone);
                }
                // Every organisation: nearly every entry scanned is served, no bound needed.
                let bound = match view.organisations {
                    OdsSelection::All => None,
                    OdsSelection::Only(_) => {
                        self.directory.entry_scan_bound(after, windows.entries)?
                    }
                };
                let entries =
                    self.directory
                        .entries_page(&view.organisations, after, bound, limit)?;
                let next = match (entries.last(), bound) {
                    (Some(last), _) if entries.len() == full => SyncPosition::Snapshot {
                        head,
                        after: last.id,
                    },
                    (_, Some(bound)) => SyncPosition::Snapshot { head, after: bound },
                    _ => SyncPosition::Feed { after: head },
                };
                let has_more = matches!(next, SyncPosition::Snapshot { .. }) || now.head > head;
                Ok(SyncPage {
                    items: entries.into_iter().map(FeedItem::Upsert).collect(),
                    next,
                    has_more,
                    reset: after.is_none(),
                    from: head,
                    to: head,
                })
            }
            SyncPosition::Feed { after } => {
                let through = after.saturating_add(windows.positions.max(1));
                let page =
                    self.directory
                        .changes_after(&view.organisations, after, through, limit + 1)?;
                if after < page.head.purged_through || after > page.head.head {
                    return Err(ServiceError::Gone);
                }
                let more_rows = page.changes.len() > full;
                let mut changes = page.changes;
                changes.truncate(full);
                let to = match changes.last() {
                    Some((last, _)) if more_rows => last.position,
                    _ => page.head.head.min(through),
                };
                let items = changes
                    .into_iter()
                    .filter_map(|(change, now)| view.item(&change, now))
                    .collect();
                Ok(SyncPage {
                    items,
                    next: SyncPosition::Feed { after: to },
                    has_more: to < page.head.head,
                    reset: false,
                    from: after,
                    to,
                })
            }
        }
    }

    /// Purges changes and tombstones older than `retention_days`, and idempotent answers
    /// older than `answer_days`, in short transactions; returns the change rows purged.
    pub fn purge(&self, retention_days: i64, answer_days: i64) -> ServiceResult<usize> {
        let now = self.clock.now();
        let before = now - chrono::Duration::days(retention_days);
        let mut total = 0;
        loop {
            let purged = self.directory.purge_changes(before, PURGE_BATCH)?;
            total += purged;
            if purged < usize::try_from(PURGE_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        self.directory
            .purge_answers(now - chrono::Duration::days(answer_days))?;
        Ok(total)
    }
}
