//! The audit trail: append-only events, written in the same transaction as the change they
//! record.

use diesel::prelude::*;
use gateway_domain::{AuditEvent, AuditRepository, NewAuditEvent, RepositoryError};

use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::{AuditRow, NewAuditRow};
use crate::schema::audit_events;

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
