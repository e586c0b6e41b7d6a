//! Proving domain ownership: the organisation's DNS proof, a reviewer's verification by hand
//! or withdrawal of it, re-checking DNS proofs (maintenance), and the claimability rules
//! (reserved, retired and public-suffix names).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::access::{ReviewerIdentity, Role};
use crate::audit::AuditAction;
use crate::dns::{check_txt_proof, EmailDomain, TxtAnswer, Verification, VerificationMethod};
use crate::organisation::{ClaimedDomain, Organisation, OrganisationId, OrganisationStatus};
use crate::ports::{Conflict, RepositoryError};
use crate::services::{
    require_person, Context, Refusal, RefusalKind, ServiceError, ServiceResult, Services,
};
use crate::text::Reason;
use crate::validation::{FieldError, RuleViolation, ValidationErrors};

/// The audit action for a withdrawn verification (by a reviewer or by maintenance); the
/// details also carry `"change": "domain.unverified"`.
const DOMAIN_UNVERIFIED: AuditAction = AuditAction::DomainUnverified;
/// The `change` detail that marks a withdrawn verification.
pub const DOMAIN_UNVERIFIED_CHANGE: &str = "domain.unverified";

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
    /// Verifications withdrawn (audited): the proof stayed missing past the grace period, or
    /// the record now holds another organisation's token.
    pub demoted: usize,
}

/// The limits on proving domains, and the per-claim state they need. The state lives in this
/// process (each replica limits on its own; a restart forgets it): it bounds the load one
/// organisation puts on the resolvers and on the audit trail, which is all it is for.
#[derive(Debug)]
pub struct DomainProofLimits {
    lookup_interval: Duration,
    failure_audit_interval: Duration,
    demote_after: Duration,
    claims: Mutex<HashMap<(OrganisationId, EmailDomain), ClaimAttempts>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClaimAttempts {
    last_lookup: Option<DateTime<Utc>>,
    last_failure_audit: Option<DateTime<Utc>>,
    /// Failed attempts since the last audit record (which the next record counts).
    unaudited_failures: u64,
}

/// Claims remembered beyond this many are swept of entries whose limits have lapsed.
const SWEEP_AT: usize = 10_000;

impl Default for DomainProofLimits {
    /// One lookup per claim every 10 seconds, one failure record per claim an hour, and a
    /// vanished proof withdrawn after 14 days.
    fn default() -> Self {
        Self::new(
            Duration::seconds(10),
            Duration::hours(1),
            Duration::days(14),
        )
    }
}

impl DomainProofLimits {
    pub fn new(
        lookup_interval: Duration,
        failure_audit_interval: Duration,
        demote_after: Duration,
    ) -> Self {
        Self {
            lookup_interval,
            failure_audit_interval,
            demote_after,
            claims: Mutex::new(HashMap::new()),
        }
    }

