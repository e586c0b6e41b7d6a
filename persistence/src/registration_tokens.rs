//! The registration token's state and its live credentials: rotation compares and swaps the
//! presented credential, reviewers' changes compare the state's version. Both lock the
//! organisation's row first (PostgreSQL; SQLite writers are serialised), so a rotation, a
//! revocation and a fresh token never interleave.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gateway_domain::registration_token::{
    RegistrationTokenState, RegistrationTokenStatus, TokenIssuer,
};
use gateway_domain::text::Reason;
use gateway_domain::{CredentialDigest, NewAuditEvent, OrganisationId, RepositoryError, Version};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::dialect;
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time, CredentialRow};
use crate::schema::{registration_credentials, registration_tokens};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = registration_tokens, treat_none_as_null = true)]
pub(crate) struct TokenRow {
    pub organisation_id: String,
    pub state: String,
    pub issued_at: NaiveDateTime,
    pub issued_by: Option<String>,
    pub rotated_at: Option<NaiveDateTime>,
    pub rotations: i64,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_by: Option<String>,
    pub revocation_reason: Option<String>,
    pub version: i64,
}

impl TokenRow {
    pub(crate) fn from_entity(id: OrganisationId, status: &RegistrationTokenStatus) -> Self {
        Self {
            organisation_id: id.to_string(),
            state: status.state.as_str().to_owned(),
            issued_at: to_db_time(status.issued_at),
            issued_by: match &status.issued_by {
                TokenIssuer::Registration => None,
                TokenIssuer::Approver(subject) => Some(subject.clone()),
            },
            rotated_at: status.rotated_at.map(to_db_time),
            rotations: status.rotations,
            revoked_at: status.revoked_at.map(to_db_time),
            revoked_by: status.revoked_by.clone(),
            revocation_reason: status
                .revocation_reason
                .as_ref()
                .map(|r| r.as_str().to_owned()),
            version: status.version.0,
        }
    }

    fn into_entity(self) -> Result<(OrganisationId, RegistrationTokenStatus), RepositoryError> {
        let corrupt = |field: &str, why: String| {
            RepositoryError::Corrupt(format!(
                "registration token of {}: {field}: {why}",
                self.organisation_id
            ))
        };
        let id = Uuid::parse_str(&self.organisation_id)
            .map_err(|e| corrupt("organisation_id", e.to_string()))?;
        let status = RegistrationTokenStatus {
            state: RegistrationTokenState::parse(&self.state)
                .ok_or_else(|| corrupt("state", format!("unknown state {:?}", self.state)))?,
            issued_at: from_db_time(self.issued_at),
            issued_by: self
                .issued_by
                .clone()
                .map_or(TokenIssuer::Registration, TokenIssuer::Approver),
            rotated_at: self.rotated_at.map(from_db_time),
            rotations: self.rotations,
            revoked_at: self.revoked_at.map(from_db_time),
            revoked_by: self.revoked_by.clone(),
            revocation_reason: self
                .revocation_reason
                .as_deref()
                .map(Reason::parse)
                .transpose()
                .map_err(|e| corrupt("revocation_reason", e.message))?,
            version: Version(self.version),
        };
        Ok((OrganisationId::from_uuid(id), status))
    }
}

fn credential_row(id: &str, credential: &CredentialDigest, at: DateTime<Utc>) -> CredentialRow {
    CredentialRow {
        selector: credential.selector.clone(),
        organisation_id: id.to_owned(),
        secret_sha256: credential.secret_sha256.clone(),
        created_at: to_db_time(at),
    }
}

/// Stores a new organisation's token state and its first credential.
pub(crate) fn insert_first(
    conn: &mut DbConnection,
    id: OrganisationId,
    credential: &CredentialDigest,
    at: DateTime<Utc>,
) -> Result<(), TxError> {
    let id_text = id.to_string();
    diesel::insert_into(registration_credentials::table)
        .values(credential_row(&id_text, credential, at))
        .execute(conn)?;
    diesel::insert_into(registration_tokens::table)
        .values(TokenRow::from_entity(
            id,
            &RegistrationTokenStatus::registered(at),
        ))
        .execute(conn)?;
    Ok(())
}

