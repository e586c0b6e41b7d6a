//! Calendars: busy blocks and working hours, kept per directory entry (see
//! `CalendarRepository` for the contract and the migration `2026-12-05-000011_calendars` for
//! the tables). A mailbox is a present directory entry's email, compared without regard to
//! case; its calendar is keyed by the entry's id, so it follows the entry when the address
//! changes and disappears from answers while the entry is deleted.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use diesel::prelude::*;
use gateway_domain::agreement::OdsSelection;
use gateway_domain::calendar::{
    weekday_name, BusyBlock, BusyStatus, ReplaceRange, WorkingHours, WorkingHoursForm,
};
use gateway_domain::{
    CalendarRepository, EmailAddress, MailboxCalendar, OdsCode, Replaced, RepositoryError,
};

use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time};
use crate::schema::{calendar_blocks, directory_entries, working_hours};

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Rows per multi-row insert: well inside both backends' bind-parameter limits.
const INSERT_CHUNK: usize = 1_000;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = calendar_blocks, treat_none_as_null = true)]
struct NewBlockRow<'a> {
    entry_id: &'a str,
    start_at: NaiveDateTime,
    end_at: NaiveDateTime,
    status: &'a str,
    subject: Option<&'a str>,
    location: Option<&'a str>,
    private: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = calendar_blocks)]
struct BlockRow {
    entry_id: String,
    start_at: NaiveDateTime,
    end_at: NaiveDateTime,
    status: String,
    subject: Option<String>,
    location: Option<String>,
    private: bool,
}

