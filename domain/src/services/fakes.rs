//! In-memory ports for unit-testing the use cases without a database, and the use-case
//! tests themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::agreement::{Agreement, AgreementId, AgreementState};
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::clock::Clock;
use crate::evidence::{Evidence, EvidenceId, Verdict};
use crate::keys::PartnerKey;
use crate::organisation::{
    ClaimedDomain, NewOrganisation, Organisation, OrganisationId, OrganisationStatus, Version,
};
use crate::ports::*;
use crate::services::{Services, SignatureScheme, VerifiedSignature};

#[derive(Debug, Default)]
pub struct Store {
    pub organisations: BTreeMap<OrganisationId, Organisation>,
    pub keys: BTreeMap<OrganisationId, Vec<PartnerKey>>,
    pub evidence: BTreeMap<EvidenceId, (Evidence, Option<Vec<u8>>)>,
    pub agreements: BTreeMap<AgreementId, Agreement>,
    pub events: Vec<NewAuditEvent>,
}

#[derive(Debug, Default, Clone)]
pub struct Fake(pub Arc<Mutex<Store>>);

impl Fake {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OrganisationRepository for Fake {
    fn create(
        &self,
        id: OrganisationId,
        new: &NewOrganisation,
        _credential: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let mut store = self.store();
        if store
            .organisations
            .values()
            .any(|o| o.status == OrganisationStatus::Active && o.ods_code == new.ods_code)
        {
            return Err(Conflict::OdsCodeTaken(new.ods_code.clone()).into());
        }
        let org = Organisation {
            id,
            status: OrganisationStatus::Active,
            status_reason: None,
            ods_code: new.ods_code.clone(),
            name: new.name.clone(),
            category: new.category,
            exchange_version: new.exchange_version,
            domains: new
                .domains
                .iter()
                .map(|d| ClaimedDomain {
                    name: d.clone(),
                    accredited: false,
                })
                .collect(),
            contacts: new.contacts.clone(),
            business_need: new.business_need.clone(),
            version: Version::FIRST,
            created_at: at,
            updated_at: at,
        };
        store.organisations.insert(id, org.clone());
        store.events.push(event.clone());
        Ok(org)
    }

    fn get(&self, id: OrganisationId) -> Result<Option<Organisation>, RepositoryError> {
        Ok(self.store().organisations.get(&id).cloned())
    }

    fn list_organisations(
        &self,
        _after: Option<OrganisationId>,
        _limit: i64,
    ) -> Result<Vec<Organisation>, RepositoryError> {
        Ok(self.store().organisations.values().cloned().collect())
    }

    fn find_credential(&self, _: &str) -> Result<Option<StoredCredential>, RepositoryError> {
        Ok(None)
    }

