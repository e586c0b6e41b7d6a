//! The national directory and its change feed (see `DirectoryRepository` for the contract and
//! the migration `2026-12-04-000009_directory` for the tables).
//!
//! Feed positions come from a sequencer, as in `audit.rs`: a change row is inserted without a
//! position in the publisher's transaction, and the sequencer later gives the committed rows
//! it sees the next positions, in seq order, in one statement, holding its lock (a PostgreSQL
//! advisory lock; SQLite's writers are serialised in-process). Readers only read positioned
//! rows, so a publisher whose transaction commits late gets later positions instead of a
//! position some reader already paged past.
//!
//! Two publishers touching one entry at once on PostgreSQL are serialised by a transaction
//! advisory lock per bucket of entry ids, taken in bucket order before the entries are read,
//! so each change's before-state is what the previous committed change left.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gateway_domain::agreement::OdsSelection;
use gateway_domain::directory::{
    BatchOutcome, DirectoryEntry, DirectoryOperation, EntryId, EntryOrganisation, EntryState,
    FeedChange,
};
use gateway_domain::{
    ChangesPage, Conflict, DirectoryRepository, EmailAddress, FeedHead, IdempotentAnswer,
    NewAuditEvent, OdsCode, RepositoryError,
};

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::to_db_time;
use crate::schema::{directory_changes, directory_entries, directory_feed, idempotency_keys};

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Rows per `IN (...)` list: well inside both backends' bind-parameter limits.
const IN_CHUNK: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = directory_entries, treat_none_as_null = true)]
pub(crate) struct EntryRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub department: Option<String>,
    pub ods_code: String,
    pub organisation_name: String,
    pub office_phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub hidden: bool,
    pub changed_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}

impl EntryRow {
    fn from_entry(entry: &DirectoryEntry, at: NaiveDateTime) -> Self {
        Self {
            id: entry.id.to_string(),
            email: entry.email.as_str().to_owned(),
            display_name: entry.display_name.clone(),
            given_name: entry.given_name.clone(),
            surname: entry.surname.clone(),
            job_title: entry.job_title.clone(),
            department: entry.department.clone(),
            ods_code: entry.organisation.ods_code.as_str().to_owned(),
            organisation_name: entry.organisation.name.clone(),
            office_phone: entry.office_phone.clone(),
            mobile_phone: entry.mobile_phone.clone(),
            hidden: entry.hidden_from_address_book,
            changed_at: at,
            deleted_at: None,
        }
    }

    /// The same entry content (ignoring when it changed).
    fn same_content(&self, other: &Self) -> bool {
        (
            &self.email,
            &self.display_name,
            &self.given_name,
            &self.surname,
            &self.job_title,
            &self.department,
            &self.ods_code,
            &self.organisation_name,
            &self.office_phone,
            &self.mobile_phone,
            self.hidden,
        ) == (
            &other.email,
            &other.display_name,
            &other.given_name,
            &other.surname,
            &other.job_title,
            &other.department,
            &other.ods_code,
            &other.organisation_name,
            &other.office_phone,
            &other.mobile_phone,
            other.hidden,
        )
    }

    fn state(&self) -> EntryState {
        if self.deleted_at.is_some() {
            return EntryState::Absent;
        }
        match OdsCode::parse(&self.ods_code) {
            Ok(ods_code) => EntryState::Present {
                ods_code,
                hidden: self.hidden,
            },
            Err(_) => EntryState::Absent,
        }
    }

    /// A stored entry for reading: its id, email and ODS code re-parsed (a row whose keys no
    /// longer parse is corrupt), its texts as stored (they passed the domain's rules when
    /// written; re-checking every text of every row on every page cost a fifth of a feed
    /// page's CPU).
    fn into_stored_entry(self) -> Result<DirectoryEntry, RepositoryError> {
        let corrupt =
            |what: &str| RepositoryError::Corrupt(format!("directory entry {}: {what}", self.id));
        Ok(DirectoryEntry {
            id: EntryId::parse(&self.id).map_err(|_| corrupt("id"))?,
            email: EmailAddress::parse(&self.email).map_err(|_| corrupt("email"))?,
            organisation: EntryOrganisation {
                ods_code: OdsCode::parse(&self.ods_code).map_err(|_| corrupt("ods_code"))?,
                name: self.organisation_name,
            },
            display_name: self.display_name,
            given_name: self.given_name,
            surname: self.surname,
            job_title: self.job_title,
            department: self.department,
            office_phone: self.office_phone,
            mobile_phone: self.mobile_phone,
            hidden_from_address_book: self.hidden,
        })
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = directory_changes, treat_none_as_null = true)]
pub(crate) struct NewChangeRow {
    pub entry_id: String,
    pub changed_at: NaiveDateTime,
    pub before_ods: Option<String>,
    pub before_hidden: bool,
    pub after_ods: Option<String>,
    pub after_hidden: bool,
}

