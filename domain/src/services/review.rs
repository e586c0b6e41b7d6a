//! The reviewers' side: the review queue with its warnings, the two-person lifecycle
//! transitions, and writing down states that changed with time (maintenance).

use chrono::{DateTime, Utc};

use crate::access::ReviewerIdentity;
use crate::agreement::{
    Action, Agreement, AgreementId, AgreementState, FreeBusyDetail, ReviewCheck, SuspensionCause,
};
use crate::audit::{AuditAction, NewAuditEvent};
use crate::dns::DomainStatus;
use crate::evidence::{DsptStatus, Evidence, EvidenceKind, EvidenceSet};
use crate::organisation::{Organisation, OrganisationStatus};
use crate::ports::{ApprovalGuard, ClaimOverlaps, Conflict, RepositoryError};
use crate::services::agreements::SignatureStatus;
use crate::services::{
    registration_rejected, require_person, Context, Precondition, Refusal, RefusalKind,
    ServiceError, ServiceResult, Services,
};
use crate::text::Reason;
use crate::validation::FieldError;

/// What a check is bound to besides the agreement's version: the registration as it stood
/// (domains, Exchange version, contacts) and every evidence item with its judgement.
fn review_basis(org: &Organisation, evidence: EvidenceSet<'_>) -> String {
    format!(
        "registration:{};evidence:{}",
        org.version.0,
        evidence.fingerprint()
    )
}

/// How far ahead reviewers are warned of expiring evidence.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// An agreement with everything a reviewer weighs.
#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub agreement: Agreement,
    pub effective_state: AgreementState,
    pub organisation: Organisation,
    pub evidence: Vec<Evidence>,
    pub signature: SignatureStatus,
    pub warnings: Vec<String>,
    /// Every precondition of approval not met now (empty when it could be approved).
    pub unmet_for_approval: Vec<FieldError>,
    /// The organisation's registration token state.
    pub registration_token: Option<crate::registration_token::RegistrationTokenStatus>,
}

/// A transition as a reviewer asks for it.
#[derive(Debug, Clone)]
pub struct TransitionRequest {
    pub action: Action,
    pub reason: Option<String>,
    /// On approval only: grant the `limited_details` the agreement asks for.
    pub grant_limited_details: bool,
}

/// What maintenance wrote down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgreementMaintenance {
    pub expired: usize,
    pub suspended: usize,
    pub reinstated: usize,
}

/// Approval's preconditions on the organisation's claims: every domain verified (and not in
/// conflict), and the ODS code not held by another organisation.
pub(crate) fn unmet_claims(org: &Organisation, overlaps: &ClaimOverlaps) -> Vec<FieldError> {
    let mut unmet = Vec::new();
    for (index, domain) in org.domains.iter().enumerate() {
        match domain.status() {
            DomainStatus::Verified => {}
            DomainStatus::Unverified => unmet.push(FieldError::new(
                format!("organisation.domains[{index}]"),
                "domains_verified",
                format!(
                    "{} is not verified: publish its TXT record and POST .../domains/{}/verify, or have a reviewer verify it",
                    domain.name, domain.name
                ),
            )),
            DomainStatus::Conflict => unmet.push(FieldError::new(
                format!("organisation.domains[{index}]"),
                "domains_verified",
                format!(
                    "{} is in conflict: another organisation verified it (or a domain it is under); remove it from the registration",
                    domain.name
                ),
            )),
        }
    }
    if overlaps.ods_code_held_elsewhere {
        unmet.push(FieldError::new(
            "organisation.ods_code",
            "ods_code_free",
            format!(
                "the ODS code {} is held by another organisation with an approved agreement",
                org.ods_code
            ),
        ));
    }
    unmet
}

