//! The statements that differ between the backends, kept in one place. Everything else is
//! written once against `DbConnection`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::connection::DbConnection;
use crate::models::{DomainRow, NewAuditRow};
use crate::schema::{
    assertion_jtis, audit_events, audit_tree, organisation_domains, organisations,
    secure_email_domains,
};

/// Runs `$body` with `$c` bound to the backend's own connection type, for statements that
/// `MultiConnection` cannot express over both at once.
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConnection::Sqlite($c) => $body,
            DbConnection::Postgres($c) => $body,
        }
    };
}

/// Inserts `rows` in one statement: multi-row VALUES is not in the backends' common subset.
pub(crate) fn insert_domains(
    conn: &mut DbConnection,
    rows: &[DomainRow],
) -> Result<usize, DieselError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let insert = diesel::insert_into(organisation_domains::table).values(rows);
    per_backend!(conn, |c| insert.execute(c))
}

/// Inserts the accredited patterns in one statement.
pub(crate) fn insert_secure_domains(
    conn: &mut DbConnection,
    patterns: &[String],
    imported_at: NaiveDateTime,
) -> Result<usize, DieselError> {
    let rows: Vec<_> = patterns
        .iter()
        .map(|p| {
            (
                secure_email_domains::pattern.eq(p),
                secure_email_domains::imported_at.eq(imported_at),
            )
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let insert = diesel::insert_into(secure_email_domains::table).values(&rows);
    per_backend!(conn, |c| insert.execute(c))
}

/// Whether the organisation exists, locking its row until the transaction ends so that
/// concurrent changes of what hangs off it take turns (PostgreSQL; SQLite writers are
/// already serialised).
pub(crate) fn lock_organisation(conn: &mut DbConnection, id: &str) -> Result<bool, DieselError> {
    let query = organisations::table.find(id).select(organisations::id);
    let found: Option<String> = match conn {
        DbConnection::Postgres(c) => query.for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    Ok(found.is_some())
}

/// Inserts audit tree nodes `(level, idx, hash)` in statements of at most 1000 rows.
pub(crate) fn insert_tree_nodes(
    conn: &mut DbConnection,
    nodes: &[(i32, i64, String)],
) -> Result<usize, DieselError> {
    let mut inserted = 0;
    for chunk in nodes.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(level, idx, hash)| {
                (
                    audit_tree::level.eq(*level),
                    audit_tree::idx.eq(*idx),
                    audit_tree::hash.eq(hash),
                )
            })
            .collect();
        let insert = diesel::insert_into(audit_tree::table).values(&rows);
        inserted += per_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    Ok(inserted)
}

/// Inserts audit rows in statements of at most 500 rows (one group commit's worth).
pub(crate) fn insert_audit_rows(
    conn: &mut DbConnection,
    rows: &[NewAuditRow],
) -> Result<usize, DieselError> {
    let mut inserted = 0;
    for chunk in rows.chunks(500) {
        let insert = diesel::insert_into(audit_events::table).values(chunk);
        inserted += per_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    Ok(inserted)
}

/// A replay-cache row to insert: `(client_id, jti, expires_at)`.
pub(crate) type JtiRow<'a> = (
    diesel::dsl::Eq<assertion_jtis::client_id, &'a str>,
    diesel::dsl::Eq<assertion_jtis::jti, &'a str>,
    diesel::dsl::Eq<assertion_jtis::expires_at, NaiveDateTime>,
);

/// Inserts the pairs not recorded yet, in one statement, skipping (not failing on) those
/// already there, also when another replica inserted them a moment ago; returns the pairs
/// this statement inserted. Multi-row `VALUES ... ON CONFLICT DO NOTHING RETURNING` is not in
/// the backends' common subset.
pub(crate) fn insert_new_jtis(
    conn: &mut DbConnection,
    rows: &[JtiRow<'_>],
) -> Result<Vec<(String, String)>, DieselError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let insert = diesel::insert_into(assertion_jtis::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning((assertion_jtis::client_id, assertion_jtis::jti));
    per_backend!(conn, |c| insert.get_results(c))
}

/// A key of our own in PostgreSQL's advisory-lock space: "fg-domain" claims.
const DOMAIN_CLAIMS_LOCK: i64 = 0x6667_2d64_6f6d_6169;

/// Serialises every write that checks or changes who holds a domain (registration, change,
/// verification) until the transaction ends, so two organisations never verify overlapping
/// names at once and a name cannot become held between a check and a write. PostgreSQL:
/// a transaction-scoped advisory lock; SQLite writers are already serialised in-process.
pub(crate) fn lock_domain_claims(conn: &mut DbConnection) -> Result<(), DieselError> {
    if let DbConnection::Postgres(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(DOMAIN_CLAIMS_LOCK)
            .execute(c)?;
    }
    Ok(())
}

/// One record's seal: its position and chain hashes.
#[derive(Debug)]
pub(crate) struct Seal {
    pub seq: i64,
    pub position: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Writes a batch of seals. PostgreSQL takes the whole batch in one statement (the per-row
/// round trips were most of the sequencer's cost there); SQLite, in process, row by row.
pub(crate) fn apply_seals(conn: &mut DbConnection, seals: &[Seal]) -> Result<(), DieselError> {
    use diesel::sql_types::{Array, BigInt, Text};
    match conn {
        DbConnection::Postgres(c) => {
            for chunk in seals.chunks(5_000) {
                diesel::sql_query(
                    "UPDATE audit_events AS a SET log_position = v.position, prev_hash = v.prev_hash, hash = v.hash \
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS v(seq, position, prev_hash, hash) \
                     WHERE a.seq = v.seq",
                )
                .bind::<Array<BigInt>, _>(chunk.iter().map(|s| s.seq).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(chunk.iter().map(|s| s.position).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(chunk.iter().map(|s| s.prev_hash.clone()).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(chunk.iter().map(|s| s.hash.clone()).collect::<Vec<_>>())
                .execute(c)?;
            }
        }
        DbConnection::Sqlite(c) => {
            for seal in seals {
                diesel::update(audit_events::table.filter(audit_events::seq.eq(seal.seq)))
                    .set((
                        audit_events::log_position.eq(Some(seal.position)),
                        audit_events::prev_hash.eq(Some(&seal.prev_hash)),
                        audit_events::hash.eq(Some(&seal.hash)),
                    ))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Deletes at most `limit` replay-cache entries expired at `now`, in one statement (neither
/// backend's DELETE takes a LIMIT of its own, so a subquery picks the batch).
pub(crate) fn purge_expired_jtis(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    limit: i64,
) -> Result<usize, DieselError> {
    use diesel::sql_types::{BigInt, Timestamp};
    let sql = match conn {
        DbConnection::Postgres(_) => {
            "DELETE FROM assertion_jtis WHERE (client_id, jti) IN \
             (SELECT client_id, jti FROM assertion_jtis WHERE expires_at <= $1 LIMIT $2)"
        }
        DbConnection::Sqlite(_) => {
            "DELETE FROM assertion_jtis WHERE (client_id, jti) IN \
             (SELECT client_id, jti FROM assertion_jtis WHERE expires_at <= ? LIMIT ?)"
        }
    };
    let query = diesel::sql_query(sql)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit);
    per_backend!(conn, |c| query.execute(c))
}

/// Advisory-lock class of directory entry buckets (the two-key lock space, apart from the
/// single-key locks above).
const DIRECTORY_ENTRY_LOCK_CLASS: i32 = 0x6469_7265; // "dire"
/// Entry ids are hashed into this many buckets: bounded locks per transaction, whatever the
/// batch size (PostgreSQL's lock table is shared and finite).
const DIRECTORY_LOCK_BUCKETS: u32 = 256;

/// Serialises, until the transaction ends, every publisher transaction that touches one of
/// `ids` (PostgreSQL: one advisory lock per bucket of ids, taken in bucket order so two
/// publishers never deadlock on them). SQLite writers are already serialised in-process.
pub(crate) fn lock_directory_entries(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<(), DieselError> {
    use diesel::sql_types::{Array, Integer};
    if let DbConnection::Postgres(c) = conn {
        let mut buckets: Vec<i32> = ids
            .iter()
            .map(|id| {
                let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
                    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
                });
                i32::try_from(hash % DIRECTORY_LOCK_BUCKETS).unwrap_or(0)
            })
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        // A publisher stuck behind another's locks gives up (503, retry) rather than queueing
        // for ever; the transaction's end resets it.
        diesel::sql_query("SET LOCAL lock_timeout = '10s'").execute(c)?;
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock($1, b) FROM (SELECT b FROM UNNEST($2::int[]) AS b ORDER BY b) AS ordered",
        )
        .bind::<Integer, _>(DIRECTORY_ENTRY_LOCK_CLASS)
        .bind::<Array<Integer>, _>(buckets)
        .execute(c)?;
    }
    Ok(())
}

/// Inserts or replaces whole entries (a tombstone comes back). PostgreSQL: statements of
/// 1,000 rows; SQLite (whose diesel backend has no multi-row upsert): one cached statement
/// per row, in process.
pub(crate) fn upsert_entries(
    conn: &mut DbConnection,
    rows: &[crate::directory::EntryRow],
) -> Result<usize, DieselError> {
    use crate::schema::directory_entries as e;
    use diesel::upsert::excluded;
    macro_rules! replace_all {
        () => {
            (
                e::email.eq(excluded(e::email)),
                e::display_name.eq(excluded(e::display_name)),
                e::given_name.eq(excluded(e::given_name)),
                e::surname.eq(excluded(e::surname)),
                e::job_title.eq(excluded(e::job_title)),
                e::department.eq(excluded(e::department)),
                e::ods_code.eq(excluded(e::ods_code)),
                e::organisation_name.eq(excluded(e::organisation_name)),
                e::office_phone.eq(excluded(e::office_phone)),
                e::mobile_phone.eq(excluded(e::mobile_phone)),
                e::hidden.eq(excluded(e::hidden)),
                e::changed_at.eq(excluded(e::changed_at)),
                e::deleted_at.eq(excluded(e::deleted_at)),
            )
        };
    }
    let mut written = 0;
    match conn {
        DbConnection::Postgres(c) => {
            for chunk in rows.chunks(1_000) {
                written += diesel::insert_into(e::table)
                    .values(chunk)
                    .on_conflict(e::id)
                    .do_update()
                    .set(replace_all!())
                    .execute(c)?;
            }
        }
        DbConnection::Sqlite(c) => {
            for row in rows {
                written += diesel::insert_into(e::table)
                    .values(row)
                    .on_conflict(e::id)
                    .do_update()
                    .set(replace_all!())
                    .execute(c)?;
            }
        }
    }
    Ok(written)
}

/// Inserts unpositioned change rows, in statements of 2,000 rows.
pub(crate) fn insert_changes(
    conn: &mut DbConnection,
    rows: &[crate::directory::NewChangeRow],
) -> Result<usize, DieselError> {
    let mut inserted = 0;
    for chunk in rows.chunks(2_000) {
        let insert = diesel::insert_into(crate::schema::directory_changes::table).values(chunk);
        inserted += per_backend!(&mut *conn, |c| insert.execute(c))?;
    }
    Ok(inserted)
}

/// A key of our own in PostgreSQL's advisory-lock space: "fg-dirsq".
const DIRECTORY_SEQUENCER_LOCK: i64 = 0x6667_2d64_6972_7371;

/// Takes the directory sequencer's lock for this transaction, if no other process holds it.
pub(crate) fn try_directory_sequencer_lock(conn: &mut DbConnection) -> Result<bool, DieselError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    match conn {
        DbConnection::Postgres(c) => {
            let row: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(DIRECTORY_SEQUENCER_LOCK)
                .get_result(c)?;
            Ok(row.locked)
        }
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// Gives up to `limit` unpositioned change rows the next positions, in seq order, in one
/// statement, above every position ever handed out (also when purging removed them all). Only
/// rows of committed transactions are visible to it, so a late commit gets a later position.
pub(crate) fn position_changes(conn: &mut DbConnection, limit: i64) -> Result<usize, DieselError> {
    const SQL: &str = "UPDATE directory_changes SET position = b.base + s.rn \
         FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM directory_changes \
               WHERE position IS NULL ORDER BY seq LIMIT {limit}) AS s, \
              (SELECT MAX(top) AS base FROM (SELECT COALESCE(MAX(position), 0) AS top FROM directory_changes \
                   UNION ALL SELECT purged_through FROM directory_feed) AS tops) AS b \
         WHERE directory_changes.seq = s.seq";
    // `limit` is ours (a constant of the caller), never outside input.
    let sql = SQL.replace("{limit}", &limit.max(0).to_string());
    per_backend!(conn, |c| diesel::sql_query(&sql).execute(c))
}
