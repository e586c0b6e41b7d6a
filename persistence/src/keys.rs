//! Partner keys, the client-assertion replay cache, and the gateway's signing keys.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use std::collections::HashSet;

use gateway_domain::{
    Conflict, Issuance, KeyType, NewAuditEvent, OrganisationId, PartnerKey, PartnerKeyRepository,
    ReplayCache, RepositoryError, SigningKeyRepository, StoredSigningKey,
};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::Database;
use crate::dialect;
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time, NewAuditRow};
use crate::schema::{assertion_jtis, partner_keys, signing_keys};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partner_keys)]
struct PartnerKeyRow {
    organisation_id: String,
    kid: String,
    kty: String,
    alg: Option<String>,
    jwk: String,
    added_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
}

impl PartnerKeyRow {
    fn new(organisation: OrganisationId, key: &PartnerKey) -> Self {
        Self {
            organisation_id: organisation.to_string(),
            kid: key.kid.clone(),
            kty: key.key_type.as_str().to_owned(),
            alg: key.alg.clone(),
            jwk: key.jwk.to_string(),
            added_at: to_db_time(key.added_at),
            last_used_at: key.last_used_at.map(to_db_time),
        }
    }

    fn into_entity(self) -> Result<(OrganisationId, PartnerKey), RepositoryError> {
        let corrupt = |why: String| {
            RepositoryError::Corrupt(format!(
                "partner key {}/{}: {why}",
                self.organisation_id, self.kid
            ))
        };
        let organisation =
            Uuid::parse_str(&self.organisation_id).map_err(|e| corrupt(e.to_string()))?;
        let key_type = KeyType::parse(&self.kty)
            .ok_or_else(|| corrupt(format!("unknown kty {}", self.kty)))?;
        let jwk = serde_json::from_str(&self.jwk).map_err(|e| corrupt(e.to_string()))?;
        Ok((
            OrganisationId::from_uuid(organisation),
            PartnerKey {
                kid: self.kid,
                key_type,
                alg: self.alg,
                jwk,
                added_at: from_db_time(self.added_at),
                last_used_at: self.last_used_at.map(from_db_time),
            },
        ))
    }
}

fn load_keys(
    conn: &mut crate::DbConnection,
    organisation: &str,
) -> Result<Vec<PartnerKey>, TxError> {
    let rows: Vec<PartnerKeyRow> = partner_keys::table
        .filter(partner_keys::organisation_id.eq(organisation))
        .order(partner_keys::kid.asc())
        .select(PartnerKeyRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| row.into_entity().map(|(_, key)| key))
        .collect::<Result<_, _>>()?)
}

impl PartnerKeyRepository for Database {
    fn replace_keys(
        &self,
        organisation: OrganisationId,
        keys: &[PartnerKey],
        event: &NewAuditEvent,
    ) -> Result<Vec<PartnerKey>, RepositoryError> {
        let id = organisation.to_string();
        self.write(|conn| {
            // Concurrent replacements of one organisation's keys take turns.
            if !dialect::lock_organisation(conn, &id)? {
                return Err(RepositoryError::NotFound.into());
            }
            let current = load_keys(conn, &id)?;
            diesel::delete(partner_keys::table.filter(partner_keys::organisation_id.eq(&id)))
                .execute(conn)?;
            for key in keys {
                // An unchanged key keeps its history, so re-sending the set is harmless.
                let kept = current
                    .iter()
                    .find(|k| k.kid == key.kid && k.jwk == key.jwk);
                let stored = PartnerKey {
                    added_at: kept.map_or(key.added_at, |k| k.added_at),
                    last_used_at: kept.and_then(|k| k.last_used_at),
                    ..key.clone()
                };
                diesel::insert_into(partner_keys::table)
                    .values(PartnerKeyRow::new(organisation, &stored))
                    .execute(conn)?;
            }
            append_event(conn, event)?;
            load_keys(conn, &id)
        })
    }

    fn list_keys(&self, organisation: OrganisationId) -> Result<Vec<PartnerKey>, RepositoryError> {
        // One statement: no transaction needed (the token endpoint reads this per request).
        self.single(|conn| load_keys(conn, &organisation.to_string()))
    }

