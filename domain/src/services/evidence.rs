//! Submitting information-governance evidence, and reviewers' verdicts on it.

use crate::access::{ReviewerIdentity, Role};
use crate::audit::AuditAction;
use crate::evidence::{
    is_pdf, safe_filename, DocumentInfo, Evidence, EvidenceDetails, EvidenceForm, EvidenceId,
    EvidenceStatus, Verdict, VerdictKind,
};
use crate::organisation::{OrganisationId, OrganisationStatus};
use crate::services::{
    require_person, Context, Refusal, RefusalKind, ServiceError, ServiceResult, Services,
};
use crate::text::Reason;
use crate::validation::{FieldError, ValidationErrors};

/// An uploaded document: its bytes (already bounded by the edge), the name the uploader gave,
/// and the SHA-256 the edge computed.
#[derive(Debug, Clone)]
pub struct Upload {
    pub bytes: Vec<u8>,
    pub filename: Option<String>,
    pub sha256: String,
}

/// How many evidence items one organisation may hold, and how many document bytes in all:
/// far above what onboarding needs, low enough that no partner can fill the database.
pub const MAX_EVIDENCE_ITEMS: usize = 200;
pub const MAX_EVIDENCE_BYTES: u64 = 200 * 1024 * 1024;

fn check_quota(existing: &[Evidence], new_bytes: u64) -> ServiceResult<()> {
    let mut errors = ValidationErrors::default();
    if existing.len() >= MAX_EVIDENCE_ITEMS {
        errors.push(FieldError::new(
            "evidence",
            "max_items",
            format!("an organisation may hold at most {MAX_EVIDENCE_ITEMS} evidence items"),
        ));
    }
    let stored: u64 = existing
        .iter()
        .filter_map(|e| e.document.as_ref().map(|d| d.size))
        .sum();
    if stored + new_bytes > MAX_EVIDENCE_BYTES {
        errors.push(FieldError::new(
            "document",
            "max_total_bytes",
            format!(
                "an organisation's documents may take at most {} MiB in all",
                MAX_EVIDENCE_BYTES / (1024 * 1024)
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.into())
    }
}

impl Services {
    /// Stores a new item (and its document). Older unjudged items of the same kind are
    /// superseded by it; accepted ones stay in force until this one is accepted.
    pub fn submit_evidence(
        &self,
        ctx: &Context,
        organisation: OrganisationId,
        form: &EvidenceForm,
        document: Option<Upload>,
    ) -> ServiceResult<Evidence> {
        let org = self.organisation(organisation)?;
        if org.status == OrganisationStatus::Rejected {
            return Err(Refusal::new(
                RefusalKind::OrganisationRejected,
                "this registration was rejected",
            )
            .into());
        }
        let now = self.clock.now();
        let details = EvidenceDetails::parse(form, now.date_naive())?;
        if let Some(upload) = &document {
            if !is_pdf(&upload.bytes) {
                return Err(Refusal::new(
                    RefusalKind::DocumentNotPdf,
                    "the document must be a PDF; it is recognised by its content, not its name or declared type",
                )
                .into());
            }
        }
        let evidence = Evidence {
            id: EvidenceId::new(),
            organisation_id: organisation,
            details,
            document: document.as_ref().map(|u| DocumentInfo {
                sha256: u.sha256.clone(),
                size: u.bytes.len() as u64,
                filename: safe_filename(u.filename.as_deref()),
            }),
            submitted_at: now,
            verdict: None,
            superseded_by: None,
        };
        let existing = self.evidence.list_evidence(organisation)?;
        check_quota(&existing, evidence.document.as_ref().map_or(0, |d| d.size))?;
        let supersede: Vec<EvidenceId> = existing
            .iter()
            .filter(|e| e.kind() == evidence.kind() && e.status(now) == EvidenceStatus::Pending)
            .map(|e| e.id)
            .collect();
        let event = ctx.event(
            now,
            AuditAction::EvidenceSubmitted,
            "evidence",
            evidence.id.to_string(),
            serde_json::json!({
                "organisation_id": organisation.to_string(),
                "kind": evidence.kind().as_str(),
                "expires_on": evidence.details.expires_on,
                "document_sha256": evidence.document.as_ref().map(|d| d.sha256.clone()),
                "document_size": evidence.document.as_ref().map(|d| d.size),
                "supersedes": supersede.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
        Ok(self.evidence.add_evidence(
            &evidence,
            document.as_ref().map(|u| u.bytes.as_slice()),
            &supersede,
            &event,
        )?)
    }

    /// The organisation's evidence, newest first.
    pub fn list_evidence(&self, organisation: OrganisationId) -> ServiceResult<Vec<Evidence>> {
        self.organisation(organisation)?;
        Ok(self.evidence.list_evidence(organisation)?)
    }

    /// An item's document, for its organisation (`Some(owner)`) or for reviewers (`None`).
    pub fn evidence_document(
        &self,
        owner: Option<OrganisationId>,
        id: EvidenceId,
    ) -> ServiceResult<(Evidence, Vec<u8>)> {
        let evidence = self
            .evidence
            .get_evidence(id)?
            .filter(|e| owner.is_none_or(|o| o == e.organisation_id))
            .ok_or(ServiceError::NotFound)?;
        evidence.document.as_ref().ok_or(ServiceError::NotFound)?;
        let bytes = self.evidence.document(id)?.ok_or(ServiceError::NotFound)?;
        Ok((evidence, bytes))
    }

    /// A reviewer accepts or rejects one item, with a reason. A judged item is immutable;
    /// accepting one supersedes every older item of its kind.
    pub fn judge_evidence(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: EvidenceId,
        verdict: &str,
        reason: &str,
    ) -> ServiceResult<Evidence> {
        require_person(reviewer, Role::Reviewer)?;
        let evidence = self
            .evidence
            .get_evidence(id)?
            .ok_or(ServiceError::NotFound)?;
        let mut errors = ValidationErrors::default();
        let verdict = errors.check("verdict", VerdictKind::parse(verdict));
        let reason = errors.check("reason", Reason::parse(reason));
        let (verdict, reason) = match (verdict, reason) {
            (Some(v), Some(r)) if errors.is_empty() => (v, r),
            _ => return Err(errors.into()),
        };
        if evidence.verdict.is_some() || evidence.superseded_by.is_some() {
            return Err(Refusal::new(
                RefusalKind::EvidenceAlreadyJudged,
                "this item was already judged or superseded; judged items never change",
            )
            .into());
        }
        let now = self.clock.now();
        if verdict == VerdictKind::Accepted && evidence.expired_at(now) {
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: "expired evidence cannot be accepted".to_owned(),
                unmet: vec![FieldError::new(
                    "expires_on",
                    "not_expired",
                    "the item's expiry date has passed",
                )],
            }
            .into());
        }
        let supersede: Vec<EvidenceId> = if verdict == VerdictKind::Accepted {
            self.evidence
                .list_evidence(evidence.organisation_id)?
                .iter()
                .filter(|e| {
                    e.id != id
                        && e.kind() == evidence.kind()
                        && e.superseded_by.is_none()
                        && e.submitted_at <= evidence.submitted_at
                })
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let record = Verdict {
            verdict,
            reason: reason.clone(),
            by: reviewer.subject.clone(),
            at: now,
        };
        let event = ctx.event(
            now,
            AuditAction::EvidenceJudged,
            "evidence",
            id.to_string(),
            serde_json::json!({
                "organisation_id": evidence.organisation_id.to_string(),
                "kind": evidence.kind().as_str(),
                "verdict": verdict.as_str(),
                "reason": reason.as_str(),
                "supersedes": supersede.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
        self.evidence
            .judge_evidence(id, &record, &supersede, &event)
            .map_err(|e| match ServiceError::from(e) {
                // Someone judged it between our read and our write.
                ServiceError::Stale => Refusal::new(
                    RefusalKind::EvidenceAlreadyJudged,
                    "this item was judged by someone else just now",
                )
                .into(),
                other => other,
            })
    }
}
