//! The organisation repository: organisations, their claimed domains (with their ownership
//! proof) and registration credentials.

use std::collections::{HashMap, HashSet};

use gateway_domain::registration_token::RegistrationTokenStatus;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use gateway_domain::dns::{Verification, VerificationMethod, VerificationToken};
use gateway_domain::ports::{ClaimOverlaps, DnsVerifiedClaim, DomainOverlap};
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
use crate::models::{from_db_time, to_db_time, CredentialRow, DomainRow, OrganisationRow};
use crate::schema::{
    agreements, organisation_domains, organisations, registration_credentials, secure_email_domains,
};

/// Which of `names` are on the accredited list, exactly or through a `*.` wildcard.
pub(crate) fn accreditation(
    conn: &mut DbConnection,
    names: &[EmailDomain],
) -> Result<Vec<bool>, DieselError> {
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
        .map(|name| {
            listed.contains(name.as_str())
                || name.parents().any(|p| listed.contains(&format!("*.{p}")))
        })
        .collect())
}

/// The names among `domains` and their parents that an active organisation other than
/// `owner` has verified.
fn verified_elsewhere(
    conn: &mut DbConnection,
    domains: &[EmailDomain],
    owner: &str,
) -> Result<HashSet<String>, DieselError> {
    let mut candidates: Vec<&str> = Vec::new();
    for domain in domains {
        candidates.push(domain.as_str());
        candidates.extend(domain.parents());
    }
    if candidates.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(organisation_domains::table
        .filter(organisation_domains::domain.eq_any(&candidates))
        .filter(organisation_domains::active.eq(true))
        .filter(organisation_domains::verified_at.is_not_null())
        .filter(organisation_domains::organisation_id.ne(owner))
        .select(organisation_domains::domain)
        .load(conn)?
        .into_iter()
        .collect())
}

/// The names verified by an active organisation other than `owner` that are proper
/// subdomains of one of `domains`, in name order: one statement, whatever the number of names
/// (the verified, active claims are few beside all claims, and their partial index is what
/// it reads).
fn verified_below(
    conn: &mut DbConnection,
    domains: &[EmailDomain],
    owner: &str,
) -> Result<Vec<EmailDomain>, DieselError> {
    type Condition = Box<
        dyn BoxableExpression<
            organisation_domains::table,
            <DbConnection as diesel::Connection>::Backend,
            SqlType = diesel::sql_types::Bool,
        >,
    >;
    // Names hold only letters, digits, hyphens and dots: nothing LIKE would read as a
    // wildcard.
    let Some(condition) = domains
        .iter()
        .map(|d| -> Condition { Box::new(organisation_domains::domain.like(format!("%.{d}"))) })
        .reduce(|a, b| Box::new(a.or(b)))
    else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = organisation_domains::table
        .filter(organisation_domains::active.eq(true))
        .filter(organisation_domains::verified_at.is_not_null())
        .filter(organisation_domains::organisation_id.ne(owner))
        .filter(condition)
        .select(organisation_domains::domain)
        .order(organisation_domains::domain.asc())
        .load(conn)?;
    Ok(names
        .iter()
        .filter_map(|n| EmailDomain::parse(n).ok())
        .collect())
}

/// Whether `domain` is equal to or under one of `held`.
fn is_held(domain: &EmailDomain, held: &HashSet<String>) -> bool {
    held.contains(domain.as_str()) || domain.parents().any(|p| held.contains(p))
}

fn claim_from_row(
    row: DomainRow,
    accredited: bool,
    held: &HashSet<String>,
) -> Result<ClaimedDomain, RepositoryError> {
    let corrupt = |why: String| {
        RepositoryError::Corrupt(format!(
            "organisation {} domain {}: {why}",
            row.organisation_id, row.domain
        ))
    };
    let name = EmailDomain::parse(&row.domain).map_err(|e| corrupt(e.to_string()))?;
    let token =
        VerificationToken::parse(&row.verification_token).map_err(|e| corrupt(e.to_string()))?;
    let verification = match (row.verified_at, row.verification_method.as_deref()) {
        (None, _) => None,
        (Some(at), Some(method)) => Some(Verification {
            at: from_db_time(at),
            method: VerificationMethod::parse(method)
                .ok_or_else(|| corrupt(format!("unknown verification method {method}")))?,
            by: row.verified_by.clone(),
            reason: row.verification_reason.clone(),
        }),
        (Some(_), None) => return Err(corrupt("verified without a method".into())),
    };
    Ok(ClaimedDomain {
        held_elsewhere: is_held(&name, held),
        name,
        accredited,
        token,
        verification,
        record_missing_since: row.record_missing_since.map(from_db_time),
    })
}