    fn update(
        &self,
        expected: Version,
        next: &Organisation,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let mut store = self.store();
        let current = store
            .organisations
            .get(&next.id)
            .ok_or(RepositoryError::NotFound)?;
        if current.version != expected {
            return Err(RepositoryError::VersionMismatch {
                current: current.version,
            });
        }
        store.organisations.insert(next.id, next.clone());
        store.events.push(event.clone());
        Ok(next.clone())
    }
}

impl PartnerKeyRepository for Fake {
    fn replace_keys(
        &self,
        organisation: OrganisationId,
        keys: &[PartnerKey],
        _: &NewAuditEvent,
    ) -> Result<Vec<PartnerKey>, RepositoryError> {
        self.store().keys.insert(organisation, keys.to_vec());
        Ok(keys.to_vec())
    }
    fn list_keys(&self, organisation: OrganisationId) -> Result<Vec<PartnerKey>, RepositoryError> {
        Ok(self
            .store()
            .keys
            .get(&organisation)
            .cloned()
            .unwrap_or_default())
    }
    fn find_key(
        &self,
        o: OrganisationId,
        kid: &str,
    ) -> Result<Option<PartnerKey>, RepositoryError> {
        Ok(self.list_keys(o)?.into_iter().find(|k| k.kid == kid))
    }
    fn all_keys(&self) -> Result<Vec<(OrganisationId, PartnerKey)>, RepositoryError> {
        Ok(Vec::new())
    }
    fn remove_keys(
        &self,
        _: &[(OrganisationId, String)],
        _: &[NewAuditEvent],
    ) -> Result<usize, RepositoryError> {
        Ok(0)
    }
}

impl EvidenceRepository for Fake {
    fn add_evidence(
        &self,
        evidence: &Evidence,
        document: Option<&[u8]>,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError> {
        let mut store = self.store();
        if !store.organisations.contains_key(&evidence.organisation_id) {
            return Err(RepositoryError::NotFound);
        }
        for id in supersede {
            if let Some((old, _)) = store.evidence.get_mut(id) {
                old.superseded_by = Some(evidence.id);
            }
        }
        store.evidence.insert(
            evidence.id,
            (evidence.clone(), document.map(<[u8]>::to_vec)),
        );
        store.events.push(event.clone());
        Ok(evidence.clone())
    }

    fn list_evidence(
        &self,
        organisation: OrganisationId,
    ) -> Result<Vec<Evidence>, RepositoryError> {
        let mut items: Vec<Evidence> = self
            .store()
            .evidence
            .values()
            .filter(|(e, _)| e.organisation_id == organisation)
            .map(|(e, _)| e.clone())
            .collect();
        items.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(items)
    }

    fn get_evidence(&self, id: EvidenceId) -> Result<Option<Evidence>, RepositoryError> {
        Ok(self.store().evidence.get(&id).map(|(e, _)| e.clone()))
    }

    fn judge_evidence(
        &self,
        id: EvidenceId,
        verdict: &Verdict,
        supersede: &[EvidenceId],
        event: &NewAuditEvent,
    ) -> Result<Evidence, RepositoryError> {
        let mut store = self.store();
        let (item, _) = store
            .evidence
            .get_mut(&id)
            .ok_or(RepositoryError::NotFound)?;
        if item.verdict.is_some() {
            return Err(RepositoryError::VersionMismatch {
                current: Version(1),
            });
        }
        item.verdict = Some(verdict.clone());
        let judged = item.clone();
        for old in supersede {
            if let Some((old, _)) = store.evidence.get_mut(old) {
                old.superseded_by = Some(id);
            }
        }
        store.events.push(event.clone());
        Ok(judged)
    }

    fn document(&self, id: EvidenceId) -> Result<Option<Vec<u8>>, RepositoryError> {
        Ok(self.store().evidence.get(&id).and_then(|(_, d)| d.clone()))
    }
}

impl AgreementRepository for Fake {
    fn create_agreement(
        &self,
        a: &Agreement,
        event: &NewAuditEvent,
    ) -> Result<Agreement, RepositoryError> {
        let mut store = self.store();
        store.agreements.insert(a.id, a.clone());
        store.events.push(event.clone());
        Ok(a.clone())
    }

    fn get_agreement(&self, id: AgreementId) -> Result<Option<Agreement>, RepositoryError> {
        Ok(self.store().agreements.get(&id).cloned())
    }

    fn list_agreements(
        &self,
        organisation: OrganisationId,
    ) -> Result<Vec<Agreement>, RepositoryError> {
        let mut items: Vec<Agreement> = self
            .store()
            .agreements
            .values()
            .filter(|a| a.organisation_id == organisation)
            .cloned()
            .collect();
        items.reverse();
        Ok(items)
    }

    fn list_agreements_by_state(
        &self,
        state: Option<AgreementState>,
        after: Option<AgreementId>,
        limit: i64,
    ) -> Result<Vec<Agreement>, RepositoryError> {
        Ok(self
            .store()
            .agreements
            .values()
            .filter(|a| state.is_none_or(|s| a.state == s) && after.is_none_or(|x| a.id > x))
            .take(usize::try_from(limit).unwrap_or(0))
            .cloned()
            .collect())
    }