    fn claims(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(OrganisationId, EmailDomain), ClaimAttempts>> {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.len() > SWEEP_AT {
            let (lookup, audit) = (self.lookup_interval, self.failure_audit_interval);
            let now = Utc::now();
            claims.retain(|_, c| {
                c.last_lookup.is_some_and(|t| t + lookup > now)
                    || c.last_failure_audit.is_some_and(|t| t + audit > now)
            });
        }
        claims
    }

    /// Takes the claim's lookup slot at `now`, or says in how many seconds it is free.
    fn take_lookup(
        &self,
        key: &(OrganisationId, EmailDomain),
        now: DateTime<Utc>,
    ) -> Result<(), u64> {
        let mut claims = self.claims();
        let entry = claims.entry(key.clone()).or_default();
        if let Some(last) = entry.last_lookup {
            let wait = (last + self.lookup_interval) - now;
            if wait > Duration::zero() {
                let ms = u64::try_from(wait.num_milliseconds()).unwrap_or(0);
                let cap = u64::try_from(self.lookup_interval.num_seconds()).unwrap_or(1);
                return Err(ms.div_ceil(1000).clamp(1, cap.max(1)));
            }
        }
        entry.last_lookup = Some(now);
        Ok(())
    }

    /// Counts a failed attempt; `Some(n)` when it gets an audit record now, standing for `n`
    /// failed attempts (this one and those not recorded since the last record).
    fn failure_to_audit(
        &self,
        key: &(OrganisationId, EmailDomain),
        now: DateTime<Utc>,
    ) -> Option<u64> {
        let mut claims = self.claims();
        let entry = claims.entry(key.clone()).or_default();
        entry.unaudited_failures += 1;
        match entry.last_failure_audit {
            Some(last) if now - last < self.failure_audit_interval => None,
            _ => {
                entry.last_failure_audit = Some(now);
                Some(std::mem::take(&mut entry.unaudited_failures))
            }
        }
    }
}

/// Why a name can never be claimed, if it cannot: reserved, retired or a public suffix.
fn unclaimable(services: &Services, domain: &EmailDomain) -> Option<RuleViolation> {
    if let Err(violation) = domain.check_claimable() {
        return Some(violation);
    }
    services
        .public_suffixes
        .is_public_suffix(domain.as_str())
        .then(|| {
            RuleViolation::new(
                "public_suffix",
                format!(
                    "{domain} is a public suffix (anyone can register names under it) and can never be claimed"
                ),
            )
        })
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
                unclaimable(self, &domain).map(|v| v.at(format!("domains[{index}]")))
            })
            .collect()
    }

    /// A claim on a name that can never be claimed (reserved, retired, a public suffix: the
    /// rules may have changed since it was made) can never be verified: 422 naming the rule.
    fn refuse_if_unclaimable(domain: &EmailDomain, services: &Services) -> ServiceResult<()> {
        match unclaimable(services, domain) {
            None => Ok(()),
            Some(violation) => Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: format!("{domain} can never be claimed, so it cannot be verified"),
                unmet: vec![violation.at("domain")],
            }
            .into()),
        }
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
        Self::refuse_if_unclaimable(&claim.name, self)?;
        if claim.verification.is_some() {
            return Ok(org);
        }
        Self::refuse_if_held(&claim)?;
        let record = claim.name.txt_record_name();
        if record.len() > EmailDomain::MAX_LEN {
            return Err(Refusal {
                kind: RefusalKind::PreconditionsUnmet,
                detail: format!("{} cannot be proven by DNS", claim.name),
                unmet: vec![FieldError::new(
                    "txt_record",
                    "txt_record_name_length",
                    format!(
                        "{record} would be longer than {} characters, the most a DNS name may have: a domain longer than {} characters cannot publish the proof; ask a reviewer to verify it by hand",
                        EmailDomain::MAX_LEN,
                        EmailDomain::MAX_LEN - crate::dns::TXT_LABEL.len() - 1
                    ),
                )],
            }
            .into());
        }
        let key = (id, claim.name.clone());
        self.domain_proof
            .take_lookup(&key, self.clock.now())
            .map_err(|retry_after_seconds| ServiceError::RateLimited {
                retry_after_seconds,
            })?;
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
            // At most one record per claim and interval: repeated failures are counted into
            // the next record, so they cannot flood the permanent trail.
            if let Some(attempts) = self.domain_proof.failure_to_audit(&key, now) {
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
                        "attempts": attempts,
                    }),
                )])?;
            }
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
        Self::refuse_if_unclaimable(&claim.name, self)?;
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

    /// An approver (a person) withdraws the verification of `raw_domain`, with a reason: a
    /// name verified by mistake, or held by an organisation that no longer controls it, is
    /// free again for its rightful owner. The claim stays (unverified, same token), so the
    /// organisation can prove it again. Withdrawing an unverified claim changes nothing.
    pub fn unverify_domain_by_hand(
        &self,
        ctx: &Context,
        reviewer: &ReviewerIdentity,
        id: OrganisationId,
        raw_domain: &str,
        reason: &str,
    ) -> ServiceResult<Organisation> {
        require_person(reviewer, Role::Approver)?;
        let (org, claim) = self.claim(id, raw_domain)?;
        let reason = Reason::parse(reason).map_err(|v| ValidationErrors(vec![v.at("reason")]))?;
        let Some(was) = claim.verification.as_ref() else {
            return Ok(org);
        };
        let now = self.clock.now();
        let event = ctx.event(
            now,
            DOMAIN_UNVERIFIED,
            "organisation",
            id.to_string(),
            serde_json::json!({
                "change": DOMAIN_UNVERIFIED_CHANGE,
                "changed": ["domains"],
                "domain": claim.name.as_str(),
                "cause": "reviewer",
                "reason": reason.as_str(),
                "reviewer": { "subject": reviewer.subject, "name": reviewer.name, "email": reviewer.email },
                "was": { "method": was.method.as_str(), "at": was.at, "by": was.by },
                "version": org.version.next().0,
            }),
        );
        Ok(self
            .organisations
            .unverify_domain(id, &claim.name, was.at, &event)?)
    }

    /// Re-resolves every DNS-verified domain: a proof that disappeared is flagged (with the
    /// time it was first missed) and audited, one that came back is cleared; reviewers see
    /// the flag as a warning. A proof missing for longer than the grace period, or a record
    /// that now holds another organisation's token for the name, withdraws the verification
    /// (audited), so a name cannot be held for ever on a proof that is gone. Unanswered
    /// lookups change nothing.
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
            let rival = !present
                && matches!(&answer, TxtAnswer::Records(values) if values.iter().any(|v| {
                    claimed.rival_tokens.iter().any(|t| v.trim() == t.txt_value())
                }));
            let now = self.clock.now();
            let overdue = domain
                .record_missing_since
                .is_some_and(|since| now - since > self.domain_proof.demote_after);
            if !present && (rival || overdue) {
                let Some(was) = domain.verification.as_ref() else {
                    continue;
                };
                let event = ctx.event(
                    now,
                    DOMAIN_UNVERIFIED,
                    "organisation",
                    claimed.organisation_id.to_string(),
                    serde_json::json!({
                        "change": DOMAIN_UNVERIFIED_CHANGE,
                        "changed": ["domains"],
                        "domain": domain.name.as_str(),
                        "record": record,
                        "cause": if rival { "another_organisation_token" } else { "record_missing" },
                        "record_missing_since": domain.record_missing_since,
                        "was": { "method": was.method.as_str(), "at": was.at },
                    }),
                );
                match self.organisations.unverify_domain(
                    claimed.organisation_id,
                    &domain.name,
                    was.at,
                    &event,
                ) {
                    Ok(_) => report.demoted += 1,
                    // Dropped or verified afresh meanwhile: the next run looks again.
                    Err(RepositoryError::NotFound | RepositoryError::VersionMismatch { .. }) => {}
                    Err(other) => return Err(other.into()),
                }
                continue;
            }
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