fn domain_row(id: &str, position: usize, claim: &ClaimedDomain, active: bool) -> DomainRow {
    let verification = claim.verification.as_ref();
    DomainRow {
        organisation_id: id.to_owned(),
        domain: claim.name.to_string(),
        position: i32::try_from(position).unwrap_or(i32::MAX),
        active,
        verification_token: claim.token.as_str().to_owned(),
        verified_at: verification.map(|v| to_db_time(v.at)),
        verification_method: verification.map(|v| v.method.as_str().to_owned()),
        verified_by: verification.and_then(|v| v.by.clone()),
        verification_reason: verification.and_then(|v| v.reason.clone()),
        record_missing_since: claim.record_missing_since.map(to_db_time),
    }
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
    let rows: Vec<DomainRow> = organisation_domains::table
        .filter(organisation_domains::organisation_id.eq(id))
        .order(organisation_domains::position.asc())
        .select(DomainRow::as_select())
        .load(conn)?;
    let names = rows
        .iter()
        .map(|r| EmailDomain::parse(&r.domain))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RepositoryError::Corrupt(format!("organisation {id}: domain: {e}")))?;
    let accredited = accreditation(conn, &names)?;
    let held = verified_elsewhere(conn, &names, id)?;
    let domains = rows
        .into_iter()
        .zip(accredited)
        .map(|(row, accredited)| claim_from_row(row, accredited, &held))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(row.into_entity(domains)?))
}

/// The first of `domains` equal to or under a domain verified by an active organisation
/// other than `owner`.
fn taken_domain(
    conn: &mut DbConnection,
    domains: &[EmailDomain],
    owner: &str,
) -> Result<Option<EmailDomain>, TxError> {
    let held = verified_elsewhere(conn, domains, owner)?;
    Ok(domains.iter().find(|d| is_held(d, &held)).cloned())
}

/// Whether an organisation other than `owner` holds `code`: it has an agreement in force
/// (approved or suspended). Registrations alone never hold a code.
pub(crate) fn ods_code_held(
    conn: &mut DbConnection,
    code: &OdsCode,
    owner: &str,
) -> Result<bool, TxError> {
    let holders: i64 = agreements::table
        .inner_join(organisations::table)
        .filter(organisations::ods_code.eq(code.as_str()))
        .filter(organisations::id.ne(owner))
        .filter(agreements::state.eq_any(["approved", "suspended"]))
        .count()
        .get_result(conn)?;
    Ok(holders > 0)
}

/// Which rule a registration (stored, or about to be, as `owner`) claiming `new_domains`
/// would break against other organisations, if any.
fn conflict_with_others(
    conn: &mut DbConnection,
    ods_code: Option<&OdsCode>,
    new_domains: &[EmailDomain],
    owner: &str,
) -> Result<Option<Conflict>, TxError> {
    if let Some(code) = ods_code {
        if ods_code_held(conn, code, owner)? {
            return Ok(Some(Conflict::OdsCodeTaken(code.clone())));
        }
    }
    Ok(taken_domain(conn, new_domains, owner)?.map(Conflict::DomainTaken))
}

fn insert_domains(
    conn: &mut DbConnection,
    id: &str,
    domains: &[ClaimedDomain],
    active: bool,
) -> Result<(), DieselError> {
    let rows: Vec<DomainRow> = domains
        .iter()
        .enumerate()
        .map(|(position, d)| domain_row(id, position, d, active))
        .collect();
    dialect::insert_domains(conn, &rows)?;
    Ok(())
}

