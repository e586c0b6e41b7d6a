//! Proving domain ownership: the organisation's DNS proof, a reviewer's verification by hand,
//! re-checking DNS proofs (maintenance), and the public-suffix rule on claims.

use crate::access::{ReviewerIdentity, Role};
use crate::audit::AuditAction;
use crate::dns::{check_txt_proof, EmailDomain, TxtAnswer, Verification, VerificationMethod};
use crate::organisation::{ClaimedDomain, Organisation, OrganisationId, OrganisationStatus};
use crate::ports::{Conflict, RepositoryError};
use crate::services::{
    require_person, Context, Refusal, RefusalKind, ServiceError, ServiceResult, Services,
};
use crate::text::Reason;
use crate::validation::{FieldError, ValidationErrors};

/// What re-checking the DNS proofs found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainMaintenance {
    /// Proofs still in place.
    pub present: usize,
    /// Proofs newly found missing (flagged, audited).
    pub newly_missing: usize,
    /// Flagged proofs that are back (flag cleared, audited).
    pub restored: usize,
    /// Lookups that got no answer: nothing concluded, nothing changed.
    pub unanswered: usize,
}

impl Services {
    /// `domains[i]` refusals for public suffixes among `raw` (names that fail other rules are
    /// left to those rules).
    pub(crate) fn public_suffix_violations(&self, raw: &[String]) -> Vec<FieldError> {
        raw.iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                let domain = EmailDomain::parse(raw).ok()?;
                domain.check_claimable().ok()?;
                self.public_suffixes
                    .is_public_suffix(domain.as_str())
                    .then(|| {
                        FieldError::new(
                            format!("domains[{index}]"),
                            "public_suffix",
                            format!(
                                "{domain} is a public suffix (anyone can register names under it) and can never be claimed"
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The organisation (active) and its claim on `raw_domain`; 404 when it claims no such
    /// domain, so a path never confirms other organisations' claims.
    fn claim(
        &self,
        id: OrganisationId,
        raw_domain: &str,
    ) -> ServiceResult<(Organisation, ClaimedDomain)> {
        let org = self.organisation(id)?;
        let name = EmailDomain::parse(raw_domain).map_err(|_| ServiceError::NotFound)?;
        let claim = org
            .domains
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .ok_or(ServiceError::NotFound)?;
        if org.status != OrganisationStatus::Active {
            return Err(Refusal::new(
                RefusalKind::OrganisationRejected,
                "this registration was rejected; its claims no longer count",
            )
            .into());
        }
        Ok((org, claim))
    }

    /// A claim that another organisation's verified claim covers can never be verified: 409
    /// without naming the holder.
    fn refuse_if_held(claim: &ClaimedDomain) -> ServiceResult<()> {
        if claim.verification.is_none() && claim.held_elsewhere {
            return Err(ServiceError::Storage(RepositoryError::Conflict(
                Conflict::DomainTaken(claim.name.clone()),
            )));
        }
        Ok(())
    }

    /// The organisation proves `raw_domain` with its TXT record: resolved now, through the
    /// configured nameservers. Refused (422, changing nothing, audited) when the record is
    /// absent or holds another token; 503-class when no nameserver answered. Verifying an
    /// already verified domain changes nothing.
    pub fn verify_domain_by_dns(
        &self,
        ctx: &Context,
        id: OrganisationId,
        raw_domain: &str,
    ) -> ServiceResult<Organisation> {
        let (org, claim) = self.claim(id, raw_domain)?;
        if claim.verification.is_some() {
            return Ok(org);
        }
        Self::refuse_if_held(&claim)?;
        let record = claim.name.txt_record_name();
        let answer = self
            .dns
            .txt(&record)
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let now = self.clock.now();
        if let Err(violation) = check_txt_proof(&claim.name, &claim.token, &answer) {
            let outcome = match &answer {
                TxtAnswer::NxDomain => "nxdomain",
                TxtAnswer::NoRecords => "no_txt_records",
                TxtAnswer::Records(_) => violation.rule,
            };
            self.audit.append_all(&[ctx.event(
                now,
                AuditAction::DomainVerificationFailed,
                "organisation",
                id.to_string(),
                serde_json::json!({
                    "domain": claim.name.as_str(),
                    "method": "dns",
                    "record": record,
                    "rule": violation.rule,
                    "outcome": outcome,
                }),
            )])?;
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: format!("{} is not proven yet", claim.name),
                unmet: vec![violation.at("txt_record")],
            }
            .into());
        }
        let verification = Verification {
            at: now,
            method: VerificationMethod::Dns,
            by: None,
            reason: None,
        };
        let event = ctx.event(
            now,
            AuditAction::DomainVerified,
            "organisation",
            id.to_string(),
            serde_json::json!({
                "domain": claim.name.as_str(),
                "method": "dns",
                "record": record,
                "version": org.version.next().0,
            }),
        );
        Ok(self
            .organisations
            .verify_domain(id, &claim.name, &verification, &event)?)
    }

    /// A reviewer (a person) verifies `raw_domain` by hand, for an organisation that cannot
    /// publish TXT records; the reason is recorded and audited.
    pub fn verify_domain_by_hand(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: OrganisationId,
        raw_domain: &str,
        reason: &str,
    ) -> ServiceResult<Organisation> {
        require_person(reviewer, Role::Reviewer)?;
        let (org, claim) = self.claim(id, raw_domain)?;
        let reason = Reason::parse(reason).map_err(|v| ValidationErrors(vec![v.at("reason")]))?;
        if claim.verification.is_some() {
            return Ok(org);
        }
        Self::refuse_if_held(&claim)?;
        let now = self.clock.now();
        let verification = Verification {
            at: now,
            method: VerificationMethod::Manual,
            by: Some(reviewer.subject.clone()),
            reason: Some(reason.as_str().to_owned()),
        };
        let event = ctx.event(
            now,
            AuditAction::DomainVerified,
            "organisation",
            id.to_string(),
            serde_json::json!({
                "domain": claim.name.as_str(),
                "method": "manual",
                "reason": reason.as_str(),
                "reviewer": { "subject": reviewer.subject, "name": reviewer.name, "email": reviewer.email },
                "version": org.version.next().0,
            }),
        );
        Ok(self
            .organisations
            .verify_domain(id, &claim.name, &verification, &event)?)
    }

    /// Re-resolves every DNS-verified domain: a proof that disappeared is flagged (with the
    /// time it was first missed) and audited, one that came back is cleared. The domain
    /// stays verified; reviewers see the flag as a warning. Unanswered lookups change nothing.
    pub fn recheck_domains(&self, ctx: &Context) -> ServiceResult<DomainMaintenance> {
        let mut report = DomainMaintenance::default();
        for claimed in self.organisations.dns_verified_claims()? {
            let domain = &claimed.domain;
            let record = domain.name.txt_record_name();
            let Ok(answer) = self.dns.txt(&record) else {
                report.unanswered += 1;
                continue;
            };
            let present = check_txt_proof(&domain.name, &domain.token, &answer).is_ok();
            let now = self.clock.now();
            let (since, action) = match (present, domain.record_missing_since) {
                (true, None) => {
                    report.present += 1;
                    continue;
                }
                (false, Some(_)) => continue,
                (true, Some(_)) => {
                    report.restored += 1;
                    (None, AuditAction::DomainRecordRestored)
                }
                (false, None) => {
                    report.newly_missing += 1;
                    (Some(now), AuditAction::DomainRecordMissing)
                }
            };
            let event = ctx.event(
                now,
                action,
                "organisation",
                claimed.organisation_id.to_string(),
                serde_json::json!({ "domain": domain.name.as_str(), "record": record }),
            );
            match self.organisations.set_record_missing(
                claimed.organisation_id,
                &domain.name,
                since,
                &event,
            ) {
                // The organisation dropped the domain meanwhile: nothing to flag.
                Err(RepositoryError::NotFound) => {}
                other => other?,
            }
        }
        Ok(report)
    }
}
