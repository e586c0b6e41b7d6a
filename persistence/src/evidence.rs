//! Information-governance evidence and its documents (stored in the database, so every
//! replica can serve them).

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use gateway_domain::evidence::{DocumentInfo, EvidenceDetails, EvidenceForm, Verdict, VerdictKind};
use gateway_domain::text::Reason;
use gateway_domain::{
    Evidence, EvidenceId, EvidenceRepository, NewAuditEvent, OrganisationId, RepositoryError,
    Version,
};
use uuid::Uuid;

use crate::audit::append_event;
use crate::connection::{Database, DbConnection};
use crate::error::TxError;
use crate::models::{from_db_time, to_db_time};
use crate::schema::{evidence, evidence_documents, organisations};

/// Evidence has no version of its own: an item is written once, then judged or superseded
/// once. A refused judgement reports the item as at this version (one change after
/// submission).
const JUDGED: Version = Version(2);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = evidence)]
struct EvidenceRow {
    id: String,
    organisation_id: String,
    kind: String,
    title: Option<String>,
    dspt_status: Option<String>,
    registration_number: Option<String>,
    published_on: Option<NaiveDate>,
    expires_on: Option<NaiveDate>,
    document_sha256: Option<String>,
    document_size: Option<i64>,
    document_filename: Option<String>,
    submitted_at: NaiveDateTime,
    verdict: Option<String>,
    verdict_reason: Option<String>,
    verdict_by: Option<String>,
    verdict_at: Option<NaiveDateTime>,
    superseded_by: Option<String>,
}

impl EvidenceRow {
    fn from_entity(e: &Evidence) -> Self {
        let details = &e.details;
        let document = e.document.as_ref();
        let verdict = e.verdict.as_ref();
        Self {
            id: e.id.to_string(),
            organisation_id: e.organisation_id.to_string(),
            kind: details.kind.as_str().to_owned(),
            title: details.title.as_ref().map(ToString::to_string),
            dspt_status: details.dspt_status.map(|s| s.as_str().to_owned()),
            registration_number: details.registration_number.clone(),
            published_on: details.published_on,
            expires_on: details.expires_on,
            document_sha256: document.map(|d| d.sha256.clone()),
            document_size: document.map(|d| i64::try_from(d.size).unwrap_or(i64::MAX)),
            document_filename: document.map(|d| d.filename.clone()),
            submitted_at: to_db_time(e.submitted_at),
            verdict: verdict.map(|v| v.verdict.as_str().to_owned()),
            verdict_reason: verdict.map(|v| v.reason.to_string()),
            verdict_by: verdict.map(|v| v.by.clone()),
            verdict_at: verdict.map(|v| to_db_time(v.at)),
            superseded_by: e.superseded_by.map(|id| id.to_string()),
        }
    }

    /// Rebuilds the entity through the domain's rules; what fails them is reported corrupt.
    fn into_entity(self) -> Result<Evidence, RepositoryError> {
        let corrupt = |field: &str, why: String| {
            RepositoryError::Corrupt(format!("evidence {}: {field}: {why}", self.id))
        };
        let uuid = |field: &str, raw: &str| {
            Uuid::parse_str(raw).map_err(|e| corrupt(field, e.to_string()))
        };
        let id = EvidenceId::from_uuid(uuid("id", &self.id)?);
        let organisation_id =
            OrganisationId::from_uuid(uuid("organisation_id", &self.organisation_id)?);
        let superseded_by = self
            .superseded_by
            .as_deref()
            .map(|raw| uuid("superseded_by", raw).map(EvidenceId::from_uuid))
            .transpose()?;
        // The kind's rules do not depend on the day, except that a publication date is not
        // in the future when submitted: any stored date passes that.
        let details = EvidenceDetails::parse(
            &EvidenceForm {
                kind: self.kind.clone(),
                title: self.title.clone(),
                dspt_status: self.dspt_status.clone(),
                registration_number: self.registration_number.clone(),
                published_on: self.published_on,
                expires_on: self.expires_on,
            },
            NaiveDate::MAX,
        )
        .map_err(|e| corrupt("details", e.to_string()))?;
        let document = match (
            &self.document_sha256,
            self.document_size,
            &self.document_filename,
        ) {
            (Some(sha256), Some(size), Some(filename)) => Some(DocumentInfo {
                sha256: sha256.clone(),
                size: u64::try_from(size).map_err(|e| corrupt("document_size", e.to_string()))?,
                filename: filename.clone(),
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("document", "partly recorded".into())),
        };
        let verdict = match (
            &self.verdict,
            &self.verdict_reason,
            &self.verdict_by,
            self.verdict_at,
        ) {
            (Some(verdict), Some(reason), Some(by), Some(at)) => Some(Verdict {
                verdict: VerdictKind::parse(verdict).map_err(|e| corrupt("verdict", e.message))?,
                reason: Reason::parse(reason).map_err(|e| corrupt("verdict_reason", e.message))?,
                by: by.clone(),
                at: from_db_time(at),
            }),
            (None, None, None, None) => None,
            _ => return Err(corrupt("verdict", "partly recorded".into())),
        };
        Ok(Evidence {
            id,
            organisation_id,
            details,
            document,
            submitted_at: from_db_time(self.submitted_at),
            verdict,
            superseded_by,
        })
    }
}

fn load(conn: &mut DbConnection, id: &str) -> Result<Option<EvidenceRow>, TxError> {
    Ok(evidence::table
        .find(id)
        .select(EvidenceRow::as_select())
        .first(conn)
        .optional()?)
}

fn stored(conn: &mut DbConnection, id: &str) -> Result<Evidence, TxError> {
    let row = load(conn, id)?.ok_or(RepositoryError::NotFound)?;
    Ok(row.into_entity()?)
}

/// Marks the organisation's items `supersede` as superseded by `by` (those not already
/// superseded: the first superseder stands).
/// Which items a superseding write may mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supersede {
    /// A new upload supersedes only items still unjudged when it commits: a verdict that
    /// commits first keeps its item in force.
    UnjudgedOnly,
    /// An acceptance supersedes older items whatever their verdict.
    Any,
}