/// A concurrent writer verified a domain between our check and our write, and the store's
/// unique index refused it: name what was taken, by reading again.
fn name_the_conflict<T>(
    db: &Database,
    result: Result<T, RepositoryError>,
    ods_code: Option<&OdsCode>,
    domains: &[EmailDomain],
    owner: &str,
) -> Result<T, RepositoryError> {
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

/// Increments the organisation's version (something hanging off it changed).
fn bump_version(conn: &mut DbConnection, id: &str, at: DateTime<Utc>) -> Result<(), TxError> {
    let updated = diesel::update(organisations::table.find(id))
        .set((
            organisations::version.eq(organisations::version + 1),
            organisations::updated_at.eq(to_db_time(at)),
        ))
        .execute(conn)?;
    if updated == 1 {
        Ok(())
    } else {
        Err(RepositoryError::NotFound.into())
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
            // Verifications take the same lock: a name cannot become held between the check
            // and the insert.
            dialect::lock_domain_claims(conn)?;
            if let Some(conflict) =
                conflict_with_others(conn, Some(&new.ods_code), &new.domains, &id_text)?
            {
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
            let claims: Vec<ClaimedDomain> = new
                .domains
                .iter()
                .map(|d| ClaimedDomain::unverified(d.clone()))
                .collect();
            insert_domains(conn, &id_text, &claims, true)?;
            crate::registration_tokens::insert_first(conn, id, credential, at)?;
            append_event(conn, event)?;
            load(conn, &id_text)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        name_the_conflict(self, result, Some(&new.ods_code), &new.domains, &id_text)
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

    fn registration_tokens(
        &self,
        ids: &[OrganisationId],
    ) -> Result<HashMap<OrganisationId, RegistrationTokenStatus>, RepositoryError> {
        crate::registration_tokens::statuses(self, ids)
    }

    fn rotate_credential(
        &self,
        id: OrganisationId,
        current_selector: &str,
        next: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<RegistrationTokenStatus, RepositoryError> {
        crate::registration_tokens::rotate(self, id, current_selector, next, at, event)
    }

    fn replace_token_state(
        &self,
        id: OrganisationId,
        expected: Version,
        next: &RegistrationTokenStatus,
        credential: Option<&CredentialDigest>,
        event: &NewAuditEvent,
    ) -> Result<RegistrationTokenStatus, RepositoryError> {
        crate::registration_tokens::replace(self, id, expected, next, credential, event)
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
        let mut added: Vec<EmailDomain> = Vec::new();
        let result = self.write(|conn| {
            dialect::lock_domain_claims(conn)?;
            let current: Option<(i64, String)> = organisations::table
                .find(&id)
                .select((organisations::version, organisations::status))
                .first(conn)
                .optional()?;
            let was_active = match current {
                None => return Err(RepositoryError::NotFound.into()),
                Some((version, _)) if version != expected.0 => {
                    return Err(RepositoryError::VersionMismatch {
                        current: Version(version),
                    }
                    .into())
                }
                Some((_, status)) => status == OrganisationStatus::Active.as_str(),
            };
            if active {
                // Claims the organisation already holds stand (shown as `conflict` if someone
                // else verified them); only new claims are checked.
                let claimed: HashSet<String> = if was_active {
                    organisation_domains::table
                        .filter(organisation_domains::organisation_id.eq(&id))
                        .select(organisation_domains::domain)
                        .load(conn)?
                        .into_iter()
                        .collect()
                } else {
                    HashSet::new()
                };
                added = domains
                    .iter()
                    .filter(|d| !claimed.contains(d.as_str()))
                    .cloned()
                    .collect();
                if let Some(conflict) = conflict_with_others(conn, None, &added, &id)? {
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
            insert_domains(conn, &id, &next.domains, active)?;
            append_event(conn, event)?;
            load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        name_the_conflict(self, result, None, &added, &id)
    }

    fn verify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verification: &Verification,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let id = id.to_string();
        let result = self.write(|conn| {
            dialect::lock_domain_claims(conn)?;
            let status: Option<String> = organisations::table
                .find(&id)
                .select(organisations::status)
                .first(conn)
                .optional()?;
            if status.as_deref() != Some(OrganisationStatus::Active.as_str()) {
                return Err(RepositoryError::NotFound.into());
            }
            if taken_domain(conn, std::slice::from_ref(domain), &id)?.is_some() {
                return Err(RepositoryError::from(Conflict::DomainTaken(domain.clone())).into());
            }
            // Only an unverified claim is verified: of two concurrent verifications the
            // first keeps its attribution, the second writes nothing.
            let updated = diesel::update(
                organisation_domains::table
                    .filter(organisation_domains::organisation_id.eq(&id))
                    .filter(organisation_domains::domain.eq(domain.as_str()))
                    .filter(organisation_domains::verified_at.is_null()),
            )
            .set((
                organisation_domains::verified_at.eq(Some(to_db_time(verification.at))),
                organisation_domains::verification_method.eq(Some(verification.method.as_str())),
                organisation_domains::verified_by.eq(verification.by.as_deref()),
                organisation_domains::verification_reason.eq(verification.reason.as_deref()),
                organisation_domains::record_missing_since.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute(conn)?;
            if updated != 1 {
                let claimed: i64 = organisation_domains::table
                    .filter(organisation_domains::organisation_id.eq(&id))
                    .filter(organisation_domains::domain.eq(domain.as_str()))
                    .count()
                    .get_result(conn)?;
                if claimed == 0 {
                    return Err(RepositoryError::NotFound.into());
                }
                // Already verified: nothing to write.
                return load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound));
            }
            bump_version(conn, &id, verification.at)?;
            append_event(conn, event)?;
            load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        });
        match result {
            // Only another verified claim on the same name can break the unique index.
            Err(RepositoryError::Conflict(Conflict::Unique { .. })) => {
                Err(Conflict::DomainTaken(domain.clone()).into())
            }
            other => other,
        }
    }

    fn set_record_missing(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        since: Option<DateTime<Utc>>,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError> {
        let id = id.to_string();
        self.write(|conn| {
            let updated = diesel::update(
                organisation_domains::table
                    .filter(organisation_domains::organisation_id.eq(&id))
                    .filter(organisation_domains::domain.eq(domain.as_str())),
            )
            .set(organisation_domains::record_missing_since.eq(since.map(to_db_time)))
            .execute(conn)?;
            if updated != 1 {
                return Err(RepositoryError::NotFound.into());
            }
            bump_version(conn, &id, event.occurred_at)?;
            append_event(conn, event)?;
            Ok(())
        })
    }

    fn unverify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verified_at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let id = id.to_string();
        self.write(|conn| {
            let updated = diesel::update(
                organisation_domains::table
                    .filter(organisation_domains::organisation_id.eq(&id))
                    .filter(organisation_domains::domain.eq(domain.as_str()))
                    .filter(organisation_domains::verified_at.eq(to_db_time(verified_at))),
            )
            .set((
                organisation_domains::verified_at.eq(None::<chrono::NaiveDateTime>),
                organisation_domains::verification_method.eq(None::<String>),
                organisation_domains::verified_by.eq(None::<String>),
                organisation_domains::verification_reason.eq(None::<String>),
                organisation_domains::record_missing_since.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute(conn)?;
            if updated != 1 {
                let claimed: i64 = organisation_domains::table
                    .filter(organisation_domains::organisation_id.eq(&id))
                    .filter(organisation_domains::domain.eq(domain.as_str()))
                    .count()
                    .get_result(conn)?;
                let version: Option<i64> = organisations::table
                    .find(&id)
                    .select(organisations::version)
                    .first(conn)
                    .optional()?;
                return Err(match (claimed, version) {
                    (0, _) | (_, None) => RepositoryError::NotFound,
                    (_, Some(current)) => RepositoryError::VersionMismatch {
                        current: Version(current),
                    },
                }
                .into());
            }
            bump_version(conn, &id, event.occurred_at)?;
            append_event(conn, event)?;
            load(conn, &id)?.ok_or(TxError::Domain(RepositoryError::NotFound))
        })
    }

    fn dns_verified_claims(&self) -> Result<Vec<DnsVerifiedClaim>, RepositoryError> {
        self.read(|conn| {
            let rows: Vec<DomainRow> = organisation_domains::table
                .inner_join(organisations::table)
                .filter(organisations::status.eq(OrganisationStatus::Active.as_str()))
                .filter(organisation_domains::active.eq(true))
                .filter(
                    organisation_domains::verification_method.eq(VerificationMethod::Dns.as_str()),
                )
                .order((
                    organisation_domains::organisation_id.asc(),
                    organisation_domains::position.asc(),
                ))
                .select(DomainRow::as_select())
                .load(conn)?;
            // Other active organisations' claims on the same names, with their tokens.
            let names: Vec<&str> = rows.iter().map(|r| r.domain.as_str()).collect();
            let mut rivals: Vec<(String, String, String)> = Vec::new();
            for chunk in names.chunks(500) {
                rivals.extend(
                    organisation_domains::table
                        .filter(organisation_domains::domain.eq_any(chunk))
                        .filter(organisation_domains::active.eq(true))
                        .select((
                            organisation_domains::domain,
                            organisation_domains::organisation_id,
                            organisation_domains::verification_token,
                        ))
                        .load::<(String, String, String)>(conn)?,
                );
            }
            let none = HashSet::new();
            rows.into_iter()
                .map(|row| {
                    let organisation_id = Uuid::parse_str(&row.organisation_id)
                        .map(OrganisationId::from_uuid)
                        .map_err(|e| {
                            RepositoryError::Corrupt(format!("domain {}: {e}", row.domain))
                        })?;
                    let rival_tokens = rivals
                        .iter()
                        .filter(|(d, o, _)| *d == row.domain && *o != row.organisation_id)
                        .map(|(_, _, token)| {
                            VerificationToken::parse(token).map_err(|e| {
                                RepositoryError::Corrupt(format!("domain {}: {e}", row.domain))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(DnsVerifiedClaim {
                        organisation_id,
                        domain: claim_from_row(row, false, &none)?,
                        rival_tokens,
                    })
                })
                .collect::<Result<Vec<_>, RepositoryError>>()
                .map_err(TxError::Domain)
        })
    }

    fn claim_overlaps(
        &self,
        organisation: &Organisation,
    ) -> Result<ClaimOverlaps, RepositoryError> {
        let id = organisation.id.to_string();
        let names = organisation.domain_names();
        self.read(|conn| {
            let mut overlaps = ClaimOverlaps {
                ods_code_held_elsewhere: ods_code_held(conn, &organisation.ods_code, &id)?,
                ..ClaimOverlaps::default()
            };
            let same_code: i64 = organisations::table
                .filter(organisations::ods_code.eq(organisation.ods_code.as_str()))
                .filter(organisations::status.eq(OrganisationStatus::Active.as_str()))
                .filter(organisations::id.ne(&id))
                .count()
                .get_result(conn)?;
            overlaps.ods_code_registrations_elsewhere = usize::try_from(same_code).unwrap_or(0);
            // The same name or a parent, verified elsewhere (one indexed `IN` query)...
            let held = verified_elsewhere(conn, &names, &id)?;
            // ...and subdomains verified elsewhere: one query over all our names at once.
            let below = verified_below(conn, &names, &id)?;
            for ours in &names {
                for theirs in std::iter::once(ours.as_str()).chain(ours.parents()) {
                    if held.contains(theirs) {
                        if let Ok(theirs) = EmailDomain::parse(theirs) {
                            overlaps.domains.push(DomainOverlap {
                                ours: ours.clone(),
                                theirs,
                            });
                        }
                    }
                }
                for theirs in below.iter().filter(|t| {
                    t.as_str().len() > ours.as_str().len() && t.is_within(ours.as_str())
                }) {
                    overlaps.domains.push(DomainOverlap {
                        ours: ours.clone(),
                        theirs: theirs.clone(),
                    });
                }
            }
            Ok(overlaps)
        })
    }
}
