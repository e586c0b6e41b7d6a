//! In-memory ports for unit-testing the use cases without a database, and the use-case
//! tests themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::agreement::{Agreement, AgreementId, AgreementState};
use crate::audit::{AuditEvent, NewAuditEvent};
use crate::clock::Clock;
use crate::dns::{
    DnsUnavailable, EmailDomain, PublicSuffixes, TxtAnswer, TxtResolver, Verification,
    VerificationMethod,
};
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
    /// Live registration credentials: selector to organisation.
    pub credentials: BTreeMap<String, OrganisationId>,
    pub tokens: BTreeMap<OrganisationId, crate::registration_token::RegistrationTokenStatus>,
    /// TXT answers by record name; a name not listed is NXDOMAIN.
    pub dns: BTreeMap<String, Result<TxtAnswer, DnsUnavailable>>,
}

impl Store {
    fn active_verified_elsewhere(&self, id: OrganisationId) -> Vec<EmailDomain> {
        self.organisations
            .values()
            .filter(|o| o.id != id && o.status == OrganisationStatus::Active)
            .flat_map(|o| o.domains.iter())
            .filter(|d| d.verification.is_some())
            .map(|d| d.name.clone())
            .collect()
    }

    /// The first of `names` equal to or under a domain verified by another organisation.
    fn taken(&self, id: OrganisationId, names: &[EmailDomain]) -> Option<EmailDomain> {
        let held = self.active_verified_elsewhere(id);
        names
            .iter()
            .find(|n| held.iter().any(|h| n.is_within(h.as_str())))
            .cloned()
    }

    fn ods_held_elsewhere(&self, id: OrganisationId, code: &crate::ods::OdsCode) -> bool {
        self.agreements.values().any(|a| {
            a.organisation_id != id
                && matches!(
                    a.state,
                    AgreementState::Approved | AgreementState::Suspended
                )
                && self
                    .organisations
                    .get(&a.organisation_id)
                    .is_some_and(|o| o.ods_code == *code)
        })
    }

