//! The secure-email accredited domain list, replaced whole on each import.

use diesel::prelude::*;
use gateway_domain::{NewAuditEvent, RepositoryError, SecureDomainPattern, SecureDomainRepository};

use crate::audit::append_event;
use crate::connection::Database;
use crate::dialect;
use crate::models::to_db_time;
use crate::schema::secure_email_domains;

/// Rows per INSERT: well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

impl SecureDomainRepository for Database {
    fn replace_secure_domains(
        &self,
        patterns: &[SecureDomainPattern],
        event: &NewAuditEvent,
    ) -> Result<usize, RepositoryError> {
        let imported_at = to_db_time(event.occurred_at);
        self.write(|conn| {
            diesel::delete(secure_email_domains::table).execute(conn)?;
            for chunk in patterns.chunks(CHUNK) {
                let chunk: Vec<String> = chunk.iter().map(ToString::to_string).collect();
                dialect::insert_secure_domains(conn, &chunk, imported_at)?;
            }
            append_event(conn, event)?;
            let stored: i64 = secure_email_domains::table.count().get_result(conn)?;
            Ok(usize::try_from(stored).unwrap_or_default())
        })
    }
}
