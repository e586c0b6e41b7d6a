//! The organisation repository: organisations, their claimed domains and registration
//! credentials.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use gateway_domain::{
    ClaimedDomain, Conflict, CredentialDigest, EmailDomain, NewAuditEvent, NewOrganisation,
    Organisation, OrganisationId, OrganisationRepository, RepositoryError, StoredCredential,
    Version,
};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::{to_db_time, CredentialRow, DomainRow, OrganisationRow};
use crate::schema::{
    organisation_domains, organisations, registration_credentials, secure_email_domains,
};

/// Which of `names` are on the accredited list, exactly or through a `*.` wildcard.
pub(crate) fn accreditation(
    conn: &mut DbConnection,
    names: &[EmailDomain],
) -> Result<Vec<ClaimedDomain>, DieselError> {
    let mut candidates: Vec<String> = Vec::new();
    for name in names {
        candidates.push(name.to_string());
        candidates.extend(name.parents().map(|parent| format!("*.{parent}")));
    }
    let listed: HashSet<String> = secure_email_domains::table
        .filter(secure_email_domains::pattern.eq_any(&candidates))
        .select(secure_email_domains::pattern)
        .load(conn)?
        .into_iter()
        .collect();
    Ok(names
        .iter()
        .map(|name| ClaimedDomain {
            accredited: listed.contains(name.as_str())
                || name.parents().any(|p| listed.contains(&format!("*.{p}"))),
            name: name.clone(),
        })
        .collect())
}

fn load(conn: &mut DbConnection, id: &str) -> Result<Option<Organisation>, TxError> {
    let Some(row) = organisations::table
        .find(id)
        .select(OrganisationRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let names: Vec<String> = organisation_domains::table
        .filter(organisation_domains::organisation_id.eq(id))
        .order(organisation_domains::position.asc())
        .select(organisation_domains::domain)
        .load(conn)?;
    let names = names
        .iter()
        .map(|n| EmailDomain::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RepositoryError::Corrupt(format!("organisation {id}: domain: {e}")))?;
    let domains = accreditation(conn, &names)?;
    Ok(Some(row.into_entity(domains)?))
}

/// The first of `domains` held by an organisation other than `owner`.
fn taken_domain(
    conn: &mut DbConnection,
    domains: &[EmailDomain],
    owner: Option<&str>,
) -> Result<Option<EmailDomain>, TxError> {
    let names: Vec<&str> = domains.iter().map(EmailDomain::as_str).collect();
    let mut query = organisation_domains::table
        .filter(organisation_domains::domain.eq_any(&names))
        .select(organisation_domains::domain)
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(organisation_domains::organisation_id.ne(owner));
    }
    let taken: HashSet<String> = query.load(conn)?.into_iter().collect();
    Ok(domains.iter().find(|d| taken.contains(d.as_str())).cloned())
}

fn conflict_of_new(
    conn: &mut DbConnection,
    new: &NewOrganisation,
) -> Result<Option<Conflict>, TxError> {
    let ods_taken: i64 = organisations::table
        .filter(organisations::ods_code.eq(new.ods_code.as_str()))
        .count()
        .get_result(conn)?;
    if ods_taken > 0 {
        return Ok(Some(Conflict::OdsCodeTaken(new.ods_code.clone())));
    }
    Ok(taken_domain(conn, &new.domains, None)?.map(Conflict::DomainTaken))
}

fn insert_domains(
    conn: &mut DbConnection,
    id: &str,
    domains: &[EmailDomain],
) -> Result<(), DieselError> {
    let rows: Vec<DomainRow> = domains
        .iter()
        .enumerate()
        .map(|(position, d)| DomainRow {
            domain: d.to_string(),
            organisation_id: id.to_owned(),
            position: i32::try_from(position).unwrap_or(i32::MAX),
        })
        .collect();
    // Multi-row VALUES is not in the backends' common SQL subset: insert per backend.
    let insert = diesel::insert_into(organisation_domains::table).values(&rows);
    match conn {
        DbConnection::Sqlite(c) => insert.execute(c)?,
        DbConnection::Postgres(c) => insert.execute(c)?,
    };
    Ok(())
}

fn is_unique_violation(error: &RepositoryError) -> bool {
    matches!(error, RepositoryError::Unavailable(cause)
        if matches!(cause.downcast_ref::<DieselError>(),
            Some(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))))
}

