//! The statements that differ between the backends, kept in one place. Everything else is
//! written once against `DbConnection`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::connection::DbConnection;
use crate::models::DomainRow;
use crate::schema::{organisation_domains, organisations, secure_email_domains};

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