    /// The organisation as read: `held_elsewhere` computed.
    fn read(&self, id: OrganisationId) -> Option<Organisation> {
        let mut org = self.organisations.get(&id)?.clone();
        let held = self.active_verified_elsewhere(id);
        for d in &mut org.domains {
            d.held_elsewhere = held.iter().any(|h| d.name.is_within(h.as_str()));
        }
        Some(org)
    }
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
        credential: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let mut store = self.store();
        store.credentials.insert(credential.selector.clone(), id);
        store.tokens.insert(
            id,
            crate::registration_token::RegistrationTokenStatus::registered(at),
        );
        if store.ods_held_elsewhere(id, &new.ods_code) {
            return Err(Conflict::OdsCodeTaken(new.ods_code.clone()).into());
        }
        if let Some(taken) = store.taken(id, &new.domains) {
            return Err(Conflict::DomainTaken(taken).into());
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
                .map(|d| ClaimedDomain::unverified(d.clone()))
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
        Ok(self.store().read(id))
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

    fn registration_tokens(
        &self,
        ids: &[OrganisationId],
    ) -> Result<
        std::collections::HashMap<
            OrganisationId,
            crate::registration_token::RegistrationTokenStatus,
        >,
        RepositoryError,
    > {
        let store = self.store();
        Ok(ids
            .iter()
            .filter_map(|id| store.tokens.get(id).map(|t| (*id, t.clone())))
            .collect())
    }

    fn rotate_credential(
        &self,
        id: OrganisationId,
        current_selector: &str,
        next: &CredentialDigest,
        at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<crate::registration_token::RegistrationTokenStatus, RepositoryError> {
        let mut store = self.store();
        if store.credentials.get(current_selector) != Some(&id) {
            return Err(RepositoryError::NotFound);
        }
        store.credentials.remove(current_selector);
        store.credentials.insert(next.selector.clone(), id);
        let token = store.tokens.get_mut(&id).ok_or(RepositoryError::NotFound)?;
        token.rotated_at = Some(at);
        token.rotations += 1;
        token.version = token.version.next();
        let token = token.clone();
        store.events.push(event.clone());
        Ok(token)
    }

    fn replace_token_state(
        &self,
        id: OrganisationId,
        expected: Version,
        next: &crate::registration_token::RegistrationTokenStatus,
        credential: Option<&CredentialDigest>,
        event: &NewAuditEvent,
    ) -> Result<crate::registration_token::RegistrationTokenStatus, RepositoryError> {
        let mut store = self.store();
        let current = store.tokens.get(&id).ok_or(RepositoryError::NotFound)?;
        if current.version != expected {
            return Err(RepositoryError::VersionMismatch {
                current: current.version,
            });
        }
        store.credentials.retain(|_, owner| *owner != id);
        if let Some(credential) = credential {
            store.credentials.insert(credential.selector.clone(), id);
        }
        store.tokens.insert(id, next.clone());
        store.events.push(event.clone());
        Ok(next.clone())
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
        let added: Vec<EmailDomain> = next
            .domains
            .iter()
            .filter(|d| !current.domains.iter().any(|c| c.name == d.name))
            .map(|d| d.name.clone())
            .collect();
        if let Some(taken) = store.taken(next.id, &added) {
            return Err(Conflict::DomainTaken(taken).into());
        }
        let mut stored = next.clone();
        for d in &mut stored.domains {
            d.held_elsewhere = false;
        }
        store.organisations.insert(next.id, stored);
        store.events.push(event.clone());
        Ok(store.read(next.id).unwrap_or_else(|| next.clone()))
    }

    fn verify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verification: &Verification,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let mut store = self.store();
        if store.taken(id, std::slice::from_ref(domain)).is_some() {
            return Err(Conflict::DomainTaken(domain.clone()).into());
        }
        let org = store
            .organisations
            .get_mut(&id)
            .filter(|o| o.status == OrganisationStatus::Active)
            .ok_or(RepositoryError::NotFound)?;
        let claim = org
            .domains
            .iter_mut()
            .find(|d| d.name == *domain)
            .ok_or(RepositoryError::NotFound)?;
        if claim.verification.is_some() {
            // Verified meanwhile: the first verification stands.
            return store.read(id).ok_or(RepositoryError::NotFound);
        }
        claim.verification = Some(verification.clone());
        claim.record_missing_since = None;
        org.version = org.version.next();
        store.events.push(event.clone());
        store.read(id).ok_or(RepositoryError::NotFound)
    }

    fn unverify_domain(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        verified_at: DateTime<Utc>,
        event: &NewAuditEvent,
    ) -> Result<Organisation, RepositoryError> {
        let mut store = self.store();
        let org = store
            .organisations
            .get_mut(&id)
            .ok_or(RepositoryError::NotFound)?;
        let version = org.version;
        let claim = org
            .domains
            .iter_mut()
            .find(|d| d.name == *domain)
            .ok_or(RepositoryError::NotFound)?;
        if claim.verification.as_ref().map(|v| v.at) != Some(verified_at) {
            return Err(RepositoryError::VersionMismatch { current: version });
        }
        claim.verification = None;
        claim.record_missing_since = None;
        org.version = version.next();
        store.events.push(event.clone());
        store.read(id).ok_or(RepositoryError::NotFound)
    }

    fn set_record_missing(
        &self,
        id: OrganisationId,
        domain: &EmailDomain,
        since: Option<DateTime<Utc>>,
        event: &NewAuditEvent,
    ) -> Result<(), RepositoryError> {
        let mut store = self.store();
        let org = store
            .organisations
            .get_mut(&id)
            .ok_or(RepositoryError::NotFound)?;
        let claim = org
            .domains
            .iter_mut()
            .find(|d| d.name == *domain)
            .ok_or(RepositoryError::NotFound)?;
        claim.record_missing_since = since;
        org.version = org.version.next();
        store.events.push(event.clone());
        Ok(())
    }

    fn dns_verified_claims(&self) -> Result<Vec<DnsVerifiedClaim>, RepositoryError> {
        let store = self.store();
        Ok(store
            .organisations
            .values()
            .filter(|o| o.status == OrganisationStatus::Active)
            .flat_map(|o| {
                o.domains
                    .iter()
                    .filter(|d| {
                        d.verification
                            .as_ref()
                            .is_some_and(|v| v.method == VerificationMethod::Dns)
                    })
                    .map(|d| DnsVerifiedClaim {
                        organisation_id: o.id,
                        domain: d.clone(),
                        rival_tokens: store
                            .organisations
                            .values()
                            .filter(|r| r.id != o.id && r.status == OrganisationStatus::Active)
                            .flat_map(|r| r.domains.iter())
                            .filter(|r| r.name == d.name)
                            .map(|r| r.token.clone())
                            .collect(),
                    })
            })
            .collect())
    }

    fn claim_overlaps(&self, org: &Organisation) -> Result<ClaimOverlaps, RepositoryError> {
        let store = self.store();
        let held = store.active_verified_elsewhere(org.id);
        let mut overlaps = ClaimOverlaps {
            ods_code_held_elsewhere: store.ods_held_elsewhere(org.id, &org.ods_code),
            ods_code_registrations_elsewhere: store
                .organisations
                .values()
                .filter(|o| {
                    o.id != org.id
                        && o.status == OrganisationStatus::Active
                        && o.ods_code == org.ods_code
                })
                .count(),
            ..ClaimOverlaps::default()
        };
        for ours in &org.domains {
            for theirs in &held {
                if ours.name.is_within(theirs.as_str()) || theirs.is_within(ours.name.as_str()) {
                    overlaps.domains.push(DomainOverlap {
                        ours: ours.name.clone(),
                        theirs: theirs.clone(),
                    });
                }
            }
        }
        Ok(overlaps)
    }
}

/// TXT answers from the store's table: a stand-in for DNS in the use-case tests only (the
/// end-to-end tests use a real DNS server).
impl TxtResolver for Fake {
    fn txt(&self, name: &str) -> Result<TxtAnswer, DnsUnavailable> {
        self.store()
            .dns
            .get(name)
            .cloned()
            .unwrap_or(Ok(TxtAnswer::NxDomain))
    }
}

/// A few entries of the Public Suffix List.
#[derive(Debug)]
pub struct FakeSuffixes;

impl PublicSuffixes for FakeSuffixes {
    fn is_public_suffix(&self, name: &str) -> bool {
        [
            "uk",
            "org.uk",
            "co.uk",
            "nhs.uk",
            "gov.uk",
            "org",
            "com",
            "github.io",
        ]
        .contains(&name)
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
    fn remove_idle_keys(
        &self,
        _: &[(OrganisationId, String)],
        _: DateTime<Utc>,
        _: &dyn Fn(OrganisationId, &[String]) -> NewAuditEvent,
    ) -> Result<Vec<(OrganisationId, String)>, RepositoryError> {
        Ok(Vec::new())
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

    fn approve_agreements(
        &self,
        changes: &[(Version, Agreement)],
        events: &[NewAuditEvent],
        guard: &ApprovalGuard,
    ) -> Result<(), RepositoryError> {
        {
            let store = self.store();
            let org = store
                .organisations
                .get(&guard.organisation)
                .ok_or(RepositoryError::NotFound)?;
            if org.version != guard.organisation_version {
                return Err(RepositoryError::VersionMismatch {
                    current: org.version,
                });
            }
            if store.ods_held_elsewhere(guard.organisation, &guard.ods_code) {
                return Err(Conflict::OdsCodeTaken(guard.ods_code.clone()).into());
            }
        }
        self.save_agreements(changes, events)
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
    fn append_all(&self, events: &[NewAuditEvent]) -> Result<(), RepositoryError> {
        self.store().events.extend(events.iter().cloned());
        Ok(())
    }
    fn seal(&self, _: &dyn crate::merkle::Sha256, _: i64) -> Result<usize, RepositoryError> {
        Ok(0)
    }
    fn sealed_head(&self) -> Result<(i64, Option<String>), RepositoryError> {
        Ok((0, None))
    }
    fn sealed_records(
        &self,
        _: &AuditFilter,
        _: Option<i64>,
        _: i64,
    ) -> Result<Vec<SealedRecord>, RepositoryError> {
        Ok(Vec::new())
    }
    fn tree_nodes(
        &self,
        _: &[crate::merkle::NodeId],
    ) -> Result<
        std::collections::HashMap<crate::merkle::NodeId, crate::merkle::Hash>,
        RepositoryError,
    > {
        Ok(Default::default())
    }
    fn add_checkpoint(
        &self,
        _: &Checkpoint,
        _: &serde_json::Value,
        _: &str,
    ) -> Result<(), RepositoryError> {
        Ok(())
    }
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, RepositoryError> {
        Ok(Vec::new())
    }
    fn audit_keys(&self) -> Result<Vec<AuditKey>, RepositoryError> {
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
        dns: Arc::new(fake.clone()),
        public_suffixes: Arc::new(FakeSuffixes),
        domain_proof: Arc::new(crate::services::domains::DomainProofLimits::default()),
        hasher: Arc::new(crate::merkle::tests::TestHash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{ReviewerIdentity, Role};
    use crate::agreement::{Action, AgreementForm, ScopeForm};
    use crate::audit::Actor;
    use crate::dns::DomainStatus;
    use crate::evidence::EvidenceForm;
    use crate::keys::KeyType;
    use crate::organisation::{ContactForm, RegistrationForm};
    use crate::services::domains::DomainMaintenance;
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
        let w = World {
            fake,
            clock,
            svc,
            org,
        };
        publish_and_verify(&w, w.org, "leedscare.org.uk");
        w
    }

    /// Publishes the organisation's TXT proof for `domain` and verifies it.
    fn publish_and_verify(w: &World, org: OrganisationId, domain: &str) -> Organisation {
        publish(w, org, domain);
        w.svc.verify_domain_by_dns(&ctx(), org, domain).unwrap()
    }

    /// Moves the clock on by `seconds`.
    fn later(w: &World, seconds: i64) {
        *w.clock.0.lock().unwrap() += chrono::Duration::seconds(seconds);
    }

    fn publish(w: &World, org: OrganisationId, domain: &str) {
        let claim = w
            .svc
            .organisation(org)
            .unwrap()
            .domains
            .into_iter()
            .find(|d| d.name.as_str() == domain)
            .unwrap();
        w.fake.store().dns.insert(
            claim.name.txt_record_name(),
            Ok(TxtAnswer::Records(vec![claim.token.txt_value()])),
        );
    }

    fn register_other(
        w: &World,
        ods: &str,
        domains: &[&str],
    ) -> Result<Organisation, ServiceError> {
        w.svc.register(
            &ctx(),
            &RegistrationForm {
                ods_code: ods.into(),
                name: "Other Care".into(),
                category: "pharmacy".into(),
                exchange_version: "exchange_2016".into(),
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                ig_lead: ContactForm {
                    name: "Ada".into(),
                    email: "ada@other.example.org".into(),
                },
                technical: ContactForm {
                    name: "Alan".into(),
                    email: "alan@other.example.org".into(),
                },
                business_need: "District nurses need the directory.".into(),
            },
            &CredentialDigest {
                selector: "s2".into(),
                secret_sha256: "h".into(),
            },
            None,
        )
    }

    fn status_of(w: &World, org: OrganisationId, domain: &str) -> DomainStatus {
        w.svc
            .organisation(org)
            .unwrap()
            .domains
            .iter()
            .find(|d| d.name.as_str() == domain)
            .unwrap()
            .status()
    }

    fn unmet_rules(result: Result<Organisation, ServiceError>) -> Vec<&'static str> {
        match result {
            Err(ServiceError::Refused(r)) => r.unmet.iter().map(|e| e.rule).collect(),
            Err(ServiceError::Invalid(e)) => e.0.iter().map(|e| e.rule).collect(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn is_domain_taken(result: &Result<Organisation, ServiceError>) -> bool {
        matches!(
            result,
            Err(ServiceError::Storage(RepositoryError::Conflict(
                Conflict::DomainTaken(_)
            )))
        )
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
        assert_eq!(unmet, ["check_current", "domains_verified"]);
    }

    #[test]
    fn a_dns_proof_verifies_and_every_failure_changes_nothing() {
        let w = world();
        let other = register_other(
            &w,
            "XY999",
            &["other.example.org", "mail.other.example.org"],
        )
        .unwrap()
        .id;
        let version = w.svc.organisation(other).unwrap().version;
        // NXDOMAIN, no TXT, a foreign token, a server that does not answer.
        assert_eq!(
            unmet_rules(
                w.svc
                    .verify_domain_by_dns(&ctx(), other, "other.example.org")
            ),
            ["txt_record_missing"]
        );
        let record = "_federation-gateway.other.example.org".to_owned();
        // (An hour apart: one lookup per claim every few seconds, one failure record an hour.)
        later(&w, 3600);
        w.fake
            .store()
            .dns
            .insert(record.clone(), Ok(TxtAnswer::NoRecords));
        assert_eq!(
            unmet_rules(
                w.svc
                    .verify_domain_by_dns(&ctx(), other, "other.example.org")
            ),
            ["txt_record_missing"]
        );
        later(&w, 3600);
        w.fake.store().dns.insert(
            record.clone(),
            Ok(TxtAnswer::Records(vec![
                "federation-gateway-verification=00000000000000000000000000000000".into(),
            ])),
        );
        assert_eq!(
            unmet_rules(
                w.svc
                    .verify_domain_by_dns(&ctx(), other, "other.example.org")
            ),
            ["txt_record_mismatch"]
        );
        later(&w, 3600);
        w.fake
            .store()
            .dns
            .insert(record, Err(DnsUnavailable("timed out".into())));
        assert!(matches!(
            w.svc
                .verify_domain_by_dns(&ctx(), other, "other.example.org"),
            Err(ServiceError::Unavailable(_))
        ));
        let org = w.svc.organisation(other).unwrap();
        assert_eq!(org.version, version, "nothing changed");
        assert_eq!(org.domains[0].status(), DomainStatus::Unverified);
        // Failed attempts are audited; an unclaimed domain is simply not found.
        let failed = w
            .fake
            .store()
            .events
            .iter()
            .filter(|e| e.action == crate::audit::AuditAction::DomainVerificationFailed)
            .count();
        assert_eq!(failed, 3);
        assert!(matches!(
            w.svc
                .verify_domain_by_dns(&ctx(), other, "leedscare.org.uk"),
            Err(ServiceError::NotFound)
        ));
        // The right token verifies, with time and method, and bumps the version.
        later(&w, 3600);
        let verified = publish_and_verify(&w, other, "other.example.org");
        let claim = &verified.domains[0];
        assert_eq!(claim.status(), DomainStatus::Verified);
        let how = claim.verification.as_ref().unwrap();
        assert_eq!(
            (how.method, how.at),
            (VerificationMethod::Dns, w.clock.now())
        );
        assert_eq!(verified.version, version.next());
    }

    #[test]
    fn only_verified_claims_block_and_they_block_subdomains_not_parents() {
        let w = world();
        // The squatter's unverified claim blocks nobody.
        let squatter = register_other(&w, "SQ001", &["realowner.example.org"])
            .unwrap()
            .id;
        let owner = register_other(&w, "RO001", &["realowner.example.org"])
            .unwrap()
            .id;
        publish_and_verify(&w, owner, "realowner.example.org");
        assert_eq!(
            status_of(&w, squatter, "realowner.example.org"),
            DomainStatus::Conflict
        );
        // Even with "a proof", the squatter cannot verify, and nothing names the owner.
        publish(&w, squatter, "realowner.example.org");
        let refused = w
            .svc
            .verify_domain_by_dns(&ctx(), squatter, "realowner.example.org");
        assert!(is_domain_taken(&refused), "{refused:?}");
        assert!(!format!("{refused:?}").contains(&owner.to_string()));
        // A verified domain blocks itself and its subdomains for new claims...
        assert!(is_domain_taken(&register_other(
            &w,
            "NB001",
            &["realowner.example.org"]
        )));
        assert!(is_domain_taken(&register_other(
            &w,
            "NB002",
            &["mail.realowner.example.org"]
        )));
        // ...but not its parent: the parent's owner can still claim and verify it.
        let parent = register_other(&w, "PA001", &["example.org"]).unwrap().id;
        publish_and_verify(&w, parent, "example.org");
        // leedscare.org.uk (verified in world) sits beside, not under: unaffected.
        assert_eq!(
            status_of(&w, w.org, "leedscare.org.uk"),
            DomainStatus::Verified
        );
        // A patch that adds a held name is refused; one that keeps a conflicting claim is not.
        let current = w.svc.organisation(squatter).unwrap();
        let added = w.svc.change_registration(
            &ctx(),
            squatter,
            Some(&Precondition(vec![current.version])),
            &crate::organisation::ChangeForm {
                domains: Some(vec![
                    "realowner.example.org".into(),
                    "x.realowner.example.org".into(),
                ]),
                ..Default::default()
            },
        );
        assert!(is_domain_taken(&added));
        let renamed = w.svc.change_registration(
            &ctx(),
            squatter,
            Some(&Precondition(vec![current.version])),
            &crate::organisation::ChangeForm {
                name: Some("Squatter Ltd".into()),
                ..Default::default()
            },
        );
        assert!(renamed.is_ok(), "{renamed:?}");
    }

    #[test]
    fn public_suffixes_can_never_be_claimed() {
        let w = world();
        assert_eq!(
            unmet_rules(register_other(
                &w,
                "PS001",
                &["org.uk", "ok.example.org", "nhs.net"]
            )),
            ["reserved_domain", "public_suffix"]
        );
        assert_eq!(
            unmet_rules(register_other(&w, "PS002", &["github.io"])),
            ["public_suffix"]
        );
    }

    #[test]
    fn reviewers_verify_by_hand_with_a_reason_as_people() {
        let w = world();
        let other = register_other(&w, "MV001", &["manual.example.org"])
            .unwrap()
            .id;
        let reviewer = person("r1", &[Role::Reviewer]);
        let mut robot = reviewer.clone();
        robot.person = false;
        let refused =
            w.svc
                .verify_domain_by_hand(&ctx(), &robot, other, "manual.example.org", "phoned them");
        assert!(
            matches!(refused, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::PersonRequired)
        );
        assert_eq!(
            unmet_rules(w.svc.verify_domain_by_hand(
                &ctx(),
                &reviewer,
                other,
                "manual.example.org",
                " "
            )),
            ["required"]
        );
        let org = w
            .svc
            .verify_domain_by_hand(
                &ctx(),
                &reviewer,
                other,
                "manual.example.org",
                "confirmed by phone with the IT lead",
            )
            .unwrap();
        let how = org.domains[0].verification.clone().unwrap();
        assert_eq!(how.method, VerificationMethod::Manual);
        assert_eq!(how.by.as_deref(), Some("r1"));
        assert!(w
            .fake
            .store()
            .events
            .iter()
            .any(|e| e.action == crate::audit::AuditAction::DomainVerified
                && e.details["method"] == "manual"
                && e.details["reason"] == "confirmed by phone with the IT lead"));
    }

    #[test]
    fn approval_needs_verified_domains_and_a_free_ods_code() {
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
        act(
            &w,
            &person("a1", &[Role::Approver]),
            &a,
            Action::Approve,
            None,
        )
        .unwrap();
        // The code is held now: a later registration naming it is refused.
        let later = register_other(&w, "AB123", &["later.example.org"]);
        assert!(matches!(
            later,
            Err(ServiceError::Storage(RepositoryError::Conflict(
                Conflict::OdsCodeTaken(_)
            )))
        ));
        // A registration made before approval may stand, but can never be approved.
        let mut store = w.fake.store();
        let mut early = store.organisations.values().next().unwrap().clone();
        early.id = OrganisationId::new();
        early.domains = vec![ClaimedDomain::unverified(
            EmailDomain::parse("early.example.org").unwrap(),
        )];
        store.organisations.insert(early.id, early.clone());
        drop(store);
        let overlaps = w.svc.organisations.claim_overlaps(&early).unwrap();
        let rules: Vec<_> = crate::services::review::unmet_claims(&early, &overlaps)
            .iter()
            .map(|e| e.rule)
            .collect();
        assert_eq!(rules, ["domains_verified", "ods_code_free"]);
        assert_eq!(overlaps.ods_code_registrations_elsewhere, 1);
    }

    #[test]
    fn maintenance_flags_a_vanished_proof_and_clears_it_when_back() {
        let w = world();
        let record = "_federation-gateway.leedscare.org.uk".to_owned();
        let published = w.fake.store().dns.get(&record).cloned().unwrap();
        let report = w.svc.recheck_domains(&ctx()).unwrap();
        assert_eq!(report.present, 1);
        w.fake.store().dns.remove(&record);
        assert_eq!(w.svc.recheck_domains(&ctx()).unwrap().newly_missing, 1);
        let claim = w.svc.organisation(w.org).unwrap().domains[0].clone();
        assert_eq!(claim.record_missing_since, Some(w.clock.now()));
        assert_eq!(
            claim.status(),
            DomainStatus::Verified,
            "still verified, but flagged"
        );
        // A second run does not flag it again; an unanswered lookup concludes nothing.
        assert_eq!(
            w.svc.recheck_domains(&ctx()).unwrap(),
            DomainMaintenance::default()
        );
        w.fake
            .store()
            .dns
            .insert(record.clone(), Err(DnsUnavailable("down".into())));
        assert_eq!(w.svc.recheck_domains(&ctx()).unwrap().unanswered, 1);
        w.fake.store().dns.insert(record, published);
        assert_eq!(w.svc.recheck_domains(&ctx()).unwrap().restored, 1);
        assert_eq!(
            w.svc.organisation(w.org).unwrap().domains[0].record_missing_since,
            None
        );
        let actions: Vec<_> = w
            .fake
            .store()
            .events
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert!(
            actions.contains(&"domain.record_missing")
                && actions.contains(&"domain.record_restored")
        );
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

    /// A claim the registration rules would refuse now, stored as if made before they did.
    fn smuggle_claim(w: &World, org: OrganisationId, domain: &str) {
        let mut store = w.fake.store();
        let stored = store.organisations.get_mut(&org).unwrap();
        stored.domains.push(ClaimedDomain::unverified(
            EmailDomain::parse(domain).unwrap(),
        ));
    }

    fn failed_attempts(w: &World) -> Vec<u64> {
        w.fake
            .store()
            .events
            .iter()
            .filter(|e| e.action == crate::audit::AuditAction::DomainVerificationFailed)
            .map(|e| e.details["attempts"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn verification_rechecks_the_claim_rules_and_the_record_name_length() {
        let w = world();
        let reviewer = person("r1", &[Role::Reviewer]);
        for (domain, rule) in [
            ("mail.nhs.net", "reserved_domain"),
            ("leeds.gsi.gov.uk", "retired_domain"),
            ("github.io", "public_suffix"),
        ] {
            smuggle_claim(&w, w.org, domain);
            publish(&w, w.org, domain);
            assert_eq!(
                unmet_rules(w.svc.verify_domain_by_dns(&ctx(), w.org, domain)),
                [rule]
            );
            assert_eq!(
                unmet_rules(w.svc.verify_domain_by_hand(
                    &ctx(),
                    &reviewer,
                    w.org,
                    domain,
                    "phoned the IT lead"
                )),
                [rule]
            );
            assert_eq!(status_of(&w, w.org, domain), DomainStatus::Unverified);
        }
        // 235 characters: `_federation-gateway.` makes the record name 255, too long for
        // DNS. A clear 422 before any lookup, not a 503 from the resolver.
        let long = format!(
            "{}.{}.{}.{}.example.org",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(40)
        );
        smuggle_claim(&w, w.org, &long);
        w.fake.store().dns.insert(
            format!("_federation-gateway.{long}"),
            Err(DnsUnavailable("never asked".into())),
        );
        assert_eq!(
            unmet_rules(w.svc.verify_domain_by_dns(&ctx(), w.org, &long)),
            ["txt_record_name_length"]
        );
    }

    #[test]
    fn dns_lookups_are_limited_per_claim_and_failures_recorded_once_an_hour() {
        let w = world();
        let other = register_other(&w, "RL001", &["one.example.org", "two.example.org"])
            .unwrap()
            .id;
        let verify = |domain: &str| w.svc.verify_domain_by_dns(&ctx(), other, domain);
        assert_eq!(
            unmet_rules(verify("one.example.org")),
            ["txt_record_missing"]
        );
        // Again 3 s later: 429 with the honest wait, and no lookup.
        later(&w, 3);
        assert!(
            matches!(
                verify("one.example.org"),
                Err(ServiceError::RateLimited {
                    retry_after_seconds: 7
                })
            ),
            "{:?}",
            verify("one.example.org")
        );
        // Another claim has its own limit.
        assert_eq!(
            unmet_rules(verify("two.example.org")),
            ["txt_record_missing"]
        );
        // Failures within the hour are counted, not recorded one by one...
        for _ in 0..3 {
            later(&w, 10);
            assert_eq!(
                unmet_rules(verify("one.example.org")),
                ["txt_record_missing"]
            );
        }
        assert_eq!(failed_attempts(&w), [1, 1]);
        // ...and the next record, an hour on, says how many it stands for.
        later(&w, 3600);
        assert_eq!(
            unmet_rules(verify("one.example.org")),
            ["txt_record_missing"]
        );
        assert_eq!(failed_attempts(&w), [1, 1, 4]);
    }

    #[test]
    fn an_approver_withdraws_a_verification_with_a_reason() {
        let w = world();
        let domain = "leedscare.org.uk";
        let approver = person("a1", &[Role::Approver]);
        let refused = w.svc.unverify_domain_by_hand(
            &ctx(),
            &person("r1", &[Role::Reviewer]),
            w.org,
            domain,
            "sold",
        );
        assert!(
            matches!(refused, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::RoleRequired)
        );
        let mut robot = approver.clone();
        robot.person = false;
        let refused = w
            .svc
            .unverify_domain_by_hand(&ctx(), &robot, w.org, domain, "sold");
        assert!(
            matches!(refused, Err(ServiceError::Refused(r)) if r.kind == RefusalKind::PersonRequired)
        );
        assert_eq!(
            unmet_rules(
                w.svc
                    .unverify_domain_by_hand(&ctx(), &approver, w.org, domain, " ")
            ),
            ["required"]
        );
        let before = w.svc.organisation(w.org).unwrap();
        let after = w
            .svc
            .unverify_domain_by_hand(&ctx(), &approver, w.org, domain, "the domain was sold")
            .unwrap();
        assert_eq!(after.domains[0].status(), DomainStatus::Unverified);
        assert_eq!(
            after.domains[0].token, before.domains[0].token,
            "the same token: it can be proven again"
        );
        assert_eq!(after.version, before.version.next());
        let event = w.fake.store().events.last().cloned().unwrap();
        assert_eq!(event.details["change"], "domain.unverified");
        assert_eq!(
            (
                event.details["cause"].as_str(),
                event.details["reason"].as_str(),
                event.details["reviewer"]["subject"].as_str(),
                event.details["was"]["method"].as_str()
            ),
            (
                Some("reviewer"),
                Some("the domain was sold"),
                Some("a1"),
                Some("dns")
            )
        );
        // The name is free again: its rightful owner proves it.
        let rightful = register_other(&w, "RO002", &[domain]).unwrap().id;
        publish_and_verify(&w, rightful, domain);
        // Withdrawing an unverified claim changes nothing; an unclaimed one is not found.
        let again = w
            .svc
            .unverify_domain_by_hand(&ctx(), &approver, w.org, domain, "again")
            .unwrap();
        assert_eq!(again.version, after.version);
        assert!(matches!(
            w.svc
                .unverify_domain_by_hand(&ctx(), &approver, w.org, "nope.example.org", "x"),
            Err(ServiceError::NotFound)
        ));
    }

    #[test]
    fn maintenance_withdraws_a_proof_gone_too_long_or_showing_a_rivals_token() {
        let w = world();
        let domain = "leedscare.org.uk";
        w.fake
            .store()
            .dns
            .remove("_federation-gateway.leedscare.org.uk");
        assert_eq!(w.svc.recheck_domains(&ctx()).unwrap().newly_missing, 1);
        // Within the grace period (14 days by default) it stays verified...
        later(&w, 14 * 86_400);
        assert_eq!(
            w.svc.recheck_domains(&ctx()).unwrap(),
            DomainMaintenance::default()
        );
        assert_eq!(status_of(&w, w.org, domain), DomainStatus::Verified);
        // ...past it, the verification is withdrawn, and audited.
        later(&w, 1);
        assert_eq!(w.svc.recheck_domains(&ctx()).unwrap().demoted, 1);
        let claim = w.svc.organisation(w.org).unwrap().domains[0].clone();
        assert_eq!(
            (claim.status(), claim.record_missing_since),
            (DomainStatus::Unverified, None)
        );
        let event = w.fake.store().events.last().cloned().unwrap();
        assert_eq!(
            (
                event.details["change"].as_str(),
                event.details["cause"].as_str()
            ),
            (Some("domain.unverified"), Some("record_missing"))
        );
        // A record showing another organisation's token withdraws the verification at once.
        let holder = register_other(&w, "TK001", &["taken.example.org"])
            .unwrap()
            .id;
        let rival = register_other(&w, "TK002", &["taken.example.org"])
            .unwrap()
            .id;
        publish_and_verify(&w, holder, "taken.example.org");
        publish(&w, rival, "taken.example.org");
        let report = w.svc.recheck_domains(&ctx()).unwrap();
        assert_eq!((report.demoted, report.newly_missing), (1, 0));
        assert_eq!(
            status_of(&w, holder, "taken.example.org"),
            DomainStatus::Unverified
        );
        assert_eq!(
            w.fake.store().events.last().unwrap().details["cause"],
            "another_organisation_token"
        );
        publish_and_verify(&w, rival, "taken.example.org");
    }

    mod registration_tokens {
        //! Rotation, revocation and a fresh token: who may, in which order the refusals come,
        //! what the live credentials are afterwards.

        use super::*;
        use crate::registration_token::{RegistrationTokenState, TokenIssuer};

        fn digest(selector: &str) -> CredentialDigest {
            CredentialDigest {
                selector: selector.into(),
                secret_sha256: format!("{selector}-hash"),
            }
        }

        fn refusal<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> RefusalKind {
            match result {
                Err(ServiceError::Refused(r)) => r.kind,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }

        fn live(w: &World) -> Vec<String> {
            let store = w.fake.store();
            store
                .credentials
                .iter()
                .filter(|(_, owner)| **owner == w.org)
                .map(|(selector, _)| selector.clone())
                .collect()
        }

        #[test]
        fn revocation_needs_an_approving_person_and_answers_in_the_documented_order() {
            let w = world();
            let approver = person("a1", &[Role::Approver]);
            let mut automation = approver.clone();
            automation.person = false;
            let events = w.fake.store().events.len();
            assert_eq!(
                refusal(w.svc.revoke_registration_token(
                    &ctx(),
                    &person("r1", &[Role::Reviewer]),
                    w.org,
                    "leaked"
                )),
                RefusalKind::RoleRequired
            );
            assert_eq!(
                refusal(
                    w.svc
                        .revoke_registration_token(&ctx(), &automation, w.org, "leaked")
                ),
                RefusalKind::PersonRequired
            );
            assert!(matches!(
                w.svc
                    .revoke_registration_token(&ctx(), &approver, OrganisationId::new(), " "),
                Err(ServiceError::NotFound)
            ));
            assert!(matches!(
                w.svc.revoke_registration_token(&ctx(), &approver, w.org, " "),
                Err(ServiceError::Invalid(e)) if e.0[0].field == "reason"
            ));
            assert_eq!(live(&w), ["s"], "refusals change nothing");
            assert_eq!(w.fake.store().events.len(), events);

            let revoked = w
                .svc
                .revoke_registration_token(&ctx(), &approver, w.org, "pasted into a ticket")
                .unwrap();
            assert_eq!(revoked.state, RegistrationTokenState::Revoked);
            assert_eq!(revoked.revoked_by.as_deref(), Some("a1"));
            assert!(
                live(&w).is_empty(),
                "no credential of the organisation works"
            );
            let store = w.fake.store();
            let event = store.events.last().unwrap();
            assert_eq!(
                event.action,
                crate::audit::AuditAction::RegistrationTokenRevoked
            );
            assert_eq!(event.details["reason"], "pasted into a ticket");
            drop(store);
            // Already revoked: 409 comes before the reason's 422.
            assert_eq!(
                refusal(
                    w.svc
                        .revoke_registration_token(&ctx(), &approver, w.org, " ")
                ),
                RefusalKind::RegistrationTokenState
            );
        }

        #[test]
        fn a_fresh_token_comes_only_after_a_revocation_and_replaces_nothing_else() {
            let w = world();
            let approver = person("a1", &[Role::Approver]);
            assert_eq!(
                refusal(w.svc.reissue_registration_token(
                    &ctx(),
                    &approver,
                    w.org,
                    "lost",
                    &digest("fresh")
                )),
                RefusalKind::RegistrationTokenState
            );
            assert_eq!(live(&w), ["s"]);
            w.svc
                .revoke_registration_token(&ctx(), &approver, w.org, "lost")
                .unwrap();
            let issued = w
                .svc
                .reissue_registration_token(
                    &ctx(),
                    &approver,
                    w.org,
                    "handed over by phone",
                    &digest("fresh"),
                )
                .unwrap();
            assert_eq!(issued.state, RegistrationTokenState::Active);
            assert_eq!(issued.issued_by, TokenIssuer::Approver("a1".into()));
            assert_eq!(
                issued.revoked_by.as_deref(),
                Some("a1"),
                "the revocation stays on record"
            );
            assert_eq!(live(&w), ["fresh"]);
        }

        #[test]
        fn rotation_replaces_exactly_the_presented_credential() {
            let w = world();
            let org_ctx = Context {
                actor: Actor::Organisation(w.org),
                request_id: None,
            };
            let rotated = w
                .svc
                .rotate_registration_token(&org_ctx, w.org, "s", &digest("s2"))
                .unwrap();
            assert_eq!(rotated.rotations, 1);
            assert_eq!(live(&w), ["s2"]);
            assert!(matches!(
                w.svc
                    .rotate_registration_token(&org_ctx, w.org, "s", &digest("s3")),
                Err(ServiceError::NotFound)
            ));
            assert_eq!(live(&w), ["s2"]);
        }
    }
}