impl OrganisationRepository for Database {
    fn create(
        &self,
        id: OrganisationId,
        new: &NewOrganisation,
        credential: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let id_text = id.to_string();
        let result = self.write(|conn| {
            if let Some(conflict) = conflict_of_new(conn, new)? {
                return Err(conflict.into());
            }
            let placeholder = Organisation {
                id,
                ods_code: new.ods_code.clone(),
                name: new.name.clone(),
                category: new.category,
                exchange_version: new.exchange_version,
                domains: Vec::new(),
                contacts: new.contacts.clone(),
                business_need: new.business_need.clone(),
                version: Version::FIRST,
                created_at: at,
                updated_at: at,
            };
            diesel::insert_into(organisations::table)
                .values(OrganisationRow::from_entity(&placeholder))
                .execute(conn)?;
            insert_domains(conn, &id_text, &new.domains)?;
            diesel::insert_into(registration_credentials::table)
                .values(CredentialRow {
                    selector: credential.selector.clone(),
                    organisation_id: id_text.clone(),
                    secret_sha256: credential.secret_sha256.clone(),
                    created_at: to_db_time(at),
                })
                .execute(conn)?;
            append_event(conn, event)?;
            load(conn, &id_text)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        match result {
            // A concurrent registration took the code or a domain between our check and our
            // insert: name what was taken.
            Err(error) if is_unique_violation(&error) => {
                match self.read(|conn| conflict_of_new(conn, new))? {
                    Some(conflict) => Err(conflict.into()),
                    None => Err(error),
                }
            }
            other => other,
        }
    }

    fn get(&self, id: OrganisationId) -> Result<Option<Organisation>, RepositoryError> {
        self.read(|conn| load(conn, &id.to_string()))
    }

    fn list_organisations(
        &self,
        after: Option<OrganisationId>,
        limit: i64,
    ) -> Result<Vec<Organisation>, RepositoryError> {
        self.read(|conn| {
            let mut query = organisations::table
                .select(organisations::id)
                .order(organisations::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(organisations::id.gt(after.to_string()));
            }
            let ids: Vec<String> = query.load(conn)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(org) = load(conn, &id)? {
                    out.push(org);
                }
            }
            Ok(out)
        })
    }

    fn find_credential(&self, selector: &str) -> Result<Option<StoredCredential>, RepositoryError> {
        let row = self.single(|conn| {
            Ok(registration_credentials::table
                .find(selector)
                .select(CredentialRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        row.map(|row| {
            let id = Uuid::parse_str(&row.organisation_id).map_err(|e| {
                RepositoryError::Corrupt(format!("credential {}: {e}", row.selector))
            })?;
            Ok(StoredCredential {
                organisation_id: OrganisationId::from_uuid(id),
                secret_sha256: row.secret_sha256,
            })
        })
        .transpose()
    }

    fn update(
        &self,
        expected: Version,
        next: &Organisation,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let id = next.id.to_string();
        let domains = next.domain_names();
        let result = self.write(|conn| {
            let current: Option<i64> = organisations::table
                .find(&id)
                .select(organisations::version)
                .first(conn)
                .optional()?;
            match current {
                None => return Err(RepositoryError::NotFound.into()),
                Some(version) if version != expected.0 => {
                    return Err(RepositoryError::VersionMismatch {
                        current: Version(version),
                    }
                    .into())
                }
                Some(_) => {}
            }
            if let Some(domain) = taken_domain(conn, &domains, Some(&id))? {
                return Err(Conflict::DomainTaken(domain).into());
            }
            let updated = diesel::update(
                organisations::table
                    .filter(organisations::id.eq(&id))
                    .filter(organisations::version.eq(expected.0)),
            )
            .set(OrganisationRow::from_entity(next))
            .execute(conn)?;
            if updated != 1 {
                return Err(RepositoryError::VersionMismatch {
                    current: next.version,
                }
                .into());
            }
            diesel::delete(
                organisation_domains::table.filter(organisation_domains::organisation_id.eq(&id)),
            )
            .execute(conn)?;
            insert_domains(conn, &id, &domains)?;
            append_event(conn, event)?;
            load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        match result {
            Err(error) if is_unique_violation(&error) => {
                match self.read(|conn| taken_domain(conn, &domains, Some(&id)))? {
                    Some(domain) => Err(Conflict::DomainTaken(domain).into()),
                    None => Err(error),
                }
            }
            other => other,
        }
    }
}