fn mark_superseded(
    conn: &mut DbConnection,
    organisation: &str,
    supersede: &[EvidenceId],
    by: &str,
    which: Supersede,
) -> Result<(), TxError> {
    if supersede.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = supersede.iter().map(ToString::to_string).collect();
    let candidates = evidence::table
        .filter(evidence::id.eq_any(&ids))
        .filter(evidence::id.ne(by))
        .filter(evidence::organisation_id.eq(organisation))
        .filter(evidence::superseded_by.is_null());
    match which {
        Supersede::UnjudgedOnly => diesel::update(candidates.filter(evidence::verdict.is_null()))
            .set(evidence::superseded_by.eq(Some(by)))
            .execute(conn)?,
        Supersede::Any => diesel::update(candidates)
            .set(evidence::superseded_by.eq(Some(by)))
            .execute(conn)?,
    };
    Ok(())
}

impl EvidenceRepository for Database {
    fn add_evidence(
        &self,
        item: &Evidence,
        document: Option<&[u8]>,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError> {
        let row = EvidenceRow::from_entity(item);
        self.write(|conn| {
            let organisation: Option<String> = organisations::table
                .find(&row.organisation_id)
                .select(organisations::id)
                .first(conn)
                .optional()?;
            if organisation.is_none() {
                return Err(RepositoryError::NotFound.into());
            }
            diesel::insert_into(evidence::table)
                .values(&row)
                .execute(conn)?;
            if let Some(bytes) = document {
                diesel::insert_into(evidence_documents::table)
                    .values((
                        evidence_documents::evidence_id.eq(&row.id),
                        evidence_documents::content.eq(bytes),
                    ))
                    .execute(conn)?;
            }
            mark_superseded(
                conn,
                &row.organisation_id,
                supersede,
                &row.id,
                Supersede::UnjudgedOnly,
            )?;
            append_event(conn, event)?;
            stored(conn, &row.id)
        })
    }

    fn list_evidence(
        &self,
        organisation: OrganisationId,
    ) -> Result<Vec<Evidence>, RepositoryError> {
        let rows: Vec<EvidenceRow> = self.single(|conn| {
            Ok(evidence::table
                .filter(evidence::organisation_id.eq(organisation.to_string()))
                .order((evidence::submitted_at.desc(), evidence::id.desc()))
                .select(EvidenceRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(EvidenceRow::into_entity).collect()
    }

    fn get_evidence(&self, id: EvidenceId) -> Result<Option<Evidence>, RepositoryError> {
        self.single(|conn| load(conn, &id.to_string()))?
            .map(EvidenceRow::into_entity)
            .transpose()
    }

    fn judge_evidence(
        &self,
        id: EvidenceId,
        verdict: &Verdict,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError> {
        let id = id.to_string();
        self.write(|conn| {
            // Conditional on the item being unjudged and current: a judged item never changes,
            // also when two reviewers race.
            let judged = diesel::update(
                evidence::table
                    .filter(evidence::id.eq(&id))
                    .filter(evidence::verdict.is_null())
                    .filter(evidence::superseded_by.is_null()),
            )
            .set((
                evidence::verdict.eq(Some(verdict.verdict.as_str())),
                evidence::verdict_reason.eq(Some(verdict.reason.as_str())),
                evidence::verdict_by.eq(Some(&verdict.by)),
                evidence::verdict_at.eq(Some(to_db_time(verdict.at))),
            ))
            .execute(conn)?;
            let Some(row) = load(conn, &id)? else {
                return Err(RepositoryError::NotFound.into());
            };
            if judged != 1 {
                return Err(RepositoryError::VersionMismatch { current: JUDGED }.into());
            }
            mark_superseded(conn, &row.organisation_id, supersede, &id, Supersede::Any)?;
            append_event(conn, event)?;
            stored(conn, &id)
        })
    }

    fn document(&self, id: EvidenceId) -> Result<Option<Vec<u8>>, RepositoryError> {
        self.single(|conn| {
            Ok(evidence_documents::table
                .find(id.to_string())
                .select(evidence_documents::content)
                .first(conn)
                .optional()?)
        })
    }
}