fn columns(state: &EntryState) -> (Option<String>, bool) {
    match state {
        EntryState::Absent => (None, false),
        EntryState::Present { ods_code, hidden } => (Some(ods_code.as_str().to_owned()), *hidden),
    }
}

fn state_of(ods: Option<String>, hidden: bool) -> Result<EntryState, RepositoryError> {
    match ods {
        None => Ok(EntryState::Absent),
        Some(code) => OdsCode::parse(&code)
            .map(|ods_code| EntryState::Present { ods_code, hidden })
            .map_err(|e| {
                RepositoryError::Corrupt(format!("directory change ODS code {code}: {e}"))
            }),
    }
}

fn entry_id(raw: &str) -> Result<EntryId, RepositoryError> {
    EntryId::parse(raw).map_err(|_| RepositoryError::Corrupt(format!("directory id {raw}")))
}

fn load_rows(conn: &mut DbConnection, ids: &[String]) -> Result<Vec<EntryRow>, TxError> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        rows.extend(
            directory_entries::table
                .filter(directory_entries::id.eq_any(chunk))
                .select(EntryRow::as_select())
                .load(conn)?,
        );
    }
    Ok(rows)
}

fn head_in(conn: &mut DbConnection) -> Result<FeedHead, TxError> {
    let head: Option<i64> = directory_changes::table
        .select(diesel::dsl::max(directory_changes::position))
        .first(conn)?;
    let purged_through: i64 = directory_feed::table
        .filter(directory_feed::id.eq(1))
        .select(directory_feed::purged_through)
        .first(conn)?;
    // Purging may have removed the newest rows too: positions never go back.
    Ok(FeedHead {
        head: head.unwrap_or(0).max(purged_through),
        purged_through,
    })
}

impl Database {
    /// Refreshes the planner's statistics of the directory tables after a bulk load, and
    /// clears the dead index entries it left. PostgreSQL's autovacuum analyses a freshly
    /// loaded table only after a while; until then the planner may sort the whole table for
    /// every snapshot page instead of walking the primary key. And every change row is
    /// inserted unpositioned and then positioned: until a vacuum, the partial index of
    /// unpositioned rows keeps one dead entry per row, which the sequencer walks on every
    /// tick (12 ms per tick after 1.5 million rows, measured). (SQLite needs neither.)
    pub fn analyze_directory(&self) -> Result<(), RepositoryError> {
        self.single(|conn| {
            if let DbConnection::Postgres(c) = conn {
                diesel::sql_query("VACUUM (ANALYZE) directory_entries, directory_changes")
                    .execute(c)?;
            }
            Ok(())
        })
    }
}