impl BlockRow {
    fn into_block(self) -> Result<BusyBlock, RepositoryError> {
        let status = BusyStatus::parse(&self.status).map_err(|_| {
            RepositoryError::Corrupt(format!("calendar block status {}", self.status))
        })?;
        Ok(BusyBlock {
            start: from_db_time(self.start_at),
            end: from_db_time(self.end_at),
            status,
            subject: self.subject,
            location: self.location,
            private: self.private,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = working_hours)]
struct HoursRow {
    entry_id: String,
    time_zone: String,
    days: String,
    start_time: String,
    end_time: String,
    changed_at: NaiveDateTime,
}

impl HoursRow {
    fn of(entry_id: String, hours: &WorkingHours, at: DateTime<Utc>) -> Self {
        let time = |t: NaiveTime| t.format("%H:%M").to_string();
        Self {
            entry_id,
            time_zone: hours.time_zone.name().to_owned(),
            days: hours
                .days
                .iter()
                .map(|d| weekday_name(*d))
                .collect::<Vec<_>>()
                .join(","),
            start_time: time(hours.start),
            end_time: time(hours.end),
            changed_at: to_db_time(at),
        }
    }

    /// Re-checked through the domain's rules: a row that no longer passes them is corrupt.
    fn into_hours(self) -> Result<WorkingHours, RepositoryError> {
        WorkingHours::parse(&WorkingHoursForm {
            time_zone: self.time_zone,
            days: self.days.split(',').map(str::to_owned).collect(),
            start: self.start_time,
            end: self.end_time,
        })
        .map_err(|e| RepositoryError::Corrupt(format!("working hours of {}: {e}", self.entry_id)))
    }
}

/// The id of the present entry whose email is `mailbox` (without regard to case), its row
/// locked until the transaction ends on PostgreSQL so that changes of one calendar take turns
/// (SQLite writers are already serialised).
fn lock_mailbox(conn: &mut DbConnection, mailbox: &EmailAddress) -> Result<String, TxError> {
    let query = directory_entries::table
        .filter(lower(directory_entries::email).eq(mailbox.as_str().to_lowercase()))
        .filter(directory_entries::deleted_at.is_null())
        .select(directory_entries::id);
    let found: Option<String> = match conn {
        DbConnection::Postgres(c) => query.for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    found.ok_or(TxError::Domain(RepositoryError::NotFound))
}

impl CalendarRepository for Database {
    fn replace_blocks(
        &self,
        mailbox: &EmailAddress,
        range: &ReplaceRange,
        blocks: &[BusyBlock],
    ) -> Result<Replaced, RepositoryError> {
        let (from, to) = (to_db_time(range.from), to_db_time(range.to));
        self.write(|conn| {
            let id = lock_mailbox(conn, mailbox)?;
            let removed = diesel::delete(
                calendar_blocks::table
                    .filter(calendar_blocks::entry_id.eq(&id))
                    .filter(calendar_blocks::start_at.ge(from))
                    .filter(calendar_blocks::start_at.lt(to)),
            )
            .execute(conn)?;
            let rows: Vec<NewBlockRow<'_>> = blocks
                .iter()
                .map(|b| NewBlockRow {
                    entry_id: &id,
                    start_at: to_db_time(b.start),
                    end_at: to_db_time(b.end),
                    status: b.status.as_str(),
                    subject: b.subject.as_deref(),
                    location: b.location.as_deref(),
                    private: b.private,
                })
                .collect();
            for chunk in rows.chunks(INSERT_CHUNK) {
                let insert = diesel::insert_into(calendar_blocks::table).values(chunk);
                match conn {
                    DbConnection::Postgres(c) => insert.execute(c)?,
                    DbConnection::Sqlite(c) => insert.execute(c)?,
                };
            }
            Ok(Replaced {
                removed,
                stored: blocks.len(),
            })
        })
    }

    fn set_working_hours(
        &self,
        mailbox: &EmailAddress,
        hours: &WorkingHours,
        at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        self.write(|conn| {
            let id = lock_mailbox(conn, mailbox)?;
            let row = HoursRow::of(id, hours, at);
            diesel::delete(working_hours::table.find(&row.entry_id)).execute(conn)?;
            diesel::insert_into(working_hours::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        })
    }

    fn calendars(
        &self,
        mailboxes: &[EmailAddress],
        organisations: &OdsSelection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<MailboxCalendar>, RepositoryError> {
        let wanted: Vec<String> = mailboxes
            .iter()
            .map(|m| m.as_str().to_lowercase())
            .collect();
        let (from, to) = (to_db_time(from), to_db_time(to));
        let (entries, blocks, hours) = self.read(|conn| {
            let mut query = directory_entries::table
                .filter(lower(directory_entries::email).eq_any(&wanted))
                .filter(directory_entries::deleted_at.is_null())
                .filter(directory_entries::hidden.eq(false))
                .select((directory_entries::id, directory_entries::email))
                .into_boxed();
            if let OdsSelection::Only(codes) = organisations {
                let codes: Vec<&str> = codes.iter().map(OdsCode::as_str).collect();
                query = query.filter(directory_entries::ods_code.eq_any(codes));
            }
            let entries: Vec<(String, String)> = query.load(conn)?;
            let ids: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
            let blocks: Vec<BlockRow> = calendar_blocks::table
                .filter(calendar_blocks::entry_id.eq_any(&ids))
                .filter(calendar_blocks::end_at.gt(from))
                .filter(calendar_blocks::start_at.lt(to))
                .order((calendar_blocks::start_at, calendar_blocks::end_at))
                .select(BlockRow::as_select())
                .load(conn)?;
            let hours: Vec<HoursRow> = working_hours::table
                .filter(working_hours::entry_id.eq_any(&ids))
                .select(HoursRow::as_select())
                .load(conn)?;
            Ok((entries, blocks, hours))
        })?;
        let mut by_id: HashMap<String, MailboxCalendar> = HashMap::with_capacity(entries.len());
        for (id, email) in entries {
            by_id.insert(
                id,
                MailboxCalendar {
                    email_key: email.to_lowercase(),
                    blocks: Vec::new(),
                    working_hours: None,
                },
            );
        }
        for row in blocks {
            if let Some(calendar) = by_id.get_mut(&row.entry_id) {
                calendar.blocks.push(row.into_block()?);
            }
        }
        for row in hours {
            if let Some(calendar) = by_id.get_mut(&row.entry_id) {
                calendar.working_hours = Some(row.into_hours()?);
            }
        }
        Ok(by_id.into_values().collect())
    }
}
