//! Fixed-window counters shared by every replica: one upsert per hit, finished windows
//! flushed into aggregated audit records and removed in one transaction.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use gateway_domain::{NewAuditEvent, RateLimitStore, RepositoryError, WindowCount};

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::schema::rate_limit_counters;

/// How many finished counters one flush takes at most (the next flush takes the rest).
const FLUSH_BATCH: i64 = 5_000;

#[derive(QueryableByName)]
struct Hits {
    #[diesel(sql_type = BigInt)]
    hits: i64,
}

/// The upsert, in each backend's placeholder syntax: one statement, so racing replicas each
/// count once and each see the count their own hit made.
const UPSERT_TAIL: &str = "ON CONFLICT (limit_name, client_key, window_start) DO UPDATE \
     SET hits = rate_limit_counters.hits + 1, note = COALESCE(excluded.note, rate_limit_counters.note) \
     RETURNING hits";

fn upsert(
    conn: &mut DbConnection,
    limit: &str,
    key: &str,
    window_start: i64,
    note: Option<&str>,
) -> Result<i64, diesel::result::Error> {
    let values = match conn {
        DbConnection::Postgres(_) => "VALUES ($1, $2, $3, 1, $4)",
        DbConnection::Sqlite(_) => "VALUES (?, ?, ?, 1, ?)",
    };
    let query = diesel::sql_query(format!(
        "INSERT INTO rate_limit_counters (limit_name, client_key, window_start, hits, note) {values} {UPSERT_TAIL}"
    ))
    .bind::<Text, _>(limit)
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(window_start)
    .bind::<Nullable<Text>, _>(note);
    let row: Hits = match conn {
        DbConnection::Postgres(c) => query.get_result(c)?,
        DbConnection::Sqlite(c) => query.get_result(c)?,
    };
    Ok(row.hits)
}

impl RateLimitStore for Database {
    fn hit(
        &self,
        limit: &str,
        key: &str,
        window_start: i64,
        note: Option<&str>,
    ) -> Result<i64, RepositoryError> {
        self.write(|conn| Ok(upsert(conn, limit, key, window_start, note)?))
    }

    fn hits(&self, limit: &str, key: &str, window_start: i64) -> Result<i64, RepositoryError> {
        self.single(|conn| {
            let hits: Option<i64> = rate_limit_counters::table
                .find((limit, key, window_start))
                .select(rate_limit_counters::hits)
                .first(conn)
                .optional()?;
            Ok(hits.unwrap_or(0))
        })
    }

    fn flush_windows(
        &self,
        before: i64,
        audit: &dyn Fn(&WindowCount) -> Option<NewAuditEvent>,
    ) -> Result<usize, RepositoryError> {
        self.write(|conn| {
            let finished: Vec<(String, String, i64, i64, Option<String>)> =
                rate_limit_counters::table
                    .filter(rate_limit_counters::window_start.lt(before))
                    .order((
                        rate_limit_counters::window_start,
                        rate_limit_counters::limit_name,
                        rate_limit_counters::client_key,
                    ))
                    .limit(FLUSH_BATCH)
                    .load(conn)?;
            let mut removed = 0;
            for (limit, key, window_start, _, _) in finished {
                // Deleting by key and reading back what was deleted: a replica flushing at
                // the same time waits for this row's lock and then deletes nothing, so each
                // counter is audited once.
                let gone: Vec<(i64, Option<String>)> = {
                    let target = rate_limit_counters::table.find((&limit, &key, window_start));
                    let current: Option<(i64, Option<String>)> = target
                        .select((rate_limit_counters::hits, rate_limit_counters::note))
                        .first(conn)
                        .optional()?;
                    let deleted = diesel::delete(target).execute(conn)?;
                    if deleted == 1 {
                        current.into_iter().collect()
                    } else {
                        Vec::new()
                    }
                };
                for (hits, note) in gone {
                    removed += 1;
                    let count = WindowCount {
                        limit: limit.clone(),
                        key: key.clone(),
                        window_start,
                        hits,
                        note,
                    };
                    if let Some(event) = audit(&count) {
                        append_event(conn, &event).map_err(|e: TxError| e)?;
                    }
                }
            }
            Ok(removed)
        })
    }
}
