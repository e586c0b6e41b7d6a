//! The organisation repository: organisations, their claimed domains and registration
//! credentials.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use gateway_domain::{
    ClaimedDomain, Conflict, CredentialDigest, EmailDomain, NewAuditEvent, NewOrganisation,
    OdsCode, Organisation, OrganisationId, OrganisationRepository, OrganisationStatus,
    RepositoryError, StoredCredential, Version,
};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::dialect;
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

/// The first of `domains` actively claimed by an organisation other than `owner`.
fn taken_domain(
    conn: &mut DbConnection,
    domains: &[EmailDomain],
    owner: Option<&str>,
) -> Result<Option<EmailDomain>, TxError> {
    let names: Vec<&str> = domains.iter().map(EmailDomain::as_str).collect();
    let mut query = organisation_domains::table
        .filter(organisation_domains::domain.eq_any(&names))
        .filter(organisation_domains::active.eq(true))
        .select(organisation_domains::domain)
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(organisation_domains::organisation_id.ne(owner));
    }
    let taken: HashSet<String> = query.load(conn)?.into_iter().collect();
    Ok(domains.iter().find(|d| taken.contains(d.as_str())).cloned())
}

/// Whether an active organisation other than `owner` holds `code`.
fn ods_code_taken(
    conn: &mut DbConnection,
    code: &OdsCode,
    owner: Option<&str>,
) -> Result<bool, TxError> {
    let mut query = organisations::table
        .filter(organisations::ods_code.eq(code.as_str()))
        .filter(organisations::status.eq(OrganisationStatus::Active.as_str()))
        .into_boxed();
    if let Some(owner) = owner {
        query = query.filter(organisations::id.ne(owner));
    }
    let holders: i64 = query.count().get_result(conn)?;
    Ok(holders > 0)
}

/// Which uniqueness rule `organisation` (stored, or about to be, as `owner`) would break
/// against the other active organisations, if any.
fn conflict_with_others(
    conn: &mut DbConnection,
    ods_code: &OdsCode,
    domains: &[EmailDomain],
    owner: Option<&str>,
) -> Result<Option<Conflict>, TxError> {
    if ods_code_taken(conn, ods_code, owner)? {
        return Ok(Some(Conflict::OdsCodeTaken(ods_code.clone())));
    }
    Ok(taken_domain(conn, domains, owner)?.map(Conflict::DomainTaken))
}

fn insert_domains(
    conn: &mut DbConnection,
    id: &str,
    domains: &[EmailDomain],
    active: bool,
) -> Result<(), DieselError> {
    let rows: Vec<DomainRow> = domains
        .iter()
        .enumerate()
        .map(|(position, d)| DomainRow {
            organisation_id: id.to_owned(),
            domain: d.to_string(),
            position: i32::try_from(position).unwrap_or(i32::MAX),
            active,
        })
        .collect();
    dialect::insert_domains(conn, &rows)?;
    Ok(())
}

/// A concurrent writer took an ODS code or a domain between our check and our write, and
/// the store's unique index refused it: name what was taken, by reading again.
fn name_the_conflict(
    db: &Database,
    result: Result<Organisation, RepositoryError>,
    ods_code: &OdsCode,
    domains: &[EmailDomain],
    owner: Option<&str>,
) -> Result<Organisation, RepositoryError> {
    match result {
        Err(RepositoryError::Conflict(Conflict::Unique { constraint })) => {
            match db.read(|conn| conflict_with_others(conn, ods_code, domains, owner))? {
                Some(conflict) => Err(conflict.into()),
                None => Err(Conflict::Unique { constraint }.into()),
            }
        }
        other => other,
    }
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
            if let Some(conflict) = conflict_with_others(conn, &new.ods_code, &new.domains, None)? {
                return Err(conflict.into());
            }
            let placeholder = Organisation {
                id,
                status: OrganisationStatus::Active,
                status_reason: None,
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
            insert_domains(conn, &id_text, &new.domains, true)?;
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
        name_the_conflict(self, result, &new.ods_code, &new.domains, None)
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
        // Only an active organisation's claims count; a rejected one's stay on record.
        let active = next.status == OrganisationStatus::Active;
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
            if active {
                if let Some(conflict) =
                    conflict_with_others(conn, &next.ods_code, &domains, Some(&id))?
                {
                    return Err(conflict.into());
                }
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
            insert_domains(conn, &id, &domains, active)?;
            append_event(conn, event)?;
            load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        name_the_conflict(self, result, &next.ods_code, &domains, Some(&id))
    }
}