fn warnings(
    org: &Organisation,
    overlaps: &ClaimOverlaps,
    evidence: EvidenceSet<'_>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out = Vec::new();
    for domain in &org.domains {
        match domain.status() {
            DomainStatus::Unverified => out.push(format!("domain {} is not verified", domain.name)),
            DomainStatus::Conflict => out.push(format!(
                "domain {} is in conflict: another organisation holds a verified claim on it or a domain it is under",
                domain.name
            )),
            DomainStatus::Verified => {}
        }
        if let Some(since) = domain.record_missing_since {
            out.push(format!(
                "domain {}: its verification TXT record has been missing since {}",
                domain.name,
                since.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    for overlap in &overlaps.domains {
        if overlap.ours != overlap.theirs {
            out.push(format!(
                "domain {} overlaps {}, which another organisation has verified",
                overlap.ours, overlap.theirs
            ));
        }
    }
    if overlaps.ods_code_registrations_elsewhere > 0 {
        out.push(format!(
            "{} other registration(s) name the ODS code {}",
            overlaps.ods_code_registrations_elsewhere, org.ods_code
        ));
    }
    if let Some(dspt) = evidence.accepted(EvidenceKind::DsptAssessment) {
        if dspt.details.dspt_status == Some(DsptStatus::ApproachingStandards) {
            out.push("DSPT status is 'approaching standards'".to_owned());
        }
    }
    for item in evidence.expiring_within(now, EXPIRY_WARNING_DAYS) {
        if let Some(day) = item.details.expires_on {
            out.push(format!("{} evidence expires on {day}", item.kind()));
        }
    }
    for domain in org.domains.iter().filter(|d| !d.accredited) {
        out.push(format!(
            "domain {} is not on the secure-email accredited list",
            domain.name
        ));
    }
    out
}

impl Services {
    /// Approval's preconditions, all of them, for `approver` (or for anyone, when `None`).
    fn unmet_for_approval(
        &self,
        org: &Organisation,
        agreement: &Agreement,
        evidence: EvidenceSet<'_>,
        signature: &SignatureStatus,
        approver: Option<&ReviewerIdentity>,
        now: DateTime<Utc>,
    ) -> Vec<FieldError> {
        let mut unmet = Vec::new();
        if org.status != OrganisationStatus::Active {
            unmet.push(registration_rejected());
        }
        match &agreement.check {
            None => unmet.push(FieldError::new(
                "check",
                "checked",
                "a reviewer must check the agreement first",
            )),
            Some(check) => {
                if check.version != agreement.version
                    || check.evidence != review_basis(org, evidence)
                {
                    unmet.push(FieldError::new(
                        "check",
                        "check_current",
                        "the agreement or its evidence changed after the check: check it again",
                    ));
                }
                if approver.is_some_and(|a| a.subject == check.by) {
                    unmet.push(FieldError::new(
                        "check",
                        "two_people",
                        "the person who checked cannot approve: a second person must",
                    ));
                }
            }
        }
        unmet.extend(evidence.required_gaps(now));
        if *signature != SignatureStatus::Valid {
            unmet.push(FieldError::new(
                "signature",
                "signature_valid",
                match signature {
                    SignatureStatus::Invalid(why) => format!("the signature is not valid: {why}"),
                    _ => "the agreement is not signed".to_owned(),
                },
            ));
        }
        if agreement.scopes.address_book.is_some() {
            if let Err(v) =
                crate::agreement::exchange_supports_address_book(org.exchange_version.as_str())
            {
                unmet.push(v.at("organisation.exchange_version"));
            }
        }
        if agreement.term.ended(now) {
            unmet.push(FieldError::new(
                "term.ends_on",
                "term_current",
                "the term has already ended",
            ));
        }
        unmet
    }

    fn review_item(&self, agreement: Agreement) -> ServiceResult<ReviewItem> {
        let now = self.clock.now();
        let organisation = self.organisation(agreement.organisation_id)?;
        let evidence = self.evidence.list_evidence(agreement.organisation_id)?;
        let set = EvidenceSet(&evidence);
        let signature = self.signature_status(&organisation, &agreement);
        let effective_state = agreement.effective_state(set, now);
        let overlaps = self.organisations.claim_overlaps(&organisation)?;
        let unmet_for_approval = if effective_state == AgreementState::Submitted {
            let mut unmet =
                self.unmet_for_approval(&organisation, &agreement, set, &signature, None, now);
            unmet.extend(unmet_claims(&organisation, &overlaps));
            unmet
        } else {
            Vec::new()
        };
        let warnings = warnings(&organisation, &overlaps, set, now);
        let registration_token = self
            .organisations
            .registration_tokens(&[organisation.id])?
            .remove(&organisation.id);
        Ok(ReviewItem {
            registration_token,
            effective_state,
            warnings,
            signature,
            unmet_for_approval,
            agreement,
            organisation,
            evidence,
        })
    }

    /// The review queue: agreements in `state` (all when `None`), oldest first.
    pub fn review_queue(
        &self,
        state: Option<AgreementState>,
        after: Option<AgreementId>,
        limit: i64,
    ) -> ServiceResult<Vec<ReviewItem>> {
        self.agreements
            .list_agreements_by_state(state, after, limit)?
            .into_iter()
            .map(|a| self.review_item(a))
            .collect()
    }

    /// One agreement for review.
    pub fn review_agreement(&self, id: AgreementId) -> ServiceResult<ReviewItem> {
        let agreement = self
            .agreements
            .get_agreement(id)?
            .ok_or(ServiceError::NotFound)?;
        self.review_item(agreement)
    }

    /// One step of the lifecycle, by a reviewer, under `If-Match`. Answers in the documented
    /// order: role (403), unknown agreement (404), If-Match (428, 412), state (409),
    /// preconditions (422, all listed).
    pub fn transition(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: AgreementId,
        precondition: Option<&Precondition>,
        request: &TransitionRequest,
    ) -> ServiceResult<Agreement> {
        let action = request.action;
        require_person(reviewer, action.role())?;
        let current = self
            .agreements
            .get_agreement(id)?
            .ok_or(ServiceError::NotFound)?;
        Precondition::check(precondition, current.version)?;
        let now = self.clock.now();
        let org = self.organisation(current.organisation_id)?;
        let evidence = self.evidence.list_evidence(current.organisation_id)?;
        let set = EvidenceSet(&evidence);
        let effective = current.effective_state(set, now);
        let Some(next_state) = action.next_state(effective) else {
            return Err(Refusal::new(
                RefusalKind::InvalidTransition,
                format!("cannot {action} an agreement that is {effective}"),
            )
            .into());
        };
        let mut unmet = Vec::new();
        let reason = match request
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            Some(raw) => match Reason::parse(raw) {
                Ok(reason) => Some(reason),
                Err(v) => {
                    unmet.push(v.at("reason"));
                    None
                }
            },
            None if action.needs_reason() => {
                unmet.push(FieldError::new(
                    "reason",
                    "required",
                    format!("{action} needs a reason"),
                ));
                None
            }
            None => None,
        };
        if request.grant_limited_details {
            let asked = current
                .scopes
                .free_busy
                .as_ref()
                .is_some_and(|fb| fb.detail == FreeBusyDetail::LimitedDetails);
            if action != Action::Approve || !asked {
                unmet.push(FieldError::new(
                    "grant_limited_details",
                    "limited_details_requested",
                    "limited details can be granted only on approval of an agreement that asks for them",
                ));
            }
        }
        match action {
            Action::Approve => {
                let signature = self.signature_status(&org, &current);
                let overlaps = self.organisations.claim_overlaps(&org)?;
                unmet.extend(self.unmet_for_approval(
                    &org,
                    &current,
                    set,
                    &signature,
                    Some(reviewer),
                    now,
                ));
                unmet.extend(unmet_claims(&org, &overlaps));
            }
            Action::Reinstate => unmet.extend(set.required_gaps(now)),
            Action::Check if org.status != OrganisationStatus::Active => {
                unmet.push(registration_rejected());
            }
            _ => {}
        }
        if !unmet.is_empty() {
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: format!("cannot {action} yet: {} precondition(s) unmet", unmet.len()),
                unmet,
            }
            .into());
        }
        let mut next = current.clone();
        next.state = next_state;
        next.version = current.version.next();
        next.updated_at = now;
        if reason.is_some() {
            next.state_reason = reason.clone();
        }
        match action {
            Action::Check => {
                next.check = Some(ReviewCheck {
                    by: reviewer.subject.clone(),
                    at: now,
                    version: next.version,
                    evidence: review_basis(&org, set),
                });
            }
            Action::Approve => next.limited_details_granted = request.grant_limited_details,
            Action::Suspend => next.suspension = Some(SuspensionCause::Reviewer),
            Action::Reinstate => next.suspension = None,
            _ => {}
        }
        let audit_action = match action {
            Action::Check => AuditAction::AgreementChecked,
            Action::Approve => AuditAction::AgreementApproved,
            Action::Reject => AuditAction::AgreementRejected,
            Action::Suspend => AuditAction::AgreementSuspended,
            Action::Reinstate => AuditAction::AgreementReinstated,
            Action::Revoke => AuditAction::AgreementRevoked,
        };
        let mut changes = vec![(current.version, next.clone())];
        let mut events = vec![ctx.event(
            now,
            audit_action,
            "agreement",
            id.to_string(),
            serde_json::json!({
                "organisation_id": current.organisation_id.to_string(),
                "from": effective.as_str(),
                "to": next_state.as_str(),
                "reason": reason.as_ref().map(Reason::as_str),
                "version": next.version.0,
                "reviewer": { "subject": reviewer.subject, "name": reviewer.name, "email": reviewer.email },
                "limited_details_granted": (action == Action::Approve).then_some(request.grant_limited_details),
            }),
        )];
        if action == Action::Approve {
            // One agreement in force per organisation: the new one supersedes the old.
            for old in self.agreements.list_agreements(current.organisation_id)? {
                if old.id != id
                    && matches!(
                        old.state,
                        AgreementState::Approved | AgreementState::Suspended
                    )
                {
                    let mut revoked = old.clone();
                    revoked.state = AgreementState::Revoked;
                    revoked.state_reason = Reason::parse("superseded").ok();
                    revoked.version = old.version.next();
                    revoked.updated_at = now;
                    events.push(ctx.event(
                        now,
                        AuditAction::AgreementRevoked,
                        "agreement",
                        old.id.to_string(),
                        serde_json::json!({
                            "organisation_id": old.organisation_id.to_string(),
                            "from": old.state.as_str(), "to": "revoked", "reason": "superseded",
                            "superseded_by": id.to_string(), "version": revoked.version.0,
                        }),
                    ));
                    changes.push((old.version, revoked));
                }
            }
        }
        if action == Action::Approve {
            // Approval's checks on the registration (domains, ODS code, the check's basis)
            // read it above; the write re-checks them under the claims lock, so a
            // registration change or another approval of the same ODS code in between fails
            // instead of slipping through.
            let guard = ApprovalGuard {
                organisation: org.id,
                organisation_version: org.version,
                ods_code: org.ods_code.clone(),
            };
            match self
                .agreements
                .approve_agreements(&changes, &events, &guard)
            {
                Err(RepositoryError::Conflict(Conflict::OdsCodeTaken(_))) => {
                    let overlaps = ClaimOverlaps {
                        ods_code_held_elsewhere: true,
                        ..ClaimOverlaps::default()
                    };
                    return Err(Refusal {
                        kind: RefusalKind::PreconditionsUnmet,
                        detail: format!("cannot {action} yet: 1 precondition(s) unmet"),
                        unmet: unmet_claims(
                            &Organisation {
                                domains: Vec::new(),
                                ..org
                            },
                            &overlaps,
                        ),
                    }
                    .into());
                }
                other => other?,
            }
        } else {
            self.agreements.save_agreements(&changes, &events)?;
        }
        Ok(next)
    }

    /// Writes down the states time has changed (expired terms, lapsed or restored evidence),
    /// each with its audit record. Data requests never wait for this: they evaluate the
    /// effective state themselves.
    pub fn maintain_agreements(&self, ctx: &Context) -> ServiceResult<AgreementMaintenance> {
        let now = self.clock.now();
        let mut report = AgreementMaintenance::default();
        for state in [AgreementState::Approved, AgreementState::Suspended] {
            let mut after = None;
            loop {
                let page = self
                    .agreements
                    .list_agreements_by_state(Some(state), after, 200)?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for agreement in page {
                    let evidence = self.evidence.list_evidence(agreement.organisation_id)?;
                    let effective = agreement.effective_state(EvidenceSet(&evidence), now);
                    if effective == agreement.state {
                        continue;
                    }
                    let mut next = agreement.clone();
                    next.state = effective;
                    next.version = agreement.version.next();
                    next.updated_at = now;
                    let (action, reason) = match effective {
                        AgreementState::Expired => {
                            report.expired += 1;
                            (AuditAction::AgreementExpired, "the term ended")
                        }
                        AgreementState::Suspended => {
                            report.suspended += 1;
                            next.suspension = Some(SuspensionCause::EvidenceLapsed);
                            (AuditAction::AgreementSuspended, "required evidence lapsed")
                        }
                        _ => {
                            report.reinstated += 1;
                            next.suspension = None;
                            (
                                AuditAction::AgreementReinstated,
                                "required evidence is in order again",
                            )
                        }
                    };
                    next.state_reason = Reason::parse(reason).ok();
                    let event: NewAuditEvent = ctx.event(
                        now,
                        action,
                        "agreement",
                        agreement.id.to_string(),
                        serde_json::json!({
                            "organisation_id": agreement.organisation_id.to_string(),
                            "from": agreement.state.as_str(), "to": effective.as_str(),
                            "reason": reason, "version": next.version.0,
                        }),
                    );
                    match self
                        .agreements
                        .save_agreements(&[(agreement.version, next)], &[event])
                    {
                        // A reviewer acted meanwhile: their change stands; the next run looks again.
                        Err(crate::ports::RepositoryError::VersionMismatch { .. }) => {}
                        other => other?,
                    }
                }
            }
        }
        Ok(report)
    }
}
