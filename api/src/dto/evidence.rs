//! Information-governance evidence: upload metadata, items with their status and verdicts.

use chrono::{DateTime, NaiveDate, Utc};
use gateway_domain::evidence::{Evidence, EvidenceForm};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::values::{IcoRegistrationNumberSchema, ReasonSchema, ShortTextSchema};

/// The kinds of evidence. `dspt_assessment` and `ico_registration` are required for approval.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EvidenceKind)]
pub enum EvidenceKindDto {
    DsptAssessment,
    IcoRegistration,
    IgPolicy,
    Dpia,
    Other,
}

/// The Data Security and Protection Toolkit's published status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DsptStatus)]
pub enum DsptStatusDto {
    StandardsMet,
    StandardsExceeded,
    ApproachingStandards,
}

/// Where an item stands now.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = EvidenceStatus)]
pub enum EvidenceStatusDto {
    Pending,
    Accepted,
    Rejected,
    Expired,
    Superseded,
}

/// A reviewer's judgement.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = VerdictKind)]
pub enum VerdictKindDto {
    Accepted,
    Rejected,
}

/// What an evidence item says. Which fields apply depends on `kind`: a DSPT assessment needs
/// `dspt_status`, `published_on` and `expires_on`; an ICO registration needs
/// `registration_number` and `expires_on`; `other` needs a `title`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "dspt_assessment", "dspt_status": "standards_met", "published_on": "2026-06-30", "expires_on": "2027-06-30"}))]
pub struct EvidenceMetadata {
    #[schema(value_type = EvidenceKindDto)]
    pub kind: String,
    /// A short description, 1 to 200 characters.
    #[schema(value_type = Option<ShortTextSchema>)]
    pub title: Option<String>,
    #[schema(value_type = Option<DsptStatusDto>)]
    pub dspt_status: Option<String>,
    /// The ICO data protection register number, e.g. `ZA123456`.
    #[schema(value_type = Option<IcoRegistrationNumberSchema>)]
    pub registration_number: Option<String>,
    pub published_on: Option<NaiveDate>,
    /// The last day the item is valid.
    pub expires_on: Option<NaiveDate>,
}

impl From<&EvidenceMetadata> for EvidenceForm {
    fn from(m: &EvidenceMetadata) -> Self {
        Self {
            kind: m.kind.clone(),
            title: m.title.clone(),
            dspt_status: m.dspt_status.clone(),
            registration_number: m.registration_number.clone(),
            published_on: m.published_on,
            expires_on: m.expires_on,
        }
    }
}

/// An upload with a document: a `metadata` part (JSON, as `EvidenceMetadata`) and a
/// `document` part (a PDF, at most 10 MiB).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metadata": {"kind": "ig_policy", "title": "IG policy 2026"}, "document": "(PDF bytes)"}))]
#[allow(dead_code)]
pub struct EvidenceUpload {
    #[schema(value_type = EvidenceMetadata)]
    pub metadata: String,
    #[schema(value_type = Option<String>, format = Binary, content_media_type = "application/pdf")]
    pub document: Option<Vec<u8>>,
}

/// A stored document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentDto {
    /// Hex SHA-256 of the bytes as received.
    pub sha256: String,
    pub size: u64,
    pub filename: String,
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerdictDto {
    #[schema(value_type = VerdictKindDto)]
    pub verdict: String,
    pub reason: String,
    /// The reviewer's subject at the identity provider (reviewers' views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at: DateTime<Utc>,
}

/// One evidence item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceResponse {
    pub id: uuid::Uuid,
    pub organisation_id: uuid::Uuid,
    #[schema(value_type = EvidenceKindDto)]
    pub kind: String,
    pub title: Option<String>,
    #[schema(value_type = Option<DsptStatusDto>)]
    pub dspt_status: Option<String>,
    pub registration_number: Option<String>,
    pub published_on: Option<NaiveDate>,
    pub expires_on: Option<NaiveDate>,
    #[schema(value_type = EvidenceStatusDto)]
    pub status: String,
    pub document: Option<DocumentDto>,
    pub submitted_at: DateTime<Utc>,
    pub verdict: Option<VerdictDto>,
    /// The newer item that took this one's place.
    pub superseded_by: Option<uuid::Uuid>,
}

impl EvidenceResponse {
    pub fn new(e: &Evidence, now: DateTime<Utc>) -> Self {
        Self {
            id: e.id.as_uuid(),
            organisation_id: e.organisation_id.as_uuid(),
            kind: e.kind().as_str().to_owned(),
            title: e.details.title.as_ref().map(ToString::to_string),
            dspt_status: e.details.dspt_status.map(|s| s.as_str().to_owned()),
            registration_number: e.details.registration_number.clone(),
            published_on: e.details.published_on,
            expires_on: e.details.expires_on,
            status: e.status(now).as_str().to_owned(),
            document: e.document.as_ref().map(|d| DocumentDto {
                sha256: d.sha256.clone(),
                size: d.size,
                filename: d.filename.clone(),
            }),
            submitted_at: e.submitted_at,
            verdict: e.verdict.as_ref().map(|v| VerdictDto {
                verdict: v.verdict.as_str().to_owned(),
                reason: v.reason.to_string(),
                by: Some(v.by.clone()),
                at: v.at,
            }),
            superseded_by: e.superseded_by.map(|id| id.as_uuid()),
        }
    }

    /// The view for the organisation: which reviewer judged stays with the reviewers.
    pub fn for_partner(mut self) -> Self {
        if let Some(verdict) = self.verdict.as_mut() {
            verdict.by = None;
        }
        self
    }
}

/// The organisation's evidence, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceListResponse {
    pub items: Vec<EvidenceResponse>,
}

/// A reviewer's verdict on one item.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"verdict": "accepted", "reason": "Matches the DSPT register entry published 2026-06-30 (Standards Met)."}))]
pub struct VerdictRequest {
    #[schema(value_type = VerdictKindDto)]
    pub verdict: String,
    /// Why, for the organisation and the audit trail: 1 to 2000 characters.
    #[schema(value_type = ReasonSchema)]
    pub reason: String,
}