    fn save_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
    ) -> Result<(), RepositoryError> {
        let mut store = self.store();
        for (expected, next) in changes {
            let current = store
                .agreements
                .get(&next.id)
                .ok_or(RepositoryError::NotFound)?;
            if current.version != *expected {
                return Err(RepositoryError::VersionMismatch {
                    current: current.version,
                });
            }
        }
        for (_, next) in changes {
            store.agreements.insert(next.id, next.clone());
        }
        store.events.extend(events.iter().cloned());
        Ok(())
    }
}

impl AuditRepository for Fake {
    fn append(&self, _: &NewAuditEvent) -> Result<AuditEvent, RepositoryError> {
        Err(RepositoryError::Corrupt("not used".into()))
    }
    fn list_events(&self, _: i64, _: i64) -> Result<Vec<AuditEvent>, RepositoryError> {
        Ok(Vec::new())
    }
    fn events_about(&self, _: &str, _: &str, _: i64) -> Result<Vec<AuditEvent>, RepositoryError> {
        Ok(Vec::new())
    }
}

/// Canonical JSON by serde_json's sorted maps; a "signature" is `kid.<payload>` in the clear,
/// so the tests can make good and bad ones.
#[derive(Debug)]
pub struct FakeSignatures;

impl SignatureScheme for FakeSignatures {
    fn canonicalise(&self, document: &serde_json::Value) -> Result<String, String> {
        serde_json::to_string(document).map_err(|e| e.to_string())
    }

