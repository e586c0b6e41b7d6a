//! The audit trail: append-only events, written in the same transaction as the change they
//! record, then sealed into a hash chain and a Merkle tree by the sequencer.
//!
//! Why a sequencer: on PostgreSQL a `BIGSERIAL` is handed out when a row is inserted, not when
//! it commits, so a reader paging by `seq` can pass number 41 while 41's transaction is still
//! open and never see it. Writers therefore insert unsealed rows (no position) and never wait
//! for one another; one sequencer at a time (the holder of a PostgreSQL advisory lock, or the
//! in-process write lock on SQLite) gives the rows it can see the next positions, in one
//! transaction, and readers only ever read sealed rows by position. A late commit simply gets
//! a later position, so no reader skips a record and the chain never forks.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use gateway_domain::audit::{canonical, chain_hash, hex, unhex};
use gateway_domain::merkle::{leaf_hash, right_edge, Appender, Hash, NodeId, Sha256};
use gateway_domain::{
    AuditEvent, AuditFilter, AuditKey, AuditRepository, Checkpoint, NewAuditEvent, RepositoryError,
    SealedRecord,
};

use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time, AuditRow, NewAuditRow};
use crate::schema::{audit_checkpoints, audit_events, audit_keys, audit_tree};

/// The advisory lock the sequencer holds while it seals (any stable number of our own).
const SEQUENCER_LOCK: i64 = 0x6761_7465_7761_7931;

/// SHA-256 for the chain and the tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Hasher;

