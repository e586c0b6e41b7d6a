//! Partner agreements. Scopes, signature and review check are stored as JSON documents in a
//! format of this crate's own (private serde types below), so the storage format does not
//! follow changes to how the API renders them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use gateway_domain::agreement::{
    AddressBookAttribute, AddressBookScope, AgreementSignature, FreeBusyDetail, FreeBusyScope,
    OdsSelection, ReviewCheck, Scopes, Signatory, SuspensionCause, Term,
};
use gateway_domain::contact::EmailAddress;
use gateway_domain::ports::ApprovalGuard;
use gateway_domain::text::{PersonName, Reason, ShortText};
use gateway_domain::{
    Agreement, AgreementId, AgreementRepository, AgreementState, Conflict, NewAuditEvent, OdsCode,
    OrganisationId, RepositoryError, Version,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::dialect;
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time};
use crate::organisations::ods_code_held;
use crate::schema::{agreements, organisations};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = agreements, treat_none_as_null = true)]
struct AgreementRow {
    id: String,
    organisation_id: String,
    template_version: String,
    template_sha256: String,
    scopes: String,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    signatory_name: String,
    signatory_role: String,
    signatory_email: String,
    state: String,
    state_reason: Option<String>,
    suspension: Option<String>,
    signature: Option<String>,
    review_check: Option<String>,
    limited_details_granted: bool,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// `"all"`, or the ODS codes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum SelectionJson {
    Named(String),
    Only(Vec<String>),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBookJson {
    attributes: Vec<String>,
    organisations: SelectionJson,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreeBusyJson {
    detail: String,
    organisations: SelectionJson,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopesJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address_book: Option<AddressBookJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    free_busy: Option<FreeBusyJson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    jws: String,
    kid: String,
    alg: String,
    jwk: serde_json::Value,
    payload: String,
    signed_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewCheckJson {
    by: String,
    at: DateTime<Utc>,
    version: i64,
    evidence: String,
}

const ALL: &str = "all";

impl SelectionJson {
    fn from_domain(selection: &OdsSelection) -> Self {
        match selection {
            OdsSelection::All => Self::Named(ALL.to_owned()),
            OdsSelection::Only(codes) => {
                Self::Only(codes.iter().map(|c| c.as_str().to_owned()).collect())
            }
        }
    }

    fn into_domain(self) -> Result<OdsSelection, String> {
        match self {
            Self::Named(name) if name == ALL => Ok(OdsSelection::All),
            Self::Named(other) => Err(format!("unknown selection {other:?}")),
            Self::Only(raw) => {
                let codes = raw
                    .iter()
                    .map(|c| OdsCode::parse(c).map_err(|e| format!("{c:?}: {}", e.message)))
                    .collect::<Result<Vec<_>, _>>()?;
                strictly_sorted(&codes, "organisations")?;
                Ok(OdsSelection::Only(codes))
            }
        }
    }
}

/// The domain keeps these lists sorted and without repeats, and so must stored data.
fn strictly_sorted<T: Ord>(items: &[T], what: &str) -> Result<(), String> {
    if items.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if items.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(format!("{what} is not sorted without repeats"))
    }
}

fn scopes_to_json(scopes: &Scopes) -> String {
    let json = ScopesJson {
        address_book: scopes.address_book.as_ref().map(|ab| AddressBookJson {
            attributes: ab
                .attributes
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            organisations: SelectionJson::from_domain(&ab.organisations),
        }),
        free_busy: scopes.free_busy.as_ref().map(|fb| FreeBusyJson {
            detail: fb.detail.as_str().to_owned(),
            organisations: SelectionJson::from_domain(&fb.organisations),
        }),
    };
    // Serialising these plain structs cannot fail; an empty string would read back corrupt.
    serde_json::to_string(&json).unwrap_or_default()
}

fn scopes_from_json(raw: &str) -> Result<Scopes, String> {
    let json: ScopesJson = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let address_book = json
        .address_book
        .map(|ab| {
            let attributes = ab
                .attributes
                .iter()
                .map(|a| {
                    AddressBookAttribute::parse(a).map_err(|e| format!("{a:?}: {}", e.message))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // An address-book scope may grant nothing beyond `id` and `email`: empty is fine.
            if !attributes.is_empty() {
                strictly_sorted(&attributes, "attributes")?;
            }
            Ok::<_, String>(AddressBookScope {
                attributes,
                organisations: ab.organisations.into_domain()?,
            })
        })
        .transpose()?;
    let free_busy = json
        .free_busy
        .map(|fb| {
            Ok::<_, String>(FreeBusyScope {
                detail: FreeBusyDetail::parse(&fb.detail).map_err(|e| e.message)?,
                organisations: fb.organisations.into_domain()?,
            })
        })
        .transpose()?;
    if address_book.is_none() && free_busy.is_none() {
        return Err("no scope".into());
    }
    Ok(Scopes {
        address_book,
        free_busy,
    })
}

fn to_json(value: impl Serialize) -> Option<String> {
    serde_json::to_string(&value).ok()
}

impl AgreementRow {
    fn from_entity(a: &Agreement) -> Self {
        Self {
            id: a.id.to_string(),
            organisation_id: a.organisation_id.to_string(),
            template_version: a.template_version.clone(),
            template_sha256: a.template_sha256.clone(),
            scopes: scopes_to_json(&a.scopes),
            starts_on: a.term.starts_on,
            ends_on: a.term.ends_on,
            signatory_name: a.signatory.name.to_string(),
            signatory_role: a.signatory.role.to_string(),
            signatory_email: a.signatory.email.to_string(),
            state: a.state.as_str().to_owned(),
            state_reason: a.state_reason.as_ref().map(ToString::to_string),
            suspension: a.suspension.map(|s| s.as_str().to_owned()),
            signature: a.signature.as_ref().and_then(|s| {
                to_json(SignatureJson {
                    jws: s.jws.clone(),
                    kid: s.kid.clone(),
                    alg: s.alg.clone(),
                    jwk: s.jwk.clone(),
                    payload: s.payload.clone(),
                    signed_at: s.signed_at,
                })
            }),
            review_check: a.check.as_ref().and_then(|c| {
                to_json(ReviewCheckJson {
                    by: c.by.clone(),
                    at: c.at,
                    version: c.version.0,
                    evidence: c.evidence.clone(),
                })
            }),
            limited_details_granted: a.limited_details_granted,
            version: a.version.0,
            created_at: to_db_time(a.created_at),
            updated_at: to_db_time(a.updated_at),
        }
    }

    /// Rebuilds the entity through the domain's rules; what fails them is reported corrupt.
    fn into_entity(self) -> Result<Agreement, RepositoryError> {
        let corrupt = |field: &str, why: String| {
            RepositoryError::Corrupt(format!("agreement {}: {field}: {why}", self.id))
        };
        let uuid = |field: &str, raw: &str| {
            Uuid::parse_str(raw).map_err(|e| corrupt(field, e.to_string()))
        };
        if self.ends_on < self.starts_on {
            return Err(corrupt("ends_on", "before starts_on".into()));
        }
        let signature = self
            .signature
            .as_deref()
            .map(|raw| {
                let s: SignatureJson =
                    serde_json::from_str(raw).map_err(|e| corrupt("signature", e.to_string()))?;
                Ok::<_, RepositoryError>(AgreementSignature {
                    jws: s.jws,
                    kid: s.kid,
                    alg: s.alg,
                    jwk: s.jwk,
                    payload: s.payload,
                    signed_at: s.signed_at,
                })
            })
            .transpose()?;
        let check = self
            .review_check
            .as_deref()
            .map(|raw| {
                let c: ReviewCheckJson = serde_json::from_str(raw)
                    .map_err(|e| corrupt("review_check", e.to_string()))?;
                Ok::<_, RepositoryError>(ReviewCheck {
                    by: c.by,
                    at: c.at,
                    version: Version(c.version),
                    evidence: c.evidence,
                })
            })
            .transpose()?;
        Ok(Agreement {
            id: AgreementId::from_uuid(uuid("id", &self.id)?),
            organisation_id: OrganisationId::from_uuid(uuid(
                "organisation_id",
                &self.organisation_id,
            )?),
            template_version: self.template_version.clone(),
            template_sha256: self.template_sha256.clone(),
            scopes: scopes_from_json(&self.scopes).map_err(|e| corrupt("scopes", e))?,
            term: Term {
                starts_on: self.starts_on,
                ends_on: self.ends_on,
            },
            signatory: Signatory {
                name: PersonName::parse(&self.signatory_name)
                    .map_err(|e| corrupt("signatory_name", e.message))?,
                role: ShortText::parse(&self.signatory_role)
                    .map_err(|e| corrupt("signatory_role", e.message))?,
                email: EmailAddress::parse(&self.signatory_email)
                    .map_err(|e| corrupt("signatory_email", e.message))?,
            },
            state: AgreementState::parse(&self.state).map_err(|e| corrupt("state", e.message))?,
            state_reason: self
                .state_reason
                .as_deref()
                .map(Reason::parse)
                .transpose()
                .map_err(|e| corrupt("state_reason", e.message))?,
            suspension: self
                .suspension
                .as_deref()
                .map(|raw| {
                    SuspensionCause::parse(raw)
                        .ok_or_else(|| corrupt("suspension", format!("unknown cause {raw:?}")))
                })
                .transpose()?,
            signature,
            check,
            limited_details_granted: self.limited_details_granted,
            version: Version(self.version),
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

/// The states the one-in-force index covers.
fn in_force(state: AgreementState) -> bool {
    matches!(state, AgreementState::Approved | AgreementState::Suspended)
}

fn load(conn: &mut DbConnection, id: &str) -> Result<Option<AgreementRow>, TxError> {
    Ok(agreements::table
        .find(id)
        .select(AgreementRow::as_select())
        .first(conn)
        .optional()?)
}

fn entities(rows: Vec<AgreementRow>) -> Result<Vec<Agreement>, RepositoryError> {
    rows.into_iter().map(AgreementRow::into_entity).collect()
}

impl AgreementRepository for Database {
    fn create_agreement(
        &self,
        agreement: &Agreement,
        event: &NewAuditEvent,
    ) -> Result<Agreement, RepositoryError> {
        let row = AgreementRow::from_entity(agreement);
        self.write(|conn| {
            let organisation: Option<String> = organisations::table
                .find(&row.organisation_id)
                .select(organisations::id)
                .first(conn)
                .optional()?;
            if organisation.is_none() {
                return Err(RepositoryError::NotFound.into());
            }
            diesel::insert_into(agreements::table)
                .values(&row)
                .execute(conn)?;
            append_event(conn, event)?;
            let stored = load(conn, &row.id)?.ok_or(RepositoryError::NotFound)?;
            Ok(stored.into_entity()?)
        })
    }

    fn get_agreement(&self, id: AgreementId) -> Result<Option<Agreement>, RepositoryError> {
        self.single(|conn| load(conn, &id.to_string()))?
            .map(AgreementRow::into_entity)
            .transpose()
    }

    fn list_agreements(
        &self,
        organisation: OrganisationId,
    ) -> Result<Vec<Agreement>, RepositoryError> {
        entities(self.single(|conn| {
            Ok(agreements::table
                .filter(agreements::organisation_id.eq(organisation.to_string()))
                .order((agreements::created_at.desc(), agreements::id.desc()))
                .select(AgreementRow::as_select())
                .load(conn)?)
        })?)
    }

    fn list_agreements_by_state(
        &self,
        state: Option<AgreementState>,
        after: Option<AgreementId>,
        limit: i64,
    ) -> Result<Vec<Agreement>, RepositoryError> {
        entities(self.single(|conn| {
            // Ids are UUIDv7, so id order is creation order; (state, id) is indexed.
            let mut query = agreements::table
                .select(AgreementRow::as_select())
                .order(agreements::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(state) = state {
                query = query.filter(agreements::state.eq(state.as_str()));
            }
            if let Some(after) = after {
                query = query.filter(agreements::id.gt(after.to_string()));
            }
            Ok(query.load(conn)?)
        })?)
    }

    fn save_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
    ) -> Result<(), RepositoryError> {
        save(self, changes, events, None)
    }

    fn approve_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
        guard: &ApprovalGuard,
    ) -> Result<(), RepositoryError> {
        save(self, changes, events, Some(guard))
    }
}

/// Re-checks what an approval read, under the lock that registrations, registration changes
/// and verifications take (SQLite: writes are serialised anyway).
fn check_guard(conn: &mut DbConnection, guard: &ApprovalGuard) -> Result<(), TxError> {
    dialect::lock_domain_claims(conn)?;
    let id = guard.organisation.to_string();
    let version: Option<i64> = organisations::table
        .find(&id)
        .select(organisations::version)
        .first(conn)
        .optional()?;
    match version {
        None => return Err(RepositoryError::NotFound.into()),
        Some(current) if current != guard.organisation_version.0 => {
            return Err(RepositoryError::VersionMismatch {
                current: Version(current),
            }
            .into())
        }
        Some(_) => {}
    }
    if ods_code_held(conn, &guard.ods_code, &id)? {
        return Err(RepositoryError::from(Conflict::OdsCodeTaken(guard.ods_code.clone())).into());
    }
    Ok(())
}

fn save(
    db: &Database,
    changes: &[(Version, Agreement)],
    events: &[NewAuditEvent],
    guard: Option<&ApprovalGuard>,
) -> Result<(), RepositoryError> {
    // Changes that take an agreement out of force go first, so that replacing the one in
    // force (revoke the old, approve the new) never has two in force half-way: the
    // unique index is checked per statement on PostgreSQL.
    let mut rows: Vec<(i64, AgreementRow)> = changes
        .iter()
        .map(|(expected, next)| (expected.0, AgreementRow::from_entity(next)))
        .collect();
    rows.sort_by_key(|(_, row)| AgreementState::parse(&row.state).is_ok_and(in_force));
    db.write(|conn| {
        if let Some(guard) = guard {
            check_guard(conn, guard)?;
        }
        for (expected, row) in &rows {
            let updated = diesel::update(
                agreements::table
                    .filter(agreements::id.eq(&row.id))
                    .filter(agreements::version.eq(expected)),
            )
            .set(row)
            .execute(conn)?;
            if updated != 1 {
                let current: Option<i64> = agreements::table
                    .find(&row.id)
                    .select(agreements::version)
                    .first(conn)
                    .optional()?;
                return Err(match current {
                    None => RepositoryError::NotFound,
                    Some(version) => RepositoryError::VersionMismatch {
                        current: Version(version),
                    },
                }
                .into());
            }
        }
        for event in events {
            append_event(conn, event)?;
        }
        Ok(())
    })
}