    fn find_key(
        &self,
        organisation: OrganisationId,
        kid: &str,
    ) -> Result<Option<PartnerKey>, RepositoryError> {
        let row: Option<PartnerKeyRow> = self.single(|conn| {
            Ok(partner_keys::table
                .find((organisation.to_string(), kid))
                .select(PartnerKeyRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        row.map(|r| r.into_entity().map(|(_, key)| key)).transpose()
    }

    fn all_keys(&self) -> Result<Vec<(OrganisationId, PartnerKey)>, RepositoryError> {
        let rows: Vec<PartnerKeyRow> = self.read(|conn| {
            Ok(partner_keys::table
                .order((partner_keys::organisation_id.asc(), partner_keys::kid.asc()))
                .select(PartnerKeyRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(PartnerKeyRow::into_entity).collect()
    }

    fn remove_idle_keys(
        &self,
        keys: &[(OrganisationId, String)],
        idle_before: DateTime<Utc>,
        event: &dyn Fn(OrganisationId, &[String]) -> NewAuditEvent,
    ) -> Result<Vec<(OrganisationId, String)>, RepositoryError> {
        let cutoff = to_db_time(idle_before);
        self.write(|conn| {
            let mut removed: Vec<(OrganisationId, String)> = Vec::new();
            for (organisation, kid) in keys {
                // Still idle, checked by the statement that deletes: a key used (or replaced)
                // since the caller read it is kept.
                let deleted = diesel::delete(
                    partner_keys::table
                        .find((organisation.to_string(), kid))
                        .filter(
                            partner_keys::last_used_at
                                .le(cutoff)
                                .or(partner_keys::last_used_at
                                    .is_null()
                                    .and(partner_keys::added_at.le(cutoff))),
                        ),
                )
                .execute(conn)?;
                if deleted > 0 {
                    removed.push((*organisation, kid.clone()));
                }
            }
            let mut by_organisation: std::collections::BTreeMap<
                String,
                (OrganisationId, Vec<String>),
            > = std::collections::BTreeMap::new();
            for (organisation, kid) in &removed {
                by_organisation
                    .entry(organisation.to_string())
                    .or_insert_with(|| (*organisation, Vec::new()))
                    .1
                    .push(kid.clone());
            }
            for (organisation, kids) in by_organisation.values() {
                append_event(conn, &event(*organisation, kids))?;
            }
            Ok(removed)
        })
    }
}

/// Records `(client, jti)` unless it is recorded and unexpired; `false` for a replay.
fn remember_jti(
    conn: &mut crate::DbConnection,
    client: &str,
    jti: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, TxError> {
    let existing: Option<NaiveDateTime> = assertion_jtis::table
        .find((client, jti))
        .select(assertion_jtis::expires_at)
        .first(conn)
        .optional()?;
    match existing {
        Some(until) if until > to_db_time(now) => return Ok(false),
        Some(_) => {
            diesel::delete(assertion_jtis::table.find((client, jti))).execute(conn)?;
        }
        None => {}
    }
    diesel::insert_into(assertion_jtis::table)
        .values((
            assertion_jtis::client_id.eq(client),
            assertion_jtis::jti.eq(jti),
            assertion_jtis::expires_at.eq(to_db_time(expires_at)),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Another replica recorded the same jti between our read and our insert, and the primary
/// key refused ours: a replay. (The jti row is the only unique write of these transactions.)
fn race_is_replay(result: Result<bool, RepositoryError>) -> Result<bool, RepositoryError> {
    match result {
        Err(RepositoryError::Conflict(Conflict::Unique { .. })) => Ok(false),
        other => other,
    }
}

impl ReplayCache for Database {
    fn remember(
        &self,
        client: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, RepositoryError> {
        race_is_replay(self.write(|conn| remember_jti(conn, client, jti, expires_at, now)))
    }

    fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, RepositoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(|conn| Ok(dialect::purge_expired_jtis(conn, to_db_time(now), limit)?))
    }

    fn record_issuances(
        &self,
        issuances: &[Issuance],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepositoryError> {
        if issuances.is_empty() {
            return Ok(Vec::new());
        }
        // Within the batch only the first issuance of a pair can be fresh.
        let mut seen = HashSet::with_capacity(issuances.len());
        let first: Vec<bool> = issuances
            .iter()
            .map(|i| seen.insert((i.client.as_str(), i.jti.as_str())))
            .collect();
        let now_db = to_db_time(now);
        self.write(|conn| {
            let candidates: Vec<&Issuance> = issuances
                .iter()
                .zip(&first)
                .filter_map(|(issuance, first)| first.then_some(issuance))
                .collect();
            let mut recorded: HashSet<(String, String)> = HashSet::with_capacity(candidates.len());
            for chunk in candidates.chunks(JTI_BATCH) {
                // An expired entry is forgotten, so its pair counts as new (as `remember`).
                let jtis: Vec<&str> = chunk.iter().map(|i| i.jti.as_str()).collect();
                diesel::delete(
                    assertion_jtis::table
                        .filter(assertion_jtis::jti.eq_any(&jtis))
                        .filter(assertion_jtis::expires_at.le(now_db)),
                )
                .execute(conn)?;
                let rows: Vec<_> = chunk
                    .iter()
                    .map(|i| {
                        (
                            assertion_jtis::client_id.eq(i.client.as_str()),
                            assertion_jtis::jti.eq(i.jti.as_str()),
                            assertion_jtis::expires_at.eq(to_db_time(i.expires_at)),
                        )
                    })
                    .collect();
                // What another replica recorded meanwhile is skipped, not an error: the
                // statement returns only the pairs it inserted.
                recorded.extend(dialect::insert_new_jtis(conn, &rows)?);
            }
            let fresh: Vec<bool> = issuances
                .iter()
                .zip(&first)
                .map(|(i, first)| *first && recorded.contains(&(i.client.clone(), i.jti.clone())))
                .collect();
            let mut used: Vec<(String, &str)> = issuances
                .iter()
                .zip(&fresh)
                .filter(|(_, fresh)| **fresh)
                .filter_map(|(i, _)| i.key.as_ref())
                .map(|(organisation, kid)| (organisation.to_string(), kid.as_str()))
                .collect();
            used.sort_unstable();
            used.dedup();
            for (organisation, kid) in &used {
                diesel::update(partner_keys::table.find((organisation, kid)))
                    .set(partner_keys::last_used_at.eq(Some(now_db)))
                    .execute(conn)?;
            }
            let events: Vec<NewAuditRow> = issuances
                .iter()
                .zip(&fresh)
                .filter(|(_, fresh)| **fresh)
                .map(|(i, _)| NewAuditRow::from_event(&i.event))
                .collect();
            dialect::insert_audit_rows(conn, &events)?;
            Ok(fresh)
        })
    }
}

/// How many jtis one statement of a batch names.
const JTI_BATCH: usize = 500;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
struct SigningKeyRow {
    kid: String,
    alg: String,
    sealed_private_key: String,
    public_jwk: String,
    created_at: NaiveDateTime,
    retire_after: Option<NaiveDateTime>,
}

impl SigningKeyRepository for Database {
    fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, RepositoryError> {
        let rows: Vec<SigningKeyRow> = self.read(|conn| {
            Ok(signing_keys::table
                .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
                .select(SigningKeyRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredSigningKey {
                    public_jwk: serde_json::from_str(&row.public_jwk).map_err(|e| {
                        RepositoryError::Corrupt(format!("signing key {}: {e}", row.kid))
                    })?,
                    kid: row.kid,
                    alg: row.alg,
                    sealed_private_key: row.sealed_private_key,
                    created_at: from_db_time(row.created_at),
                    retire_after: row.retire_after.map(from_db_time),
                })
            })
            .collect()
    }

    fn add_signing_key(
        &self,
        key: &StoredSigningKey,
        retire_others_after: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError> {
        self.write(|conn| {
            diesel::update(signing_keys::table.filter(signing_keys::retire_after.is_null()))
                .set(signing_keys::retire_after.eq(Some(to_db_time(retire_others_after))))
                .execute(conn)?;
            diesel::insert_into(signing_keys::table)
                .values(SigningKeyRow {
                    kid: key.kid.clone(),
                    alg: key.alg.clone(),
                    sealed_private_key: key.sealed_private_key.clone(),
                    public_jwk: key.public_jwk.to_string(),
                    created_at: to_db_time(key.created_at),
                    retire_after: key.retire_after.map(to_db_time),
                })
                .execute(conn)?;
            append_event(conn, event)?;
            Ok(())
        })
    }

    fn prune_signing_keys(&self, now: DateTime<Utc>) -> Result<usize, RepositoryError> {
        self.write(|conn| {
            Ok(diesel::delete(
                signing_keys::table.filter(signing_keys::retire_after.le(to_db_time(now))),
            )
            .execute(conn)?)
        })
    }
}