impl Sha256 for Sha256Hasher {
    fn sha256(&self, parts: &[&[u8]]) -> Hash {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the sequencer lock for this transaction, if no other process holds it.
fn try_sequencer_lock(conn: &mut DbConnection) -> Result<bool, TxError> {
    match conn {
        DbConnection::Postgres(c) => {
            let row: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<BigInt, _>(SEQUENCER_LOCK)
                .get_result(c)?;
            Ok(row.locked)
        }
        // One writer at a time already (the in-process write lock, then SQLite's own).
        DbConnection::Sqlite(_) => Ok(true),
    }
}

fn corrupt(what: String) -> TxError {
    TxError::Domain(RepositoryError::Corrupt(what))
}

fn load_nodes(conn: &mut DbConnection, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, TxError> {
    let mut out = HashMap::new();
    // A handful per call (a right edge, a proof): one small query per level keeps it portable.
    let mut by_level: HashMap<u32, Vec<i64>> = HashMap::new();
    for (level, idx) in ids {
        by_level
            .entry(*level)
            .or_default()
            .push(i64::try_from(*idx).unwrap_or(i64::MAX));
    }
    for (level, idxs) in by_level {
        let rows: Vec<(i64, String)> = audit_tree::table
            .filter(audit_tree::level.eq(i32::try_from(level).unwrap_or(i32::MAX)))
            .filter(audit_tree::idx.eq_any(&idxs))
            .select((audit_tree::idx, audit_tree::hash))
            .load(conn)?;
        for (idx, hash) in rows {
            let hash = unhex(&hash).ok_or_else(|| {
                corrupt(format!("audit tree node ({level}, {idx}) is not a hash"))
            })?;
            out.insert((level, u64::try_from(idx).unwrap_or(0)), hash);
        }
    }
    Ok(out)
}

fn sealed_head_in(conn: &mut DbConnection) -> Result<(i64, Option<String>), TxError> {
    let last: Option<(Option<i64>, Option<String>)> = audit_events::table
        .filter(audit_events::log_position.is_not_null())
        .order(audit_events::log_position.desc())
        .select((audit_events::log_position, audit_events::hash))
        .first(conn)
        .optional()?;
    Ok(match last {
        Some((Some(position), hash)) => (position + 1, hash),
        _ => (0, None),
    })
}

/// Inserts `event` as part of the caller's transaction.
pub(crate) fn append_event(conn: &mut DbConnection, event: &NewAuditEvent) -> Result<(), TxError> {
    diesel::insert_into(audit_events::table)
        .values(NewAuditRow::from_event(event))
        .execute(conn)?;
    Ok(())
}

impl AuditRepository for Database {
    fn append(&self, event: &NewAuditEvent) -> Result<AuditEvent, RepositoryError> {
        self.write(|conn| {
            let row = NewAuditRow::from_event(event);
            diesel::insert_into(audit_events::table)
                .values(&row)
                .execute(conn)?;
            let stored: AuditRow = audit_events::table
                .filter(audit_events::id.eq(&row.id))
                .select(AuditRow::as_select())
                .first(conn)?;
            Ok(AuditEvent::try_from(stored)?)
        })
    }

    fn append_all(&self, events: &[NewAuditEvent]) -> Result<(), RepositoryError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewAuditRow> = events.iter().map(NewAuditRow::from_event).collect();
        self.write(|conn| {
            crate::dialect::insert_audit_rows(conn, &rows)?;
            Ok(())
        })
    }

    fn seal(&self, hasher: &dyn Sha256, limit: i64) -> Result<usize, RepositoryError> {
        self.write(|conn| {
            if !try_sequencer_lock(conn)? {
                return Ok(0);
            }
            let rows: Vec<AuditRow> = audit_events::table
                .filter(audit_events::log_position.is_null())
                .order(audit_events::seq.asc())
                .limit(limit)
                .select(AuditRow::as_select())
                .load(conn)?;
            if rows.is_empty() {
                return Ok(0);
            }
            let (size, last_hash) = sealed_head_in(conn)?;
            let mut prev = match last_hash {
                Some(text) => unhex(&text).ok_or_else(|| {
                    corrupt(format!("audit record {} has no valid hash", size - 1))
                })?,
                None => [0; 32],
            };
            let size_u = u64::try_from(size).unwrap_or(0);
            let edge = load_nodes(conn, &right_edge(size_u))?;
            if edge.len() != right_edge(size_u).len() {
                return Err(corrupt(format!(
                    "the audit tree lacks nodes on the right edge of size {size}"
                )));
            }
            let mut tree = Appender::new(size_u, &edge);
            let mut nodes: Vec<(i32, i64, String)> = Vec::new();
            let mut seals = Vec::with_capacity(rows.len());
            let sealed = rows.len();
            for (offset, row) in rows.into_iter().enumerate() {
                let position = size + i64::try_from(offset).unwrap_or(i64::MAX);
                let seq = row.seq;
                let mut event = AuditEvent::try_from(row)?;
                event.position = Some(position);
                let bytes = canonical(position, &event);
                let hash = chain_hash(hasher, &prev, &bytes);
                seals.push(crate::dialect::Seal {
                    seq,
                    position,
                    prev_hash: hex(&prev),
                    hash: hex(&hash),
                });
                for ((level, idx), node) in tree.push(hasher, leaf_hash(hasher, &bytes)) {
                    nodes.push((
                        i32::try_from(level).unwrap_or(i32::MAX),
                        i64::try_from(idx).unwrap_or(i64::MAX),
                        hex(&node),
                    ));
                }
                prev = hash;
            }
            crate::dialect::apply_seals(conn, &seals)?;
            crate::dialect::insert_tree_nodes(conn, &nodes)?;
            Ok(sealed)
        })
    }

    fn sealed_head(&self) -> Result<(i64, Option<String>), RepositoryError> {
        self.single(sealed_head_in)
    }

    fn sealed_records(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SealedRecord>, RepositoryError> {
        let rows: Vec<AuditRow> = self.single(|conn| {
            let mut query = audit_events::table
                .filter(audit_events::log_position.is_not_null())
                .order(audit_events::log_position.asc())
                .limit(limit)
                .select(AuditRow::as_select())
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(audit_events::log_position.gt(after));
            }
            if let Some(org) = &filter.organisation {
                query = query.filter(audit_events::organisation_id.eq(org.clone()));
            }
            if let Some(actor) = &filter.actor {
                query = query.filter(audit_events::actor_id.eq(actor.clone()));
            }
            if let Some(action) = &filter.action {
                query = query.filter(audit_events::action.eq(action.clone()));
            }
            if let Some(from) = filter.from {
                query = query.filter(audit_events::occurred_at.ge(to_db_time(from)));
            }
            if let Some(to) = filter.to {
                query = query.filter(audit_events::occurred_at.lt(to_db_time(to)));
            }
            Ok(query.load(conn)?)
        })?;
        rows.into_iter()
            .map(|row| {
                let hash = row.hash.clone().unwrap_or_default();
                let organisation_id = row.organisation_id.clone();
                Ok(SealedRecord {
                    event: AuditEvent::try_from(row)?,
                    hash,
                    organisation_id,
                })
            })
            .collect()
    }

    fn tree_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, RepositoryError> {
        self.single(|conn| load_nodes(conn, ids))
    }

    fn add_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        public_jwk: &serde_json::Value,
        key_mac: &str,
    ) -> Result<(), RepositoryError> {
        self.write(|conn| {
            let known: i64 = audit_keys::table
                .filter(audit_keys::kid.eq(&checkpoint.kid))
                .count()
                .get_result(conn)?;
            if known == 0 {
                diesel::insert_into(audit_keys::table)
                    .values((
                        audit_keys::kid.eq(&checkpoint.kid),
                        audit_keys::public_jwk.eq(public_jwk.to_string()),
                        audit_keys::mac.eq(key_mac),
                        audit_keys::first_used_at.eq(to_db_time(checkpoint.signed_at)),
                    ))
                    .execute(conn)?;
            }
            let exists: i64 = audit_checkpoints::table
                .filter(audit_checkpoints::tree_size.eq(checkpoint.tree_size))
                .count()
                .get_result(conn)?;
            if exists == 0 {
                diesel::insert_into(audit_checkpoints::table)
                    .values((
                        audit_checkpoints::tree_size.eq(checkpoint.tree_size),
                        audit_checkpoints::root_hash.eq(&checkpoint.root_hash),
                        audit_checkpoints::chain_hash.eq(&checkpoint.chain_hash),
                        audit_checkpoints::signed_at.eq(to_db_time(checkpoint.signed_at)),
                        audit_checkpoints::kid.eq(&checkpoint.kid),
                        audit_checkpoints::jws.eq(&checkpoint.jws),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, RepositoryError> {
        let rows: Vec<(i64, String, String, NaiveDateTime, String, String)> =
            self.single(|conn| {
                Ok(audit_checkpoints::table
                    .order(audit_checkpoints::tree_size.asc())
                    .select((
                        audit_checkpoints::tree_size,
                        audit_checkpoints::root_hash,
                        audit_checkpoints::chain_hash,
                        audit_checkpoints::signed_at,
                        audit_checkpoints::kid,
                        audit_checkpoints::jws,
                    ))
                    .load(conn)?)
            })?;
        Ok(rows
            .into_iter()
            .map(
                |(tree_size, root_hash, chain_hash, signed_at, kid, jws)| Checkpoint {
                    tree_size,
                    root_hash,
                    chain_hash,
                    signed_at: from_db_time(signed_at),
                    kid,
                    jws,
                },
            )
            .collect())
    }

    fn audit_keys(&self) -> Result<Vec<AuditKey>, RepositoryError> {
        let rows: Vec<(String, String, String)> = self.single(|conn| {
            Ok(audit_keys::table
                .order(audit_keys::first_used_at.asc())
                .select((audit_keys::kid, audit_keys::public_jwk, audit_keys::mac))
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|(kid, jwk, mac)| {
                serde_json::from_str(&jwk)
                    .map(|jwk| AuditKey {
                        kid: kid.clone(),
                        jwk,
                        mac,
                    })
                    .map_err(|e| RepositoryError::Corrupt(format!("audit key {kid}: {e}")))
            })
            .collect()
    }

    fn list_events(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, RepositoryError> {
        let rows: Vec<AuditRow> = self.read(|conn| {
            Ok(audit_events::table
                .filter(audit_events::seq.gt(after))
                .order(audit_events::seq.asc())
                .limit(limit)
                .select(AuditRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }

    fn events_about(
        &self,
        subject_type: &str,
        subject_id: &str,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, RepositoryError> {
        // Served by the index on (subject_type, subject_id).
        let rows: Vec<AuditRow> = self.single(|conn| {
            Ok(audit_events::table
                .filter(audit_events::subject_type.eq(subject_type))
                .filter(audit_events::subject_id.eq(subject_id))
                .order(audit_events::seq.asc())
                .limit(limit)
                .select(AuditRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(AuditEvent::try_from).collect()
    }
}