impl DirectoryRepository for Database {
    fn apply_changes(
        &self,
        operations: &[DirectoryOperation],
        at: DateTime<Utc>,
        record: &dyn Fn(&BatchOutcome) -> (NewAuditEvent, Option<IdempotentAnswer>),
    ) -> Result<BatchOutcome, RepositoryError> {
        let at = to_db_time(at);
        let ids: Vec<String> = operations.iter().map(|op| op.id().to_string()).collect();
        let attempt = || {
            self.write(|conn| {
                crate::dialect::lock_directory_entries(conn, &ids)?;
                let current: HashMap<String, EntryRow> = load_rows(conn, &ids)?
                    .into_iter()
                    .map(|row| (row.id.clone(), row))
                    .collect();

                let mut outcome = BatchOutcome::default();
                let mut upserts = Vec::new();
                let mut deletes = Vec::new();
                let mut changes = Vec::new();
                for (op, id) in operations.iter().zip(&ids) {
                    let before = current.get(id);
                    let before_state = before.map_or(EntryState::Absent, EntryRow::state);
                    let after_state = match op {
                        DirectoryOperation::Upsert(entry) => {
                            let row = EntryRow::from_entry(entry, at);
                            if before
                                .is_some_and(|b| b.deleted_at.is_none() && b.same_content(&row))
                            {
                                outcome.unchanged += 1;
                                continue;
                            }
                            upserts.push(row);
                            outcome.upserted += 1;
                            entry.state()
                        }
                        DirectoryOperation::Delete(_) => {
                            if before_state == EntryState::Absent {
                                outcome.unchanged += 1;
                                continue;
                            }
                            deletes.push(id.clone());
                            outcome.deleted += 1;
                            EntryState::Absent
                        }
                    };
                    let (before_ods, before_hidden) = columns(&before_state);
                    let (after_ods, after_hidden) = columns(&after_state);
                    changes.push(NewChangeRow {
                        entry_id: id.clone(),
                        changed_at: at,
                        before_ods,
                        before_hidden,
                        after_ods,
                        after_hidden,
                    });
                }

                // An email may move between entries of one batch, but not take another's. Emails
                // compare without regard to case (the unique index is on lower(email)).
                let changing: HashSet<&str> = changes.iter().map(|c| c.entry_id.as_str()).collect();
                let emails: Vec<String> = upserts.iter().map(|r| r.email.to_lowercase()).collect();
                let wanted: HashMap<&str, &str> = emails
                    .iter()
                    .zip(&upserts)
                    .map(|(email, r)| (email.as_str(), r.id.as_str()))
                    .collect();
                for chunk in emails.chunks(IN_CHUNK) {
                    let holders: Vec<(String, String)> = directory_entries::table
                        .filter(directory_entries::deleted_at.is_null())
                        .filter(lower(directory_entries::email).eq_any(chunk))
                        .select((directory_entries::id, directory_entries::email))
                        .load(conn)?;
                    for (holder, email) in holders {
                        if wanted.get(email.to_lowercase().as_str()) != Some(&holder.as_str())
                            && !changing.contains(holder.as_str())
                        {
                            return Err(RepositoryError::from(Conflict::EmailTaken(email)).into());
                        }
                    }
                }
                // Entries whose email changes give theirs up first (each takes its id, which is
                // no email address, for the moment), so emails can move along a chain or swap
                // within one batch whatever order its rows are written in.
                let moving: Vec<&str> = upserts
                    .iter()
                    .filter(|row| {
                        current
                            .get(&row.id)
                            .is_some_and(|b| b.deleted_at.is_none() && b.email != row.email)
                    })
                    .map(|row| row.id.as_str())
                    .collect();
                for chunk in moving.chunks(IN_CHUNK) {
                    diesel::update(
                        directory_entries::table.filter(directory_entries::id.eq_any(chunk)),
                    )
                    .set(directory_entries::email.eq(directory_entries::id))
                    .execute(conn)?;
                }

                for chunk in deletes.chunks(IN_CHUNK) {
                    diesel::update(
                        directory_entries::table.filter(directory_entries::id.eq_any(chunk)),
                    )
                    .set((
                        directory_entries::deleted_at.eq(Some(at)),
                        directory_entries::changed_at.eq(at),
                    ))
                    .execute(conn)?;
                }
                crate::dialect::upsert_entries(conn, &upserts)?;
                crate::dialect::insert_changes(conn, &changes)?;
                let (event, answer) = record(&outcome);
                append_event(conn, &event)?;
                if let Some(answer) = answer {
                    diesel::insert_into(idempotency_keys::table)
                        .values((
                            idempotency_keys::scope.eq(&answer.scope),
                            idempotency_keys::idem_key.eq(&answer.key),
                            idempotency_keys::request_sha256.eq(&answer.request_sha256),
                            idempotency_keys::answer.eq(answer.answer.to_string()),
                            idempotency_keys::created_at.eq(at),
                        ))
                        .execute(conn)?;
                }
                Ok(outcome)
            })
        };
        match attempt() {
            // Another publisher's transaction gave an entry one of these emails after the check
            // above read: once more, and the check names the email taken.
            Err(RepositoryError::Conflict(Conflict::Unique { constraint }))
                if constraint.contains("directory_entries_email") =>
            {
                attempt()
            }
            other => other,
        }
    }