    fn verify_detached(
        &self,
        jws: &str,
        payload: &[u8],
        keys: &[PartnerKey],
    ) -> Result<VerifiedSignature, String> {
        let (kid, signed) = jws.split_once('.').ok_or("shape")?;
        let key = keys.iter().find(|k| k.kid == kid).ok_or("unknown key")?;
        if signed.as_bytes() != payload {
            return Err("bytes differ".into());
        }
        Ok(VerifiedSignature {
            kid: key.kid.clone(),
            alg: "EdDSA".into(),
            jwk: key.jwk.clone(),
        })
    }
}

/// A clock the test moves.
#[derive(Debug, Clone)]
pub struct TestClock(pub Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn set(&self, at: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = DateTime::parse_from_rfc3339(at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn services(fake: &Fake, clock: &TestClock) -> Services {
    Services {
        organisations: Arc::new(fake.clone()),
        keys: Arc::new(fake.clone()),
        evidence: Arc::new(fake.clone()),
        agreements: Arc::new(fake.clone()),
        audit: Arc::new(fake.clone()),
        signatures: Arc::new(FakeSignatures),
        templates: Arc::new(vec![crate::agreement::AgreementTemplate {
            version: "2026-11".into(),
            title: "Partner agreement".into(),
            sha256: "ab".repeat(32),
            text: "text".into(),
        }]),
        clock: Arc::new(clock.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ReviewerIdentity, Role};
    use crate::agreement::{Action, AgreementForm, ScopeForm};
    use crate::audit::Actor;
    use crate::evidence::EvidenceForm;
    use crate::keys::KeyType;
    use crate::organisation::{ContactForm, RegistrationForm};
    use crate::services::review::TransitionRequest;
    use crate::services::{Context, Precondition, RefusalKind, ServiceError};
    use chrono::NaiveDate;

    struct World {
        fake: Fake,
        clock: TestClock,
        svc: Services,
        org: OrganisationId,
    }

    fn ctx() -> Context {
        Context {
            actor: Actor::System,
            request_id: None,
        }
    }

    fn person(subject: &str, roles: &[Role]) -> ReviewerIdentity {
        ReviewerIdentity {
            subject: subject.into(),
            name: None,
            email: None,
            roles: roles.to_vec(),
            person: true,
        }
    }

    fn world() -> World {
        let fake = Fake::default();
        let clock = TestClock(Arc::new(Mutex::new(DateTime::<Utc>::UNIX_EPOCH)));
        clock.set("2026-11-29T10:00:00Z");
        let svc = services(&fake, &clock);
        let org = svc
            .register(
                &ctx(),
                &RegistrationForm {
                    ods_code: "AB123".into(),
                    name: "Leeds Care".into(),
                    category: "pharmacy".into(),
                    exchange_version: "exchange_2016".into(),
                    domains: vec!["leedscare.org.uk".into()],
                    ig_lead: ContactForm {
                        name: "Ada".into(),
                        email: "ada@leedscare.org.uk".into(),
                    },
                    technical: ContactForm {
                        name: "Alan".into(),
                        email: "alan@leedscare.org.uk".into(),
                    },
                    business_need: "District nurses need the directory.".into(),
                },
                &CredentialDigest {
                    selector: "s".into(),
                    secret_sha256: "h".into(),
                },
                None,
            )
            .unwrap()
            .id;
        fake.store().keys.insert(
            org,
            vec![PartnerKey {
                kid: "k1".into(),
                key_type: KeyType::Ed25519,
                alg: None,
                jwk: serde_json::json!({"kty": "OKP"}),
                added_at: clock.now(),
                last_used_at: None,
            }],
        );
        World {
            fake,
            clock,
            svc,
            org,
        }
    }

    fn evidence(w: &World, kind: &str, expires: &str) -> EvidenceId {
        let form = EvidenceForm {
            kind: kind.into(),
            dspt_status: (kind == "dspt_assessment").then(|| "standards_met".into()),
            published_on: (kind == "dspt_assessment")
                .then(|| NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
            registration_number: (kind == "ico_registration").then(|| "ZA123456".into()),
            expires_on: NaiveDate::parse_from_str(expires, "%Y-%m-%d").ok(),
            ..EvidenceForm::default()
        };
        w.svc
            .submit_evidence(&ctx(), w.org, &form, None)
            .unwrap()
            .id
    }

    fn accept(w: &World, id: EvidenceId) {
        w.svc
            .judge_evidence(
                &ctx(),
                &person("r1", &[Role::Reviewer]),
                id,
                "accepted",
                "looks right",
            )
            .unwrap();
    }

    fn submitted_agreement(w: &World) -> Agreement {
        let form = AgreementForm {
            template_version: "2026-11".into(),
            address_book: Some(ScopeForm {
                attributes: Some(vec!["display_name".into()]),
                detail: None,
                organisations: None,
            }),
            free_busy: Some(ScopeForm {
                attributes: None,
                detail: Some("limited_details".into()),
                organisations: None,
            }),
            starts_on: NaiveDate::from_ymd_opt(2026, 11, 1),
            ends_on: NaiveDate::from_ymd_opt(2027, 10, 31),
            signatory_name: "Ada".into(),
            signatory_role: "Caldicott Guardian".into(),
            signatory_email: "ada@leedscare.org.uk".into(),
        };
        let draft = w.svc.draft_agreement(&ctx(), w.org, &form).unwrap();
        let payload = w.svc.signing_payload(w.org, draft.id).unwrap();
        w.svc
            .sign_agreement(&ctx(), w.org, draft.id, &format!("k1.{payload}"))
            .unwrap();
        w.svc.submit_agreement(&ctx(), w.org, draft.id).unwrap()
    }

    fn act(
        w: &World,
        who: &ReviewerIdentity,
        a: &Agreement,
        action: Action,
        reason: Option<&str>,
    ) -> Result<Agreement, ServiceError> {
        let current = w.svc.agreements.get_agreement(a.id).unwrap().unwrap();
        w.svc.transition(
            &ctx(),
            who,
            a.id,
            Some(&Precondition(vec![current.version])),
            &TransitionRequest {
                action,
                reason: reason.map(str::to_owned),
                grant_limited_details: false,
            },
        )
    }

    fn refusal(result: Result<Agreement, ServiceError>) -> (RefusalKind, Vec<&'static str>) {
        match result {
            Err(ServiceError::Refused(r)) => (r.kind, r.unmet.iter().map(|e| e.rule).collect()),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_whole_lifecycle_needs_two_people_and_evidence() {
        let w = world();
        let a = submitted_agreement(&w);
        let reviewer = person("r1", &[Role::Reviewer]);
        let approver = person("a1", &[Role::Approver, Role::Reviewer]);
        // Approval before anything: every unmet precondition at once.
        let (kind, unmet) = refusal(act(&w, &approver, &a, Action::Approve, None));
        assert_eq!(kind, RefusalKind::PreconditionsUnmet);
        assert_eq!(unmet, ["checked", "evidence_missing", "evidence_missing"]);
        accept(&w, evidence(&w, "dspt_assessment", "2027-06-30"));
        accept(&w, evidence(&w, "ico_registration", "2027-03-31"));
        act(&w, &approver, &a, Action::Check, None).unwrap();
        // The person who checked cannot approve.
        let (_, unmet) = refusal(act(&w, &approver, &a, Action::Approve, None));
        assert_eq!(unmet, ["two_people"]);
        // A check is voided by new evidence.
        act(&w, &reviewer, &a, Action::Check, None).unwrap();
        let later = evidence(&w, "ig_policy", "2030-01-01");
        let (_, unmet) = refusal(act(&w, &approver, &a, Action::Approve, None));
        assert_eq!(unmet, ["check_current"]);
        accept(&w, later);
        act(&w, &reviewer, &a, Action::Check, None).unwrap();
        let approved = act(&w, &approver, &a, Action::Approve, None).unwrap();
        assert_eq!(approved.state, AgreementState::Approved);
        let grant = w.svc.current_grant(w.org).unwrap().unwrap();
        assert_eq!(
            grant.free_busy.unwrap().detail,
            crate::agreement::FreeBusyDetail::AvailabilityOnly
        );
        // Suspend needs a reason; then no grant at once.
        let (_, unmet) = refusal(act(&w, &approver, &a, Action::Suspend, None));
        assert_eq!(unmet, ["required"]);
        act(&w, &approver, &a, Action::Suspend, Some("DSPT withdrawn")).unwrap();
        assert!(w.svc.current_grant(w.org).unwrap().is_none());
        act(&w, &approver, &a, Action::Reinstate, None).unwrap();
        assert!(w.svc.current_grant(w.org).unwrap().is_some());
        act(
            &w,
            &approver,
            &a,
            Action::Revoke,
            Some("ended by the partner"),
        )
        .unwrap();
        // Final: nothing more.
        let (kind, _) = refusal(act(&w, &approver, &a, Action::Reinstate, None));
        assert_eq!(kind, RefusalKind::InvalidTransition);
        let actions: Vec<&str> = w
            .fake
            .store()
            .events
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert!(actions.contains(&"agreement.approved") && actions.contains(&"agreement.revoked"));
    }

    #[test]
    fn a_check_is_voided_by_a_change_to_the_registration() {
        let w = world();
        let a = submitted_agreement(&w);
        accept(&w, evidence(&w, "dspt_assessment", "2027-06-30"));
        accept(&w, evidence(&w, "ico_registration", "2027-03-31"));
        act(
            &w,
            &person("r1", &[Role::Reviewer]),
            &a,
            Action::Check,
            None,
        )
        .unwrap();
        let org = w.svc.organisation(w.org).unwrap();
        w.svc
            .change_registration(
                &ctx(),
                w.org,
                Some(&Precondition(vec![org.version])),
                &crate::organisation::ChangeForm {
                    domains: Some(vec!["other.example.org".into()]),
                    ..Default::default()
                },
            )
            .unwrap();
        let (_, unmet) = refusal(act(
            &w,
            &person("a1", &[Role::Approver]),
            &a,
            Action::Approve,
            None,
        ));
        assert_eq!(unmet, ["check_current"]);
    }

    #[test]
    fn roles_people_and_if_match_come_first() {
        let w = world();
        let a = submitted_agreement(&w);
        let (kind, _) = refusal(act(
            &w,
            &person("r1", &[Role::Reviewer]),
            &a,
            Action::Approve,
            None,
        ));
        assert_eq!(kind, RefusalKind::RoleRequired);
        let mut robot = person("robot", &[Role::Reviewer]);
        robot.person = false;
        let (kind, _) = refusal(act(&w, &robot, &a, Action::Check, None));
        assert_eq!(kind, RefusalKind::PersonRequired);
        let stale = w.svc.transition(
            &ctx(),
            &person("r1", &[Role::Reviewer]),
            a.id,
            Some(&Precondition(vec![Version(1)])),
            &TransitionRequest {
                action: Action::Check,
                reason: None,
                grant_limited_details: false,
            },
        );
        assert!(matches!(stale, Err(ServiceError::Stale)));
        let missing = w.svc.transition(
            &ctx(),
            &person("r1", &[Role::Reviewer]),
            a.id,
            None,
            &TransitionRequest {
                action: Action::Check,
                reason: None,
                grant_limited_details: false,
            },
        );
        assert!(matches!(missing, Err(ServiceError::PreconditionRequired)));
    }

    #[test]
    fn signatures_must_cover_the_current_draft() {
        let w = world();
        let form = AgreementForm {
            template_version: "2026-11".into(),
            free_busy: Some(ScopeForm::default()),
            starts_on: NaiveDate::from_ymd_opt(2026, 11, 1),
            ends_on: NaiveDate::from_ymd_opt(2027, 10, 31),
            signatory_name: "Ada".into(),
            signatory_role: "DPO".into(),
            signatory_email: "ada@leedscare.org.uk".into(),
            ..AgreementForm::default()
        };
        let draft = w.svc.draft_agreement(&ctx(), w.org, &form).unwrap();
        let bad = w
            .svc
            .sign_agreement(&ctx(), w.org, draft.id, "k1.{\"other\":1}");
        assert!(
            matches!(bad, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::SignatureInvalid)
        );
        let unsigned = w.svc.submit_agreement(&ctx(), w.org, draft.id);
        assert!(
            matches!(unsigned, Err(ServiceError::Refused(r)) if r.unmet[0].rule == "signature_valid")
        );
        let payload = w.svc.signing_payload(w.org, draft.id).unwrap();
        let signed = w
            .svc
            .sign_agreement(&ctx(), w.org, draft.id, &format!("k1.{payload}"))
            .unwrap();
        // Changing the draft drops the signature.
        let mut changed = form.clone();
        changed.signatory_role = "Caldicott Guardian".into();
        let next = w
            .svc
            .change_draft(
                &ctx(),
                w.org,
                draft.id,
                Some(&Precondition(vec![signed.version])),
                &changed,
            )
            .unwrap();
        assert!(next.signature.is_none());
        assert_ne!(w.svc.signing_payload(w.org, draft.id).unwrap(), payload);
    }

    #[test]
    fn lapsed_evidence_suspends_at_once_and_maintenance_writes_it_down() {
        let w = world();
        let a = submitted_agreement(&w);
        accept(&w, evidence(&w, "dspt_assessment", "2026-12-31"));
        accept(&w, evidence(&w, "ico_registration", "2027-03-31"));
        act(
            &w,
            &person("r1", &[Role::Reviewer]),
            &a,
            Action::Check,
            None,
        )
        .unwrap();
        act(
            &w,
            &person("a1", &[Role::Approver]),
            &a,
            Action::Approve,
            None,
        )
        .unwrap();
        assert!(w.svc.current_grant(w.org).unwrap().is_some());
        w.clock.set("2027-01-01T00:00:01Z");
        assert!(
            w.svc.current_grant(w.org).unwrap().is_none(),
            "no job needed"
        );
        let report = w.svc.maintain_agreements(&ctx()).unwrap();
        assert_eq!(report.suspended, 1);
        assert_eq!(
            w.svc.agreements.get_agreement(a.id).unwrap().unwrap().state,
            AgreementState::Suspended
        );
        // New evidence accepted: the lapse lifts, maintenance records the reinstatement.
        accept(&w, evidence(&w, "dspt_assessment", "2027-12-31"));
        assert!(w.svc.current_grant(w.org).unwrap().is_some());
        assert_eq!(w.svc.maintain_agreements(&ctx()).unwrap().reinstated, 1);
        w.clock.set("2027-11-01T00:00:00Z");
        assert_eq!(w.svc.maintain_agreements(&ctx()).unwrap().expired, 1);
    }

    #[test]
    fn judged_evidence_is_immutable_and_acceptance_supersedes() {
        let w = world();
        let first = evidence(&w, "ico_registration", "2027-01-01");
        accept(&w, first);
        let again = w.svc.judge_evidence(
            &ctx(),
            &person("r2", &[Role::Reviewer]),
            first,
            "rejected",
            "no",
        );
        assert!(
            matches!(again, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::EvidenceAlreadyJudged)
        );
        let second = evidence(&w, "ico_registration", "2028-01-01");
        assert!(
            w.svc
                .evidence
                .get_evidence(first)
                .unwrap()
                .unwrap()
                .superseded_by
                .is_none(),
            "accepted stays in force"
        );
        accept(&w, second);
        assert_eq!(
            w.svc
                .evidence
                .get_evidence(first)
                .unwrap()
                .unwrap()
                .superseded_by,
            Some(second)
        );
    }

    #[test]
    fn a_rejected_registration_cannot_go_on() {
        let w = world();
        let approver = person("a1", &[Role::Approver]);
        w.svc
            .reject_registration(&ctx(), &approver, w.org, "not a care organisation")
            .unwrap();
        let refused = w.svc.submit_evidence(
            &ctx(),
            w.org,
            &EvidenceForm {
                kind: "dpia".into(),
                ..EvidenceForm::default()
            },
            None,
        );
        assert!(
            matches!(refused, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::OrganisationRejected)
        );
    }
}