fn load(conn: &mut DbConnection, id: &str) -> Result<Option<RegistrationTokenStatus>, TxError> {
    let row: Option<TokenRow> = registration_tokens::table
        .find(id)
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| r.into_entity().map(|(_, s)| s)).transpose()?)
}

pub(crate) fn statuses(
    db: &Database,
    ids: &[OrganisationId],
) -> Result<HashMap<OrganisationId, RegistrationTokenStatus>, RepositoryError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows: Vec<TokenRow> = db.read(|conn| {
        let mut rows = Vec::new();
        // Bounded statements, whatever the page size.
        for chunk in ids.chunks(500) {
            rows.extend(
                registration_tokens::table
                    .filter(registration_tokens::organisation_id.eq_any(chunk))
                    .select(TokenRow::as_select())
                    .load(conn)?,
            );
        }
        Ok(rows)
    })?;
    rows.into_iter().map(TokenRow::into_entity).collect()
}

pub(crate) fn rotate(
    db: &Database,
    id: OrganisationId,
    current_selector: &str,
    next: &CredentialDigest,
    at: DateTime<Utc>,
    event: &NewAuditEvent,
) -> Result<RegistrationTokenStatus, RepositoryError> {
    let id_text = id.to_string();
    db.write(|conn| {
        if !dialect::lock_organisation(conn, &id_text)? {
            return Err(RepositoryError::NotFound.into());
        }
        // The compare-and-swap: only the holder of the live credential removes it.
        let removed = diesel::delete(
            registration_credentials::table
                .filter(registration_credentials::selector.eq(current_selector))
                .filter(registration_credentials::organisation_id.eq(&id_text)),
        )
        .execute(conn)?;
        if removed != 1 {
            return Err(RepositoryError::NotFound.into());
        }
        diesel::insert_into(registration_credentials::table)
            .values(credential_row(&id_text, next, at))
            .execute(conn)?;
        let updated = diesel::update(registration_tokens::table.find(&id_text))
            .set((
                registration_tokens::rotated_at.eq(Some(to_db_time(at))),
                registration_tokens::rotations.eq(registration_tokens::rotations + 1),
                registration_tokens::version.eq(registration_tokens::version + 1),
            ))
            .execute(conn)?;
        if updated != 1 {
            return Err(RepositoryError::NotFound.into());
        }
        append_event(conn, event)?;
        load(conn, &id_text)?.ok_or(TxError::Domain(RepositoryError::NotFound))
    })
}

pub(crate) fn replace(
    db: &Database,
    id: OrganisationId,
    expected: Version,
    next: &RegistrationTokenStatus,
    credential: Option<&CredentialDigest>,
    event: &NewAuditEvent,
) -> Result<RegistrationTokenStatus, RepositoryError> {
    let id_text = id.to_string();
    db.write(|conn| {
        if !dialect::lock_organisation(conn, &id_text)? {
            return Err(RepositoryError::NotFound.into());
        }
        let current = load(conn, &id_text)?.ok_or(TxError::Domain(RepositoryError::NotFound))?;
        if current.version != expected {
            return Err(RepositoryError::VersionMismatch {
                current: current.version,
            }
            .into());
        }
        diesel::delete(
            registration_credentials::table
                .filter(registration_credentials::organisation_id.eq(&id_text)),
        )
        .execute(conn)?;
        if let Some(credential) = credential {
            diesel::insert_into(registration_credentials::table)
                .values(credential_row(&id_text, credential, event.occurred_at))
                .execute(conn)?;
        }
        diesel::update(registration_tokens::table.find(&id_text))
            .set(TokenRow::from_entity(id, next))
            .execute(conn)?;
        append_event(conn, event)?;
        load(conn, &id_text)?.ok_or(TxError::Domain(RepositoryError::NotFound))
    })
}