    fn idempotent_answer(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>, RepositoryError> {
        self.single(|conn| {
            let row: Option<(String, String)> = idempotency_keys::table
                .filter(idempotency_keys::scope.eq(scope))
                .filter(idempotency_keys::idem_key.eq(key))
                .select((idempotency_keys::request_sha256, idempotency_keys::answer))
                .first(conn)
                .optional()?;
            row.map(|(request_sha256, answer)| {
                let answer = serde_json::from_str(&answer).map_err(|e| {
                    RepositoryError::Corrupt(format!("idempotent answer {scope}/{key}: {e}"))
                })?;
                Ok(IdempotentAnswer {
                    scope: scope.to_owned(),
                    key: key.to_owned(),
                    request_sha256,
                    answer,
                })
            })
            .transpose()
            .map_err(TxError::Domain)
        })
    }

    fn sequence_changes(&self, limit: i64) -> Result<usize, RepositoryError> {
        self.write(|conn| {
            if !crate::dialect::try_directory_sequencer_lock(conn)? {
                return Ok(0);
            }
            Ok(crate::dialect::position_changes(conn, limit)?)
        })
    }

    fn feed_head(&self) -> Result<FeedHead, RepositoryError> {
        self.read(head_in)
    }

    fn entries_page(
        &self,
        organisations: &OdsSelection,
        after: Option<EntryId>,
        through: Option<EntryId>,
        limit: i64,
    ) -> Result<Vec<DirectoryEntry>, RepositoryError> {
        let rows: Vec<EntryRow> = self.single(|conn| {
            let mut query = directory_entries::table
                .filter(directory_entries::deleted_at.is_null())
                .filter(directory_entries::hidden.eq(false))
                .order(directory_entries::id.asc())
                .limit(limit)
                .select(EntryRow::as_select())
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(directory_entries::id.gt(after.to_string()));
            }
            if let Some(through) = through {
                query = query.filter(directory_entries::id.le(through.to_string()));
            }
            if let OdsSelection::Only(codes) = organisations {
                let codes: Vec<&str> = codes.iter().map(OdsCode::as_str).collect();
                query = query.filter(directory_entries::ods_code.eq_any(codes));
            }
            Ok(query.load(conn)?)
        })?;
        rows.into_iter().map(EntryRow::into_stored_entry).collect()
    }

