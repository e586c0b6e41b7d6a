//! Reviewer sessions: stored by the SHA-256 of their id, revoked on sign-out, purged once
//! ended.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gateway_domain::{
    NewAuditEvent, RepositoryError, ReviewerIdentity, ReviewerSession, Role, SessionRepository,
};

use crate::audit::append_event;
use crate::connection::Database;
use crate::models::{from_db_time, to_db_time};
use crate::schema::reviewer_sessions;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reviewer_sessions)]
struct SessionRow {
    id_sha256: String,
    subject: String,
    name: Option<String>,
    email: Option<String>,
    roles: String,
    person: bool,
    csrf_token: String,
    created_at: NaiveDateTime,
    last_seen_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    revoked_at: Option<NaiveDateTime>,
}

impl SessionRow {
    fn new(session: &ReviewerSession) -> Self {
        Self {
            id_sha256: session.id_sha256.clone(),
            subject: session.identity.subject.clone(),
            name: session.identity.name.clone(),
            email: session.identity.email.clone(),
            roles: serde_json::to_string(&session.identity.roles)
                .unwrap_or_else(|_| "[]".to_owned()),
            person: session.identity.person,
            csrf_token: session.csrf_token.clone(),
            created_at: to_db_time(session.created_at),
            last_seen_at: to_db_time(session.last_seen_at),
            expires_at: to_db_time(session.expires_at),
            revoked_at: session.revoked_at.map(to_db_time),
        }
    }

    fn into_entity(self) -> Result<ReviewerSession, RepositoryError> {
        let roles: Vec<Role> = serde_json::from_str(&self.roles).map_err(|e| {
            // The digest is no secret, but a prefix is enough to find the row.
            RepositoryError::Corrupt(format!(
                "reviewer session {}...: roles: {e}",
                self.id_sha256.chars().take(12).collect::<String>()
            ))
        })?;
        Ok(ReviewerSession {
            id_sha256: self.id_sha256,
            identity: ReviewerIdentity {
                subject: self.subject,
                name: self.name,
                email: self.email,
                roles,
                person: self.person,
            },
            csrf_token: self.csrf_token,
            created_at: from_db_time(self.created_at),
            last_seen_at: from_db_time(self.last_seen_at),
            expires_at: from_db_time(self.expires_at),
            revoked_at: self.revoked_at.map(from_db_time),
        })
    }
}

impl SessionRepository for Database {
    fn create_session(
        &self,
        session: &ReviewerSession,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError> {
        let row = SessionRow::new(session);
        self.write(|conn| {
            diesel::insert_into(reviewer_sessions::table)
                .values(&row)
                .execute(conn)?;
            append_event(conn, event)?;
            Ok(())
        })
    }

    fn find_session(&self, id_sha256: &str) -> Result<Option<ReviewerSession>, RepositoryError> {
        let row = self.single(|conn| {
            Ok(reviewer_sessions::table
                .find(id_sha256)
                .select(SessionRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        row.map(SessionRow::into_entity).transpose()
    }

    fn touch_session(&self, id_sha256: &str, at: DateTime<Utc>) -> Result<bool, RepositoryError> {
        let at = to_db_time(at);
        self.write(|conn| {
            let changed = diesel::update(
                reviewer_sessions::table
                    .find(id_sha256)
                    .filter(reviewer_sessions::revoked_at.is_null())
                    .filter(reviewer_sessions::last_seen_at.lt(at)),
            )
            .set(reviewer_sessions::last_seen_at.eq(at))
            .execute(conn)?;
            Ok(changed == 1)
        })
    }

    fn revoke_session(
        &self,
        id_sha256: &str,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<bool, RepositoryError> {
        let at = to_db_time(at);
        self.write(|conn| {
            let changed = diesel::update(
                reviewer_sessions::table
                    .find(id_sha256)
                    .filter(reviewer_sessions::revoked_at.is_null()),
            )
            .set(reviewer_sessions::revoked_at.eq(Some(at)))
            .execute(conn)?;
            if changed == 1 {
                append_event(conn, event)?;
            }
            Ok(changed == 1)
        })
    }

    fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<usize, RepositoryError> {
        let now = to_db_time(now);
        let idle_cutoff = to_db_time(idle_cutoff);
        let ended = || {
            reviewer_sessions::revoked_at
                .is_not_null()
                .or(reviewer_sessions::expires_at.le(now))
                .or(reviewer_sessions::last_seen_at.le(idle_cutoff))
        };
        self.write(|conn| {
            // Bounded: select a batch, then delete it (re-checked, in the same transaction).
            let ended_ids: Vec<String> = reviewer_sessions::table
                .filter(ended())
                .select(reviewer_sessions::id_sha256)
                .limit(limit.max(0))
                .load(conn)?;
            if ended_ids.is_empty() {
                return Ok(0);
            }
            Ok(diesel::delete(
                reviewer_sessions::table
                    .filter(reviewer_sessions::id_sha256.eq_any(&ended_ids))
                    .filter(ended()),
            )
            .execute(conn)?)
        })
    }
}