    fn entry_scan_bound(
        &self,
        after: Option<EntryId>,
        window: i64,
    ) -> Result<Option<EntryId>, RepositoryError> {
        let bound: Option<String> = self.single(|conn| {
            let mut query = directory_entries::table
                .select(directory_entries::id)
                .order(directory_entries::id.asc())
                .offset(window.max(1) - 1)
                .limit(1)
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(directory_entries::id.gt(after.to_string()));
            }
            Ok(query.first(conn).optional()?)
        })?;
        bound.as_deref().map(entry_id).transpose()
    }

    fn changes_after(
        &self,
        organisations: &OdsSelection,
        after: i64,
        through: i64,
        limit: i64,
    ) -> Result<ChangesPage, RepositoryError> {
        type Change = (i64, String, Option<String>, bool, Option<String>, bool);
        let (head, rows, entries) = self.read(|conn| {
            let head = head_in(conn)?;
            let mut query = directory_changes::table
                .filter(directory_changes::position.gt(after))
                .filter(directory_changes::position.le(through.min(head.head)))
                .order(directory_changes::position.asc())
                .limit(limit)
                .select((
                    directory_changes::position.assume_not_null(),
                    directory_changes::entry_id,
                    directory_changes::before_ods,
                    directory_changes::before_hidden,
                    directory_changes::after_ods,
                    directory_changes::after_hidden,
                ))
                .into_boxed();
            query = match organisations {
                OdsSelection::All => query.filter(
                    directory_changes::after_ods
                        .is_not_null()
                        .and(directory_changes::after_hidden.eq(false))
                        .or(directory_changes::before_ods
                            .is_not_null()
                            .and(directory_changes::before_hidden.eq(false))),
                ),
                OdsSelection::Only(codes) => {
                    let codes: Vec<String> = codes.iter().map(|c| c.as_str().to_owned()).collect();
                    query.filter(
                        directory_changes::after_ods
                            .assume_not_null()
                            .eq_any(codes.clone())
                            .and(directory_changes::after_hidden.eq(false))
                            .or(directory_changes::before_ods
                                .assume_not_null()
                                .eq_any(codes)
                                .and(directory_changes::before_hidden.eq(false))),
                    )
                }
            };
            let rows: Vec<Change> = query.load(conn)?;
            let ids: Vec<String> = rows
                .iter()
                .map(|r| r.1.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let entries: Vec<EntryRow> = load_rows(conn, &ids)?
                .into_iter()
                .filter(|row| row.deleted_at.is_none())
                .collect();
            // The head was read first: every position up to it was visible then, and none
            // after it is served. Purges are read last: on PostgreSQL (READ COMMITTED) one
            // that committed while this read ran shows here, so the caller answers 410
            // rather than a page with a gap.
            let purged_through: i64 = directory_feed::table
                .filter(directory_feed::id.eq(1))
                .select(directory_feed::purged_through)
                .first(conn)?;
            let head = FeedHead {
                purged_through: purged_through.max(head.purged_through),
                ..head
            };
            Ok((head, rows, entries))
        })?;
        let mut now: HashMap<String, DirectoryEntry> = HashMap::with_capacity(entries.len());
        for row in entries {
            now.insert(row.id.clone(), row.into_stored_entry()?);
        }
        // How many changes of each entry the page holds: the last one takes the entry, the
        // others (rare) get a copy.
        let mut pending: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
        for row in &rows {
            *pending.entry(row.1.as_str()).or_default() += 1;
        }
        let mut changes = Vec::with_capacity(rows.len());
        for (position, id, before_ods, before_hidden, after_ods, after_hidden) in &rows {
            let change = FeedChange {
                position: *position,
                entry: entry_id(id)?,
                before: state_of(before_ods.clone(), *before_hidden)?,
                after: state_of(after_ods.clone(), *after_hidden)?,
            };
            let left = pending.get_mut(id.as_str()).map(|n| {
                *n -= 1;
                *n
            });
            let entry = match left {
                Some(0) => now.remove(id),
                _ => now.get(id).cloned(),
            };
            changes.push((change, entry));
        }
        Ok(ChangesPage { changes, head })
    }

    fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<usize, RepositoryError> {
        let before = to_db_time(before);
        self.write(|conn| {
            let doomed: Vec<(i64, Option<i64>)> = directory_changes::table
                .filter(directory_changes::position.is_not_null())
                .filter(directory_changes::changed_at.lt(before))
                .order(directory_changes::position.asc())
                .limit(limit)
                .select((directory_changes::seq, directory_changes::position))
                .load(conn)?;
            let highest = doomed.iter().filter_map(|d| d.1).max();
            let seqs: Vec<i64> = doomed.iter().map(|d| d.0).collect();
            for chunk in seqs.chunks(IN_CHUNK) {
                diesel::delete(
                    directory_changes::table.filter(directory_changes::seq.eq_any(chunk)),
                )
                .execute(conn)?;
            }
            if let Some(highest) = highest {
                diesel::update(
                    directory_feed::table
                        .filter(directory_feed::id.eq(1))
                        .filter(directory_feed::purged_through.lt(highest)),
                )
                .set(directory_feed::purged_through.eq(highest))
                .execute(conn)?;
            }
            diesel::delete(
                directory_entries::table.filter(directory_entries::deleted_at.lt(before)),
            )
            .execute(conn)?;
            Ok(doomed.len())
        })
    }

    fn purge_answers(&self, before: DateTime<Utc>) -> Result<usize, RepositoryError> {
        let before = to_db_time(before);
        self.write(|conn| {
            Ok(diesel::delete(
                idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)),
            )
            .execute(conn)?)
        })
    }

    fn get_entry(&self, id: EntryId) -> Result<Option<DirectoryEntry>, RepositoryError> {
        let row: Option<EntryRow> = self.single(|conn| {
            Ok(directory_entries::table
                .filter(directory_entries::id.eq(id.to_string()))
                .filter(directory_entries::deleted_at.is_null())
                .select(EntryRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        row.map(EntryRow::into_stored_entry).transpose()
    }
}
