//! The repository contract, run against SQLite and PostgreSQL: every port method's documented
//! promise, on both backends, each test on its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use gateway_domain::dns::{DomainStatus, Verification, VerificationMethod};
use gateway_domain::organisation::{ChangeForm, ContactForm, RegistrationForm};
use gateway_domain::{
    Actor, AuditAction, AuditRepository, Conflict, CredentialDigest, HealthCheck, NewAuditEvent,
    NewOrganisation, OrganisationChange, OrganisationId, OrganisationRepository, RepositoryError,
    SecureDomainPattern, SecureDomainRepository, Version,
};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{backend_tests, Database};

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn form(ods: &str, domains: &[&str]) -> NewOrganisation {
    NewOrganisation::parse(&RegistrationForm {
        ods_code: ods.into(),
        name: format!("Care Organisation {ods}"),
        category: "hospice".into(),
        exchange_version: "exchange_2019".into(),
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        ig_lead: ContactForm {
            name: "Ada".into(),
            email: "ada@example.org".into(),
        },
        technical: ContactForm {
            name: "Alan".into(),
            email: "alan@example.org".into(),
        },
        business_need: "Our hospice nurses need the address book.".into(),
    })
    .unwrap()
}

fn event(action: AuditAction, subject: Option<OrganisationId>) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: now(),
        actor: subject.map_or(Actor::Anonymous, Actor::Organisation),
        action,
        subject_type: "organisation",
        subject_id: subject.map(|id| id.to_string()),
        request_id: Some("req-1".into()),
        details: serde_json::json!({ "note": "test" }),
    }
}

fn credential(selector: &str) -> CredentialDigest {
    CredentialDigest {
        selector: selector.into(),
        secret_sha256: format!("{selector}-hash"),
    }
}

fn register(
    db: &Database,
    ods: &str,
    domains: &[&str],
) -> Result<gateway_domain::Organisation, RepositoryError> {
    let id = OrganisationId::new();
    db.create(
        id,
        &form(ods, domains),
        &credential(&format!("sel-{ods}")),
        now(),
        &event(AuditAction::OrganisationRegistered, Some(id)),
    )
}

fn audit_count(db: &Database) -> usize {
    db.list_events(0, 1000).unwrap().len()
}

/// Marks `domain` of `org` verified by DNS, now.
fn verify(
    db: &Database,
    org: &gateway_domain::Organisation,
    domain: &str,
) -> Result<gateway_domain::Organisation, RepositoryError> {
    db.verify_domain(
        org.id,
        &gateway_domain::EmailDomain::parse(domain).unwrap(),
        &Verification {
            at: now(),
            method: VerificationMethod::Dns,
            by: None,
            reason: None,
        },
        &event(AuditAction::DomainVerified, Some(org.id)),
    )
}

backend_tests! {
    fn create_then_get_round_trips(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let created = register(&db, "AB123", &["one.example.org", "two.example.org"]).unwrap();
        assert_eq!(created.version, Version::FIRST);
        assert_eq!(created.ods_code.as_str(), "AB123");
        let names: Vec<_> = created.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["one.example.org", "two.example.org"], "order is kept");
        assert!(created.domains.iter().all(|d| !d.accredited));

        let fetched = db.get(created.id).unwrap().unwrap();
        assert_eq!(fetched, created);
        assert!(db.get(OrganisationId::new()).unwrap().is_none());
    }

    fn create_records_credential_and_audit_event(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let created = register(&db, "AB123", &["one.example.org"]).unwrap();
        let stored = db.find_credential("sel-AB123").unwrap().unwrap();
        assert_eq!(stored.organisation_id, created.id);
        assert_eq!(stored.secret_sha256, "sel-AB123-hash");
        assert!(db.find_credential("nope").unwrap().is_none());

        let events = db.list_events(0, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "organisation.registered");
        assert_eq!(events[0].subject_id.as_deref(), Some(created.id.to_string().as_str()));
        assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
        assert_eq!(events[0].details["note"], "test");
    }

    fn several_registrations_may_name_one_ods_code(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let first = register(&db, "AB123", &["one.example.org"]).unwrap();
        let second = register(&db, "ab123", &["other.example.org"]).unwrap();
        assert_eq!(first.ods_code, second.ods_code);
        assert_eq!(audit_count(&db), 2);
    }

    fn only_a_verified_domain_blocks_and_it_blocks_subdomains_not_parents(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        // Unverified claims of one name coexist, each with its own token.
        let squatter = register(&db, "SQ001", &["one.example.org"]).unwrap();
        let owner = register(&db, "AB123", &["one.example.org"]).unwrap();
        assert_ne!(squatter.domains[0].token, owner.domains[0].token);
        assert_eq!(owner.domains[0].status(), DomainStatus::Unverified);
        let verified = verify(&db, &owner, "one.example.org").unwrap();
        assert_eq!(verified.version, owner.version.next());
        assert_eq!(verified.domains[0].status(), DomainStatus::Verified);
        assert_eq!(verified.domains[0].verification.as_ref().unwrap().method, VerificationMethod::Dns);
        assert_eq!(db.get(owner.id).unwrap().unwrap(), verified);
        // The other claim shows as conflict and can never be verified.
        assert_eq!(db.get(squatter.id).unwrap().unwrap().domains[0].status(), DomainStatus::Conflict);
        let events_before = audit_count(&db);
        assert!(matches!(verify(&db, &squatter, "one.example.org"), Err(RepositoryError::Conflict(Conflict::DomainTaken(_)))));
        assert_eq!(audit_count(&db), events_before);
        // New claims of the name or a subdomain are refused, naming our domain only.
        let error = register(&db, "CD456", &["fresh.example.org", "mail.one.example.org"]).unwrap_err();
        match error {
            RepositoryError::Conflict(Conflict::DomainTaken(domain)) => assert_eq!(domain.as_str(), "mail.one.example.org"),
            other => panic!("expected DomainTaken, got {other:?}"),
        }
        assert_eq!(audit_count(&db), events_before, "nothing stored");
        // The parent is not blocked: its owner claims and verifies it.
        let parent = register(&db, "EF789", &["example.org"]).unwrap();
        verify(&db, &parent, "example.org").unwrap();
        let overlaps = db.claim_overlaps(&db.get(parent.id).unwrap().unwrap()).unwrap();
        assert_eq!(overlaps.domains.iter().map(|o| o.theirs.as_str()).collect::<Vec<_>>(), ["one.example.org"]);
        // Unknown claims are not found.
        assert!(matches!(verify(&db, &parent, "nope.example.org"), Err(RepositoryError::NotFound)));
    }

    fn concurrent_verifications_of_one_domain_have_one_winner(backend) {
        // SQLite half: these threads share one process, whose writers take turns on its
        // in-process write lock, so they cannot race; tests/processes.rs races two processes.
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let orgs: Vec<_> = (0..4).map(|i| register(&db, &format!("RACE{i}"), &["contested.example.org"]).unwrap()).collect();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = orgs
            .into_iter()
            .map(|org| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    verify(&db, &org, "contested.example.org")
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        for result in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(result, Err(RepositoryError::Conflict(Conflict::DomainTaken(_)))), "{result:?}");
        }
        assert_eq!(audit_count(&db), 4 + 1);
    }

    fn a_claim_verified_meanwhile_keeps_its_first_verification(backend) {
        // SQLite half: these threads share one process, whose writers take turns on its
        // in-process write lock, so they cannot race; tests/processes.rs races two processes.
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let org = register(&db, "VV001", &["one.example.org"]).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (db, barrier, org) = (db.clone(), barrier.clone(), org.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    db.verify_domain(
                        org.id,
                        &gateway_domain::EmailDomain::parse("one.example.org").unwrap(),
                        &Verification { at: now(), method: VerificationMethod::Manual, by: Some(format!("reviewer-{i}")), reason: Some("phoned".into()) },
                        &event(AuditAction::DomainVerified, Some(org.id)),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
        let stored = db.get(org.id).unwrap().unwrap();
        assert_eq!(stored.version, org.version.next(), "one write");
        assert!(results.iter().all(|r| r.domains == stored.domains), "every caller sees the first attribution: {results:?}");
        assert_eq!(audit_count(&db), 1 + 1, "one verification event");
        // A later verification changes nothing either.
        let first = stored.domains[0].verification.clone().unwrap();
        let again = verify(&db, &stored, "one.example.org").unwrap();
        assert_eq!(again.domains[0].verification.as_ref(), Some(&first));
        assert_eq!(again.version, stored.version);
    }

    fn withdrawing_a_verification_is_conditional_on_the_one_read(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let one = gateway_domain::EmailDomain::parse("one.example.org").unwrap();
        let org = register(&db, "UV001", &["one.example.org", "two.example.org"]).unwrap();
        let verified = verify(&db, &org, "one.example.org").unwrap();
        let at = verified.domains[0].verification.as_ref().unwrap().at;
        let ev = event(AuditAction::OrganisationUpdated, Some(org.id));
        let events_before = audit_count(&db);
        // Verified at another time (verified afresh meanwhile), or not verified: nothing changes.
        assert!(matches!(db.unverify_domain(org.id, &one, at + Duration::seconds(1), &ev), Err(RepositoryError::VersionMismatch { .. })));
        let two = gateway_domain::EmailDomain::parse("two.example.org").unwrap();
        assert!(matches!(db.unverify_domain(org.id, &two, at, &ev), Err(RepositoryError::VersionMismatch { .. })));
        let nope = gateway_domain::EmailDomain::parse("nope.example.org").unwrap();
        assert!(matches!(db.unverify_domain(org.id, &nope, at, &ev), Err(RepositoryError::NotFound)));
        assert!(matches!(db.unverify_domain(OrganisationId::new(), &one, at, &ev), Err(RepositoryError::NotFound)));
        assert_eq!(audit_count(&db), events_before);
        assert_eq!(db.get(org.id).unwrap().unwrap(), verified);

        let done = db.unverify_domain(org.id, &one, at, &ev).unwrap();
        assert_eq!(done.domains[0].status(), DomainStatus::Unverified);
        assert_eq!((done.domains[0].verification.as_ref(), done.domains[0].record_missing_since), (None, None));
        assert_eq!(done.domains[0].token, verified.domains[0].token, "the claim and its token stay");
        assert_eq!(done.version, verified.version.next());
        assert_eq!(db.get(org.id).unwrap().unwrap(), done);
        assert_eq!(audit_count(&db), events_before + 1);

        // The name is free: another organisation proves it, and re-checking sees the first
        // organisation's token as a rival's.
        let other = register(&db, "UV002", &["one.example.org"]).unwrap();
        verify(&db, &other, "one.example.org").unwrap();
        let claims = db.dns_verified_claims().unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].organisation_id, other.id);
        assert_eq!(claims[0].rival_tokens, [done.domains[0].token.clone()]);
    }

    fn missing_records_are_flagged_and_dns_claims_listed(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["one.example.org", "two.example.org"]).unwrap();
        let org = verify(&db, &org, "two.example.org").unwrap();
        let claims = db.dns_verified_claims().unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!((claims[0].organisation_id, claims[0].domain.name.as_str()), (org.id, "two.example.org"));
        assert_eq!(claims[0].domain.token, org.domains[1].token);
        let since = now();
        let name = org.domains[1].name.clone();
        db.set_record_missing(org.id, &name, Some(since), &event(AuditAction::DomainRecordMissing, Some(org.id))).unwrap();
        let flagged = db.get(org.id).unwrap().unwrap();
        assert_eq!(flagged.domains[1].record_missing_since, Some(since));
        assert_eq!(flagged.version, org.version.next());
        assert_eq!(flagged.domains[1].status(), DomainStatus::Verified);
        db.set_record_missing(org.id, &name, None, &event(AuditAction::DomainRecordRestored, Some(org.id))).unwrap();
        assert_eq!(db.get(org.id).unwrap().unwrap().domains[1].record_missing_since, None);
        let unknown = gateway_domain::EmailDomain::parse("three.example.org").unwrap();
        assert!(matches!(db.set_record_missing(org.id, &unknown, None, &event(AuditAction::DomainRecordRestored, Some(org.id))), Err(RepositoryError::NotFound)));
    }

    fn update_checks_the_version_and_replaces_domains(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let current = register(&db, "AB123", &["one.example.org", "two.example.org"]).unwrap();
        let change = OrganisationChange::parse(&ChangeForm {
            name: Some("Renamed Hospice".into()),
            domains: Some(vec!["two.example.org".into(), "three.example.org".into()]),
            ..ChangeForm::default()
        })
        .unwrap();
        let at = now() + Duration::seconds(1);
        let (next, changed) = change.apply(&current, at);
        assert_eq!(changed, ["name", "domains"]);
        let updated = db.update(current.version, &next, &event(AuditAction::OrganisationUpdated, Some(current.id))).unwrap();
        assert_eq!(updated.version, Version(2));
        assert_eq!(updated.name.as_str(), "Renamed Hospice");
        assert_eq!(updated.updated_at, at);
        assert_eq!(updated.created_at, current.created_at);
        let names: Vec<_> = updated.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["two.example.org", "three.example.org"]);
        assert_eq!(db.get(current.id).unwrap().unwrap(), updated);

        // The released domain can be claimed by someone else now.
        register(&db, "CD456", &["one.example.org"]).unwrap();

        // Writing from the stale version is refused and changes nothing.
        let (stale, _) = change.apply(&current, at);
        let error = db.update(current.version, &stale, &event(AuditAction::OrganisationUpdated, Some(current.id))).unwrap_err();
        assert!(matches!(error, RepositoryError::VersionMismatch { current: Version(2) }), "{error:?}");
        assert_eq!(db.get(current.id).unwrap().unwrap(), updated);
    }

    fn update_refuses_another_organisations_domain_and_unknown_ids(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let mine = register(&db, "AB123", &["mine.example.org"]).unwrap();
        let theirs = register(&db, "CD456", &["theirs.example.org"]).unwrap();
        verify(&db, &theirs, "theirs.example.org").unwrap();
        let change = OrganisationChange::parse(&ChangeForm {
            domains: Some(vec!["mine.example.org".into(), "theirs.example.org".into()]),
            ..ChangeForm::default()
        })
        .unwrap();
        let (next, _) = change.apply(&mine, now());
        let events_before = audit_count(&db);
        let error = db.update(mine.version, &next, &event(AuditAction::OrganisationUpdated, Some(mine.id))).unwrap_err();
        assert!(matches!(error, RepositoryError::Conflict(Conflict::DomainTaken(ref d)) if d.as_str() == "theirs.example.org"), "{error:?}");
        assert_eq!(db.get(mine.id).unwrap().unwrap(), mine);
        assert_eq!(audit_count(&db), events_before);

        let mut ghost = mine.clone();
        ghost.id = OrganisationId::new();
        let error = db.update(Version::FIRST, &ghost, &event(AuditAction::OrganisationUpdated, None)).unwrap_err();
        assert!(matches!(error, RepositoryError::NotFound), "{error:?}");
    }

    fn accreditation_follows_the_imported_list(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["exact.example.org", "a.council.gov.uk", "council.gov.uk", "other.example.org"]).unwrap();
        let list: Vec<SecureDomainPattern> = ["exact.example.org", "*.council.gov.uk"]
            .iter()
            .map(|p| SecureDomainPattern::parse(p).unwrap())
            .collect();
        let import = NewAuditEvent { subject_type: "secure_domain_list", subject_id: None, ..event(AuditAction::SecureDomainsImported, None) };
        assert_eq!(db.replace_secure_domains(&list, &import).unwrap(), 2);
        let flags: Vec<_> = db.get(org.id).unwrap().unwrap().domains.iter().map(|d| (d.name.to_string(), d.accredited)).collect();
        assert_eq!(
            flags,
            [
                ("exact.example.org".to_owned(), true),
                ("a.council.gov.uk".to_owned(), true),
                ("council.gov.uk".to_owned(), false),
                ("other.example.org".to_owned(), false),
            ]
        );

        // A new import replaces the old list whole.
        let list = vec![SecureDomainPattern::parse("other.example.org").unwrap()];
        assert_eq!(db.replace_secure_domains(&list, &import).unwrap(), 1);
        let accredited: Vec<_> = db.get(org.id).unwrap().unwrap().domains.iter().filter(|d| d.accredited).map(|d| d.name.to_string()).collect();
        assert_eq!(accredited, ["other.example.org"]);
    }

    fn audit_list_pages_in_order(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        for i in 0..5 {
            db.append(&NewAuditEvent { details: serde_json::json!({ "i": i }), ..event(AuditAction::OrganisationUpdated, None) }).unwrap();
        }
        let first = db.list_events(0, 3).unwrap();
        assert_eq!(first.len(), 3);
        let rest = db.list_events(first[2].seq, 10).unwrap();
        assert_eq!(rest.len(), 2);
        let order: Vec<i64> = first.iter().chain(&rest).map(|e| e.details["i"].as_i64().unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert!(first.iter().chain(&rest).all(|e| e.actor_type == "anonymous" && e.actor_id.is_none()));
    }

    fn ping_answers(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        db.ping().unwrap();
        assert_eq!(db.backend(), backend);
    }
}

fn partner_key(kid: &str, x: &str, at: DateTime<Utc>) -> gateway_domain::PartnerKey {
    gateway_domain::PartnerKey {
        kid: kid.into(),
        key_type: gateway_domain::KeyType::Ed25519,
        alg: Some("EdDSA".into()),
        jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}),
        added_at: at,
        last_used_at: None,
    }
}

fn signing_key(kid: &str, at: DateTime<Utc>) -> gateway_domain::StoredSigningKey {
    gateway_domain::StoredSigningKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        sealed_private_key: format!("sealed-{kid}"),
        public_jwk: serde_json::json!({"kty": "OKP", "kid": kid}),
        created_at: at,
        retire_after: None,
    }
}

backend_tests! {
    fn key_sets_are_replaced_whole_keeping_unchanged_keys_history(backend) {
        use gateway_domain::PartnerKeyRepository;
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["one.example.org"]).unwrap();
        let t0 = now();
        let event = event(AuditAction::KeysReplaced, Some(org.id));
        let stored = db.replace_keys(org.id, &[partner_key("k1", "AAA", t0), partner_key("k2", "BBB", t0)], &event).unwrap();
        assert_eq!(stored.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k1", "k2"]);
        let used_at = t0 + Duration::seconds(5);
        // Keys are marked used when a token is issued with them.
        use gateway_domain::ReplayCache;
        let issued = NewAuditEvent { action: AuditAction::TokenIssued, ..event.clone() };
        assert!(db
            .record_issuance(&org.id.to_string(), "jti-history", used_at + Duration::seconds(60), used_at, Some((org.id, "k1")), &issued)
            .unwrap());

        // Rotation: keep k1, drop k2, add k3; k1 keeps its history.
        let later = t0 + Duration::seconds(60);
        let stored = db.replace_keys(org.id, &[partner_key("k1", "AAA", later), partner_key("k3", "CCC", later)], &event).unwrap();
        let k1 = stored.iter().find(|k| k.kid == "k1").unwrap();
        assert_eq!(k1.added_at, t0);
        assert_eq!(k1.last_used_at, Some(used_at));
        assert!(db.find_key(org.id, "k2").unwrap().is_none());
        assert_eq!(db.find_key(org.id, "k3").unwrap().unwrap().added_at, later);

        // Same kid, new material: a new key, history reset.
        let stored = db.replace_keys(org.id, &[partner_key("k1", "ZZZ", later)], &event).unwrap();
        assert_eq!(stored[0].last_used_at, None);
        assert_eq!(stored[0].added_at, later);

        assert!(matches!(db.replace_keys(OrganisationId::new(), &[], &event), Err(RepositoryError::NotFound)));
        let other = register(&db, "CD456", &["two.example.org"]).unwrap();
        assert!(db.list_keys(other.id).unwrap().is_empty(), "keys are per organisation");
        assert_eq!(db.all_keys().unwrap().len(), 1);
        let removal = |_: OrganisationId, _: &[String]| event.clone();
        let removed = db.remove_idle_keys(&[(org.id, "k1".into())], later, &removal).unwrap();
        assert_eq!(removed, [(org.id, "k1".to_owned())]);
        assert!(db.list_keys(org.id).unwrap().is_empty());
    }

    fn idle_keys_are_removed_only_if_still_idle_when_deleted(backend) {
        use gateway_domain::{PartnerKeyRepository, ReplayCache};
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["one.example.org"]).unwrap();
        let other = register(&db, "CD456", &["two.example.org"]).unwrap();
        let t0 = now() - Duration::days(200);
        let replaced = event(AuditAction::KeysReplaced, Some(org.id));
        db.replace_keys(org.id, &[partner_key("k1", "AAA", t0), partner_key("k2", "BBB", t0), partner_key("k3", "CCC", now())], &replaced).unwrap();
        db.replace_keys(other.id, &[partner_key("o1", "DDD", t0)], &event(AuditAction::KeysReplaced, Some(other.id))).unwrap();
        let lifecycle = gateway_domain::KeyLifecycle::default();
        let t = now();
        // Maintenance reads what is due...
        let due: Vec<_> = db.all_keys().unwrap().into_iter().filter(|(_, k)| lifecycle.is_due(k, t)).map(|(o, k)| (o, k.kid)).collect();
        assert_eq!(due.len(), 3, "{due:?}");
        // ...a running server then issues a token with k1...
        let issued = event(AuditAction::TokenIssued, Some(org.id));
        assert!(db.record_issuance(&org.id.to_string(), "j-k1", t + Duration::seconds(60), t, Some((org.id, "k1")), &issued).unwrap());
        let events_before = audit_count(&db);
        // ...and the removal, asked for all three, keeps k1.
        let removal = |o: OrganisationId, kids: &[String]| NewAuditEvent {
            details: serde_json::json!({ "kids": kids }),
            ..event(AuditAction::KeysRemoved, Some(o))
        };
        let mut removed = db.remove_idle_keys(&due, lifecycle.idle_before(t), &removal).unwrap();
        removed.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(removed, [(org.id, "k2".to_owned()), (other.id, "o1".to_owned())]);
        assert_eq!(db.list_keys(org.id).unwrap().iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k1", "k3"]);
        assert!(db.list_keys(other.id).unwrap().is_empty());
        // One event per organisation that lost keys, naming only what went.
        let events = db.list_events(0, 1000).unwrap();
        assert_eq!(events.len(), events_before + 2);
        let ours = events.iter().find(|e| e.action == "keys.removed" && e.subject_id.as_deref() == Some(org.id.to_string().as_str())).unwrap();
        assert_eq!(ours.details["kids"], serde_json::json!(["k2"]));
        // Nothing still idle: nothing removed, nothing recorded.
        assert!(db.remove_idle_keys(&[(org.id, "k1".into())], lifecycle.idle_before(t), &removal).unwrap().is_empty());
        assert_eq!(db.list_events(0, 1000).unwrap().len(), events_before + 2);
    }

    fn expired_jtis_are_purged_in_bounded_batches(backend) {
        use gateway_domain::ReplayCache;
        let test = TestDatabase::new(backend);
        let db = test.open();
        let t0 = now();
        for i in 0..7 {
            assert!(db.remember("client", &format!("old-{i}"), t0 - Duration::seconds(i + 1), t0 - Duration::seconds(600)).unwrap());
        }
        for i in 0..2 {
            assert!(db.remember("client", &format!("live-{i}"), t0 + Duration::seconds(60), t0).unwrap());
        }
        assert_eq!(db.purge_expired(t0, 3).unwrap(), 3);
        assert_eq!(db.purge_expired(t0, 3).unwrap(), 3);
        assert_eq!(db.purge_expired(t0, 3).unwrap(), 1);
        assert_eq!(db.purge_expired(t0, 3).unwrap(), 0);
        // Unexpired entries stay: they are still replays.
        for i in 0..2 {
            assert!(!db.remember("client", &format!("live-{i}"), t0 + Duration::seconds(60), t0).unwrap());
        }
        assert_eq!(db.purge_expired(t0 + Duration::seconds(61), 3).unwrap(), 2);
    }

    fn a_jti_is_accepted_once_until_it_expires(backend) {
        use gateway_domain::ReplayCache;
        let test = TestDatabase::new(backend);
        let db = test.open();
        let t0 = now();
        let until = t0 + Duration::seconds(60);
        assert!(db.remember("client-a", "jti-1", until, t0).unwrap());
        assert!(!db.remember("client-a", "jti-1", until, t0 + Duration::seconds(1)).unwrap(), "replay");
        assert!(db.remember("client-b", "jti-1", until, t0).unwrap(), "per client");
        // After expiry the pair may be used again (the assertion itself would be expired).
        assert!(db.remember("client-a", "jti-1", until + Duration::seconds(60), until + Duration::seconds(1)).unwrap());
        assert_eq!(db.purge_expired(until + Duration::seconds(500), 100).unwrap(), 2);
    }

    fn concurrent_replays_have_one_winner(backend) {
        // SQLite half: these threads share one process, whose writers take turns on its
        // in-process write lock, so they cannot race; tests/processes.rs races two processes.
        use gateway_domain::ReplayCache;
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let barrier = Arc::new(Barrier::new(4));
        let t0 = now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    db.remember("client", "same-jti", t0 + Duration::seconds(60), t0).unwrap()
                })
            })
            .collect();
        let fresh = handles.into_iter().map(|h| h.join().unwrap()).filter(|fresh| *fresh).count();
        assert_eq!(fresh, 1);
    }

    fn signing_keys_rotate_with_overlap_then_prune(backend) {
        use gateway_domain::SigningKeyRepository;
        let test = TestDatabase::new(backend);
        let db = test.open();
        let t0 = now();
        let event = NewAuditEvent { subject_type: "signing_key", subject_id: None, ..event(AuditAction::SigningKeyRotated, None) };
        db.add_signing_key(&signing_key("s1", t0), t0, &event).unwrap();
        let t1 = t0 + Duration::seconds(10);
        db.add_signing_key(&signing_key("s2", t1), t1 + Duration::hours(1), &event).unwrap();
        let keys = db.signing_keys().unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["s2", "s1"], "newest first");
        assert_eq!(keys[0].retire_after, None);
        assert_eq!(keys[1].retire_after, Some(t1 + Duration::hours(1)));
        assert_eq!(db.prune_signing_keys(t1).unwrap(), 0);
        assert_eq!(db.prune_signing_keys(t1 + Duration::hours(2)).unwrap(), 1);
        assert_eq!(db.signing_keys().unwrap().len(), 1);
    }

    fn organisations_list_in_pages(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let ids: Vec<_> = (0..5).map(|i| register(&db, &format!("ORG{i}"), &[&format!("d{i}.example.org")]).unwrap().id).collect();
        let first = db.list_organisations(None, 3).unwrap();
        assert_eq!(first.iter().map(|o| o.id).collect::<Vec<_>>(), ids[..3]);
        let rest = db.list_organisations(Some(first[2].id), 3).unwrap();
        assert_eq!(rest.iter().map(|o| o.id).collect::<Vec<_>>(), ids[3..]);
    }
}

backend_tests! {
    fn issuance_records_jti_key_use_and_event_together(backend) {
        use gateway_domain::{PartnerKeyRepository, ReplayCache};
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["one.example.org"]).unwrap();
        let t0 = now();
        db.replace_keys(org.id, &[partner_key("k1", "AAA", t0)], &event(AuditAction::KeysReplaced, Some(org.id))).unwrap();
        let events_before = audit_count(&db);
        let issued = event(AuditAction::TokenIssued, Some(org.id));
        let until = t0 + Duration::seconds(60);
        let client = org.id.to_string();
        assert!(db.record_issuance(&client, "j1", until, t0, Some((org.id, "k1")), &issued).unwrap());
        assert_eq!(db.find_key(org.id, "k1").unwrap().unwrap().last_used_at, Some(t0));
        assert_eq!(audit_count(&db), events_before + 1);
        // A replay changes nothing: no event, no key use.
        let later = t0 + Duration::seconds(5);
        assert!(!db.record_issuance(&client, "j1", until, later, Some((org.id, "k1")), &issued).unwrap());
        assert_eq!(db.find_key(org.id, "k1").unwrap().unwrap().last_used_at, Some(t0));
        assert_eq!(audit_count(&db), events_before + 1);
        assert!(!db.remember(&client, "j1", until, later).unwrap());
    }
}

fn issuance(
    org: OrganisationId,
    kid: &str,
    jti: &str,
    until: DateTime<Utc>,
) -> gateway_domain::Issuance {
    gateway_domain::Issuance {
        client: org.to_string(),
        jti: jti.into(),
        expires_at: until,
        key: Some((org, kid.into())),
        event: event(AuditAction::TokenIssued, Some(org)),
    }
}

backend_tests! {
    fn a_batch_of_issuances_records_each_fresh_one_and_nothing_of_replays(backend) {
        use gateway_domain::{PartnerKeyRepository, ReplayCache};
        let test = TestDatabase::new(backend);
        let db = test.open();
        let org = register(&db, "AB123", &["one.example.org"]).unwrap();
        let other = register(&db, "CD456", &["two.example.org"]).unwrap();
        let t0 = now();
        db.replace_keys(org.id, &[partner_key("k1", "AAA", t0), partner_key("k2", "BBB", t0)], &event(AuditAction::KeysReplaced, Some(org.id))).unwrap();
        let until = t0 + Duration::seconds(60);
        // Already used and unexpired; used long ago and expired by t0.
        assert!(db.remember(&org.id.to_string(), "used", until, t0).unwrap());
        assert!(db.remember(&org.id.to_string(), "stale", t0 - Duration::seconds(1), t0 - Duration::seconds(90)).unwrap());
        let events_before = audit_count(&db);
        let batch = [
            issuance(org.id, "k1", "a", until),
            issuance(org.id, "k1", "used", until),
            issuance(org.id, "k1", "a", until),
            issuance(org.id, "k1", "stale", until),
            // The same jti for another client is another pair.
            issuance(other.id, "k9", "a", until),
        ];
        let fresh = db.record_issuances(&batch, t0).unwrap();
        assert_eq!(fresh, [true, false, false, true, true]);
        assert_eq!(audit_count(&db), events_before + 3);
        assert_eq!(db.find_key(org.id, "k1").unwrap().unwrap().last_used_at, Some(t0));
        // A key named only by replays is not marked used.
        let t1 = t0 + Duration::seconds(1);
        let fresh = db.record_issuances(&[issuance(org.id, "k2", "a", until)], t1).unwrap();
        assert_eq!(fresh, [false]);
        assert_eq!(db.find_key(org.id, "k2").unwrap().unwrap().last_used_at, None);
        assert_eq!(audit_count(&db), events_before + 3);
        // Every recorded pair is a replay from now on, singly too.
        for jti in ["a", "stale", "used"] {
            assert!(!db.remember(&org.id.to_string(), jti, until, t1).unwrap(), "{jti}");
        }
        assert!(!db.remember(&other.id.to_string(), "a", until, t1).unwrap());
        assert_eq!(db.record_issuances(&[], t1).unwrap(), Vec::<bool>::new());
    }
}

backend_tests! {
    fn replicas_recording_the_same_jtis_at_once_record_each_pair_once(backend) {
        // SQLite half: one process's writers take turns, so this cannot race there; the
        // PostgreSQL half races four connection pools, as four replicas would.
        use gateway_domain::ReplayCache;
        let test = TestDatabase::new(backend);
        let setup = test.open();
        let org = register(&setup, "AB123", &["one.example.org"]).unwrap();
        let t0 = now();
        let until = t0 + Duration::seconds(60);
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|replica| {
                let (db, barrier) = (test.open(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut outcomes = Vec::new();
                    for round in 0..20 {
                        // Each replica's batch overlaps the others' in its own order.
                        let batch: Vec<_> = (0..10)
                            .map(|i| issuance(org.id, "k1", &format!("j{round}-{}", (i + replica * 3) % 10), until))
                            .collect();
                        let fresh = db.record_issuances(&batch, t0).unwrap();
                        outcomes.extend(batch.into_iter().zip(fresh).map(|(i, f)| (i.jti, f)));
                    }
                    outcomes
                })
            })
            .collect();
        let mut recorded = std::collections::HashMap::<String, usize>::new();
        for handle in handles {
            for (jti, fresh) in handle.join().unwrap() {
                *recorded.entry(jti).or_default() += usize::from(fresh);
            }
        }
        assert_eq!(recorded.len(), 200);
        assert!(recorded.values().all(|n| *n == 1), "{recorded:?}");
        assert_eq!(setup.list_events(0, 10_000).unwrap().len(), 1 + 200);
    }
}

backend_tests! {
    fn concurrent_key_replacements_all_succeed(backend) {
        // SQLite half: these threads share one process, whose writers take turns on its
        // in-process write lock, so they cannot race; tests/processes.rs races two processes.
        use gateway_domain::PartnerKeyRepository;
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let org = register(&db, "AB123", &["one.example.org"]).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let keys = [partner_key("shared", "AAA", now()), partner_key(&format!("k{i}"), "BBB", now())];
                    db.replace_keys(org.id, &keys, &event(AuditAction::KeysReplaced, Some(org.id)))
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        // The last writer's set stands whole.
        assert_eq!(db.list_keys(org.id).unwrap().len(), 2);
    }
}

mod onboarding {
    //! Evidence, agreements, organisation status and the store's unique rules.

    use chrono::NaiveDate;
    use gateway_domain::agreement::{
        AddressBookAttribute, AddressBookScope, AgreementSignature, FreeBusyDetail, FreeBusyScope,
        OdsSelection, ReviewCheck, Scopes, Signatory, SuspensionCause, Term,
    };
    use gateway_domain::contact::EmailAddress;
    use gateway_domain::evidence::{
        DocumentInfo, EvidenceDetails, EvidenceForm, Verdict, VerdictKind,
    };
    use gateway_domain::ports::ApprovalGuard;
    use gateway_domain::text::{PersonName, Reason, ShortText};
    use gateway_domain::{
        Agreement, AgreementId, AgreementRepository, AgreementState, Evidence, EvidenceId,
        EvidenceRepository, OdsCode, OrganisationStatus,
    };

    use super::*;

    fn day(raw: &str) -> NaiveDate {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap()
    }

    fn subject_event(action: AuditAction, subject_type: &'static str, id: String) -> NewAuditEvent {
        NewAuditEvent {
            subject_type,
            subject_id: Some(id),
            ..event(action, None)
        }
    }

    fn dspt(organisation: OrganisationId, document: Option<&[u8]>) -> Evidence {
        let details = EvidenceDetails::parse(
            &EvidenceForm {
                kind: "dspt_assessment".into(),
                title: Some("DSPT 2026/27".into()),
                dspt_status: Some("standards_met".into()),
                published_on: Some(day("2026-06-30")),
                expires_on: Some(day("2027-06-30")),
                ..EvidenceForm::default()
            },
            day("2026-11-29"),
        )
        .unwrap();
        Evidence {
            id: EvidenceId::new(),
            organisation_id: organisation,
            details,
            document: document.map(|bytes| DocumentInfo {
                sha256: "cd".repeat(32),
                size: bytes.len() as u64,
                filename: "dspt.pdf".into(),
            }),
            submitted_at: now(),
            verdict: None,
            superseded_by: None,
        }
    }

    fn ico(organisation: OrganisationId) -> Evidence {
        let details = EvidenceDetails::parse(
            &EvidenceForm {
                kind: "ico_registration".into(),
                registration_number: Some("za123456".into()),
                expires_on: Some(day("2027-03-31")),
                ..EvidenceForm::default()
            },
            day("2026-11-29"),
        )
        .unwrap();
        Evidence {
            details,
            ..dspt(organisation, None)
        }
    }

    fn verdict(kind: VerdictKind) -> Verdict {
        Verdict {
            verdict: kind,
            reason: Reason::parse("Checked against the register.\nFine.").unwrap(),
            by: "reviewer-1".into(),
            at: now(),
        }
    }

    fn submit(
        db: &Database,
        item: &Evidence,
        document: Option<&[u8]>,
        supersede: &[EvidenceId],
    ) -> Result<Evidence, RepositoryError> {
        db.add_evidence(
            item,
            document,
            supersede,
            &subject_event(
                AuditAction::EvidenceSubmitted,
                "evidence",
                item.id.to_string(),
            ),
        )
    }

    fn judge(
        db: &Database,
        id: EvidenceId,
        kind: VerdictKind,
        supersede: &[EvidenceId],
    ) -> Result<Evidence, RepositoryError> {
        db.judge_evidence(
            id,
            &verdict(kind),
            supersede,
            &subject_event(AuditAction::EvidenceJudged, "evidence", id.to_string()),
        )
    }

    /// A document of `len` bytes using every byte value (NUL included).
    fn document(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
            .collect()
    }

    fn agreement(organisation: OrganisationId, state: AgreementState) -> Agreement {
        let at = now();
        Agreement {
            id: AgreementId::new(),
            organisation_id: organisation,
            template_version: "2026-11".into(),
            template_sha256: "ab".repeat(32),
            scopes: Scopes {
                address_book: Some(AddressBookScope {
                    attributes: vec![
                        AddressBookAttribute::DisplayName,
                        AddressBookAttribute::Surname,
                    ],
                    organisations: OdsSelection::Only(vec![
                        OdsCode::parse("AB1").unwrap(),
                        OdsCode::parse("RR8").unwrap(),
                    ]),
                }),
                free_busy: Some(FreeBusyScope {
                    detail: FreeBusyDetail::LimitedDetails,
                    organisations: OdsSelection::All,
                }),
            },
            term: Term {
                starts_on: day("2026-12-01"),
                ends_on: day("2028-11-30"),
            },
            signatory: Signatory {
                name: PersonName::parse("Ada Lovelace").unwrap(),
                role: ShortText::parse("Caldicott Guardian").unwrap(),
                email: EmailAddress::parse("ada@example.org").unwrap(),
            },
            state,
            state_reason: None,
            suspension: None,
            signature: Some(AgreementSignature {
                jws: "eyJhbGciOiJFZERTQSJ9..c2ln".into(),
                kid: "k1".into(),
                alg: "EdDSA".into(),
                jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAA"}),
                payload: "{\"agreement_id\":\"x\"}".into(),
                signed_at: at,
            }),
            check: Some(ReviewCheck {
                by: "reviewer-1".into(),
                at,
                version: Version(3),
                evidence: "fp".into(),
            }),
            limited_details_granted: false,
            version: Version::FIRST,
            created_at: at,
            updated_at: at,
        }
    }

    fn create(db: &Database, a: &Agreement) -> Result<Agreement, RepositoryError> {
        db.create_agreement(
            a,
            &subject_event(AuditAction::AgreementDrafted, "agreement", a.id.to_string()),
        )
    }

    fn changed(a: &Agreement, state: AgreementState) -> (Version, Agreement) {
        let mut next = a.clone();
        next.state = state;
        next.version = a.version.next();
        next.updated_at = a.updated_at + Duration::seconds(1);
        (a.version, next)
    }

    fn change_event(a: &Agreement) -> NewAuditEvent {
        subject_event(AuditAction::AgreementChanged, "agreement", a.id.to_string())
    }

    backend_tests! {
        fn evidence_is_stored_listed_and_superseded(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let bytes = document(300 * 1024);
            let first = dspt(org.id, Some(&bytes));
            let stored = submit(&db, &first, Some(&bytes), &[]).unwrap();
            assert_eq!(stored, first);
            let licence = ico(org.id);
            assert_eq!(submit(&db, &licence, None, &[]).unwrap(), licence);
            assert_eq!(licence.details.registration_number.as_deref(), Some("ZA123456"));

            assert_eq!(db.get_evidence(first.id).unwrap().unwrap(), first);
            assert!(db.get_evidence(EvidenceId::new()).unwrap().is_none());
            assert_eq!(db.document(first.id).unwrap().unwrap(), bytes, "documents round-trip byte for byte");
            assert!(db.document(licence.id).unwrap().is_none());
            assert!(db.document(EvidenceId::new()).unwrap().is_none());

            // A newer item supersedes the listed ones, atomically with its insert.
            let second = dspt(org.id, None);
            submit(&db, &second, None, &[first.id]).unwrap();
            assert_eq!(db.get_evidence(first.id).unwrap().unwrap().superseded_by, Some(second.id));
            let listed: Vec<_> = db.list_evidence(org.id).unwrap().iter().map(|e| e.id).collect();
            assert_eq!(listed, [second.id, licence.id, first.id], "newest first");
            let other = register(&db, "CD456", &["two.example.org"]).unwrap();
            assert!(db.list_evidence(other.id).unwrap().is_empty());

            let events_before = audit_count(&db);
            assert!(matches!(submit(&db, &dspt(OrganisationId::new(), None), None, &[]), Err(RepositoryError::NotFound)));
            assert_eq!(audit_count(&db), events_before);
        }

        fn an_upload_never_supersedes_an_item_judged_before_it_commits(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let pending = dspt(org.id, None);
            submit(&db, &pending, None, &[]).unwrap();
            // The uploader read `pending` as unjudged; a reviewer accepts it before the upload
            // commits: it stays in force.
            judge(&db, pending.id, VerdictKind::Accepted, &[]).unwrap();
            let upload = dspt(org.id, None);
            submit(&db, &upload, None, &[pending.id]).unwrap();
            assert_eq!(db.get_evidence(pending.id).unwrap().unwrap().superseded_by, None);
        }

        fn a_judged_item_never_changes(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let older = dspt(org.id, None);
            submit(&db, &older, None, &[]).unwrap();
            judge(&db, older.id, VerdictKind::Accepted, &[]).unwrap();
            let newer = dspt(org.id, None);
            submit(&db, &newer, None, &[]).unwrap();

            // Accepting the newer item supersedes the older accepted one.
            let judged = judge(&db, newer.id, VerdictKind::Accepted, &[older.id]).unwrap();
            let recorded = judged.verdict.clone().unwrap();
            assert_eq!((recorded.verdict, recorded.by.as_str()), (VerdictKind::Accepted, "reviewer-1"));
            assert_eq!(recorded.reason.as_str(), "Checked against the register.\nFine.");
            assert_eq!(db.get_evidence(newer.id).unwrap().unwrap(), judged);
            let older_now = db.get_evidence(older.id).unwrap().unwrap();
            assert_eq!(older_now.superseded_by, Some(newer.id));
            assert_eq!(older_now.verdict.unwrap().verdict, VerdictKind::Accepted, "its verdict stays on record");

            let events_before = audit_count(&db);
            let again = judge(&db, newer.id, VerdictKind::Rejected, &[]).unwrap_err();
            assert!(matches!(again, RepositoryError::VersionMismatch { .. }), "{again:?}");
            assert_eq!(db.get_evidence(newer.id).unwrap().unwrap(), judged, "unchanged");
            // A superseded, unjudged item cannot be judged either.
            let pending = dspt(org.id, None);
            submit(&db, &pending, None, &[]).unwrap();
            let replacement = dspt(org.id, None);
            submit(&db, &replacement, None, &[pending.id]).unwrap();
            let events_before = events_before + 2;
            let superseded = judge(&db, pending.id, VerdictKind::Accepted, &[]).unwrap_err();
            assert!(matches!(superseded, RepositoryError::VersionMismatch { .. }), "{superseded:?}");
            assert!(matches!(judge(&db, EvidenceId::new(), VerdictKind::Accepted, &[]), Err(RepositoryError::NotFound)));
            assert_eq!(audit_count(&db), events_before, "refused judgements record nothing");
            assert_eq!(db.events_about("evidence", &newer.id.to_string(), 10).unwrap().iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["evidence.submitted", "evidence.judged"]);
        }

        fn concurrent_judgements_have_one_winner(backend) {
            // SQLite half: these threads share one process, whose writers take turns on its
            // in-process write lock, so they cannot race; tests/processes.rs races two processes.
            let test = TestDatabase::new(backend);
            let db = Arc::new(test.open());
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let item = dspt(org.id, None);
            submit(&db, &item, None, &[]).unwrap();
            let barrier = Arc::new(Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        judge(&db, item.id, if i % 2 == 0 { VerdictKind::Accepted } else { VerdictKind::Rejected }, &[])
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(RepositoryError::VersionMismatch { .. }))), "{results:?}");
        }

        fn agreements_round_trip_and_list_in_order(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let a = register(&db, "AB123", &["one.example.org"]).unwrap();
            let b = register(&db, "CD456", &["two.example.org"]).unwrap();
            let mut mine = Vec::new();
            for i in 0..3 {
                let mut draft = agreement(a.id, AgreementState::Draft);
                draft.created_at += Duration::seconds(i);
                if i == 1 {
                    draft.signature = None;
                    draft.check = None;
                    draft.scopes.address_book = None;
                    draft.state_reason = Some(Reason::parse("needs a second look").unwrap());
                    draft.suspension = Some(SuspensionCause::EvidenceLapsed);
                    draft.limited_details_granted = true;
                }
                assert_eq!(create(&db, &draft).unwrap(), draft);
                mine.push(draft);
            }
            let theirs = create(&db, &agreement(b.id, AgreementState::Submitted)).unwrap();
            for stored in &mine {
                assert_eq!(&db.get_agreement(stored.id).unwrap().unwrap(), stored);
            }
            assert!(db.get_agreement(AgreementId::new()).unwrap().is_none());
            let listed: Vec<_> = db.list_agreements(a.id).unwrap().iter().map(|x| x.id).collect();
            assert_eq!(listed, [mine[2].id, mine[1].id, mine[0].id], "newest first");

            // By state, oldest first, in pages.
            let page = db.list_agreements_by_state(None, None, 2).unwrap();
            assert_eq!(page.iter().map(|x| x.id).collect::<Vec<_>>(), [mine[0].id, mine[1].id]);
            let rest = db.list_agreements_by_state(None, Some(page[1].id), 10).unwrap();
            assert_eq!(rest.iter().map(|x| x.id).collect::<Vec<_>>(), [mine[2].id, theirs.id]);
            let drafts = db.list_agreements_by_state(Some(AgreementState::Draft), Some(mine[0].id), 10).unwrap();
            assert_eq!(drafts.iter().map(|x| x.id).collect::<Vec<_>>(), [mine[1].id, mine[2].id]);
            let submitted = db.list_agreements_by_state(Some(AgreementState::Submitted), None, 10).unwrap();
            assert_eq!(submitted, [theirs]);

            let events_before = audit_count(&db);
            let orphan = agreement(OrganisationId::new(), AgreementState::Draft);
            assert!(matches!(create(&db, &orphan), Err(RepositoryError::NotFound)));
            assert_eq!(audit_count(&db), events_before);
        }

        fn saving_agreements_is_all_or_nothing(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let first = create(&db, &agreement(org.id, AgreementState::Draft)).unwrap();
            let second = create(&db, &agreement(org.id, AgreementState::Draft)).unwrap();
            let events_before = audit_count(&db);

            let (expected, mut next_first) = changed(&first, AgreementState::Submitted);
            next_first.signature = None;
            next_first.state_reason = Some(Reason::parse("ready").unwrap());
            let (_, next_second) = changed(&second, AgreementState::Submitted);
            let stale = Version(7);
            let error = db
                .save_agreements(&[(expected, next_first.clone()), (stale, next_second.clone())], &[change_event(&first), change_event(&second)])
                .unwrap_err();
            assert!(matches!(error, RepositoryError::VersionMismatch { current: Version(1) }), "{error:?}");
            assert_eq!(db.get_agreement(first.id).unwrap().unwrap(), first, "the first change was rolled back");
            assert_eq!(db.get_agreement(second.id).unwrap().unwrap(), second);
            assert_eq!(audit_count(&db), events_before);

            let ghost = agreement(org.id, AgreementState::Draft);
            let error = db.save_agreements(&[(Version::FIRST, ghost.clone())], &[change_event(&ghost)]).unwrap_err();
            assert!(matches!(error, RepositoryError::NotFound), "{error:?}");

            db.save_agreements(&[(expected, next_first.clone()), (second.version, next_second.clone())], &[change_event(&first), change_event(&second)]).unwrap();
            assert_eq!(db.get_agreement(first.id).unwrap().unwrap(), next_first, "None fields are written as NULL");
            assert_eq!(db.get_agreement(second.id).unwrap().unwrap(), next_second);
            assert_eq!(audit_count(&db), events_before + 2);
            // The old version is stale now.
            let error = db.save_agreements(&[(expected, next_first.clone())], &[]).unwrap_err();
            assert!(matches!(error, RepositoryError::VersionMismatch { current: Version(2) }), "{error:?}");
        }

        fn one_agreement_in_force_per_organisation(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let old = create(&db, &agreement(org.id, AgreementState::Submitted)).unwrap();
            let (v, approved) = changed(&old, AgreementState::Approved);
            db.save_agreements(&[(v, approved.clone())], &[change_event(&old)]).unwrap();
            let new = create(&db, &agreement(org.id, AgreementState::Submitted)).unwrap();
            let events_before = audit_count(&db);

            // A second agreement in force is refused by the store, whatever the caller checked.
            let (v, second) = changed(&new, AgreementState::Approved);
            let error = db.save_agreements(&[(v, second.clone())], &[change_event(&new)]).unwrap_err();
            assert!(matches!(error, RepositoryError::Conflict(Conflict::Unique { ref constraint }) if constraint.contains("agreements")), "{error:?}");
            let error = create(&db, &agreement(org.id, AgreementState::Suspended)).unwrap_err();
            assert!(matches!(error, RepositoryError::Conflict(Conflict::Unique { .. })), "{error:?}");
            assert_eq!(db.get_agreement(new.id).unwrap().unwrap(), new);
            assert_eq!(audit_count(&db), events_before);

            // Replacing the one in force in one call works in the order the domain lists it
            // (approve the new, then revoke the old).
            let (v_old, revoked) = changed(&approved, AgreementState::Revoked);
            db.save_agreements(&[(v, second.clone()), (v_old, revoked.clone())], &[change_event(&new), change_event(&old)]).unwrap();
            assert_eq!(db.get_agreement(new.id).unwrap().unwrap().state, AgreementState::Approved);
            assert_eq!(db.get_agreement(old.id).unwrap().unwrap().state, AgreementState::Revoked);

            // Other organisations are unaffected.
            let other = register(&db, "CD456", &["two.example.org"]).unwrap();
            create(&db, &agreement(other.id, AgreementState::Approved)).unwrap();
        }

        fn concurrent_approvals_have_one_winner(backend) {
            // SQLite half: these threads share one process, whose writers take turns on its
            // in-process write lock, so they cannot race; tests/processes.rs races two processes.
            let test = TestDatabase::new(backend);
            let db = Arc::new(test.open());
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let candidates: Vec<_> = (0..4).map(|_| create(&db, &agreement(org.id, AgreementState::Submitted)).unwrap()).collect();
            let barrier = Arc::new(Barrier::new(candidates.len()));
            let handles: Vec<_> = candidates
                .into_iter()
                .map(|a| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let (v, next) = changed(&a, AgreementState::Approved);
                        barrier.wait();
                        db.save_agreements(&[(v, next)], &[change_event(&a)])
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(RepositoryError::Conflict(Conflict::Unique { .. })))), "{results:?}");
            assert_eq!(db.list_agreements_by_state(Some(AgreementState::Approved), None, 10).unwrap().len(), 1);
        }

        fn concurrent_approvals_of_one_ods_code_have_one_winner(backend) {
            // SQLite half: these threads share one process, whose writers take turns on its
            // in-process write lock, so they cannot race; tests/processes.rs races two processes.
            let test = TestDatabase::new(backend);
            let db = Arc::new(test.open());
            // Four registrations name one ODS code (allowed); each has an agreement to approve.
            let candidates: Vec<_> = ["AB123", "ab123", "Ab123", "aB123"]
                .iter()
                .enumerate()
                .map(|(i, ods)| {
                    let org = register(&db, ods, &[&format!("org{i}.example.org")]).unwrap();
                    let a = create(&db, &agreement(org.id, AgreementState::Submitted)).unwrap();
                    (org, a)
                })
                .collect();
            let barrier = Arc::new(Barrier::new(candidates.len()));
            let handles: Vec<_> = candidates
                .into_iter()
                .map(|(org, a)| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let (v, next) = changed(&a, AgreementState::Approved);
                        let guard = ApprovalGuard { organisation: org.id, organisation_version: org.version, ods_code: org.ods_code.clone() };
                        barrier.wait();
                        db.approve_agreements(&[(v, next)], &[change_event(&a)], &guard)
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(RepositoryError::Conflict(Conflict::OdsCodeTaken(ref c))) if c.as_str() == "AB123")), "{results:?}");
            assert_eq!(db.list_agreements_by_state(Some(AgreementState::Approved), None, 10).unwrap().len(), 1);
        }

        fn approval_rechecks_the_registration_it_read(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let a = create(&db, &agreement(org.id, AgreementState::Submitted)).unwrap();
            let guard = ApprovalGuard { organisation: org.id, organisation_version: org.version, ods_code: org.ods_code.clone() };
            // After approval read the registration, the organisation patches in a new domain.
            let mut patched = org.clone();
            patched.domains.push(gateway_domain::ClaimedDomain::unverified(gateway_domain::EmailDomain::parse("new.example.org").unwrap()));
            patched.version = org.version.next();
            db.update(org.version, &patched, &event(AuditAction::OrganisationUpdated, Some(org.id))).unwrap();
            let events_before = audit_count(&db);
            let (v, approved) = changed(&a, AgreementState::Approved);
            let error = db.approve_agreements(&[(v, approved.clone())], &[change_event(&a)], &guard).unwrap_err();
            assert!(matches!(error, RepositoryError::VersionMismatch { current: Version(2) }), "{error:?}");
            let gone = ApprovalGuard { organisation: OrganisationId::new(), ..guard.clone() };
            assert!(matches!(db.approve_agreements(&[(v, approved.clone())], &[change_event(&a)], &gone), Err(RepositoryError::NotFound)));
            assert_eq!(db.get_agreement(a.id).unwrap().unwrap(), a, "nothing changed");
            assert_eq!(audit_count(&db), events_before);
            // Read again, it commits.
            let fresh = ApprovalGuard { organisation_version: Version(2), ..guard };
            db.approve_agreements(&[(v, approved.clone())], &[change_event(&a)], &fresh).unwrap();
            assert_eq!(db.get_agreement(a.id).unwrap().unwrap(), approved);
        }

        fn rejecting_an_organisation_frees_its_domains(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let squatter = register(&db, "AB123", &["one.example.org", "two.example.org"]).unwrap();
            assert_eq!(squatter.status, OrganisationStatus::Active);
            assert_eq!(squatter.status_reason, None);
            let squatter = verify(&db, &squatter, "two.example.org").unwrap();
            assert!(matches!(register(&db, "CD456", &["two.example.org"]), Err(RepositoryError::Conflict(Conflict::DomainTaken(_)))));

            let mut rejected = squatter.clone();
            rejected.status = OrganisationStatus::Rejected;
            rejected.status_reason = Some(Reason::parse("Not the organisation with this ODS code.").unwrap());
            rejected.version = squatter.version.next();
            rejected.updated_at = squatter.updated_at + Duration::seconds(1);
            let stored = db.update(squatter.version, &rejected, &event(AuditAction::OrganisationRejected, Some(squatter.id))).unwrap();
            assert_eq!(stored, rejected, "a rejected registration stays on record, domains and proofs included");
            assert_eq!(db.get(squatter.id).unwrap().unwrap(), rejected);

            // Its verified claim stops counting: the rightful organisation claims and verifies it.
            let rightful = register(&db, "ab123", &["two.example.org", "one.example.org"]).unwrap();
            assert_eq!(rightful.domains[0].status(), DomainStatus::Unverified);
            verify(&db, &rightful, "two.example.org").unwrap();
            assert!(matches!(verify(&db, &rejected, "one.example.org"), Err(RepositoryError::NotFound)), "a rejected organisation verifies nothing");
        }

        fn an_agreement_in_force_holds_the_ods_code(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let holder = register(&db, "AB123", &["one.example.org"]).unwrap();
            let early = register(&db, "ab123", &["early.example.org"]).unwrap();
            let draft = agreement(holder.id, AgreementState::Draft);
            create(&db, &draft).unwrap();
            // A draft holds nothing.
            register(&db, "Ab123", &["draft.example.org"]).unwrap();
            let (version, approved) = changed(&draft, AgreementState::Approved);
            db.save_agreements(&[(version, approved.clone())], &[change_event(&approved)]).unwrap();
            let events_before = audit_count(&db);
            let error = register(&db, "aB123", &["later.example.org"]).unwrap_err();
            assert!(matches!(error, RepositoryError::Conflict(Conflict::OdsCodeTaken(ref c)) if c.as_str() == "AB123"), "{error:?}");
            assert_eq!(audit_count(&db), events_before, "nothing stored");
            // Suspended still holds it.
            let (version, suspended) = changed(&approved, AgreementState::Suspended);
            db.save_agreements(&[(version, suspended.clone())], &[change_event(&suspended)]).unwrap();
            assert!(matches!(register(&db, "AB123", &["later.example.org"]), Err(RepositoryError::Conflict(Conflict::OdsCodeTaken(_)))));
            // The holder does not hold it against itself; the earlier registrations see it.
            assert!(!db.claim_overlaps(&db.get(holder.id).unwrap().unwrap()).unwrap().ods_code_held_elsewhere);
            let overlaps = db.claim_overlaps(&db.get(early.id).unwrap().unwrap()).unwrap();
            assert!(overlaps.ods_code_held_elsewhere);
            assert_eq!(overlaps.ods_code_registrations_elsewhere, 2);
        }

        fn unique_violations_surface_as_named_conflicts(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let draft = agreement(org.id, AgreementState::Draft);
            create(&db, &draft).unwrap();
            let events_before = audit_count(&db);
            match create(&db, &draft).unwrap_err() {
                RepositoryError::Conflict(Conflict::Unique { constraint }) => {
                    assert!(constraint.contains("agreements"), "{constraint}");
                }
                other => panic!("expected Conflict::Unique, got {other:?}"),
            }
            let item = dspt(org.id, None);
            submit(&db, &item, None, &[]).unwrap();
            assert!(matches!(submit(&db, &item, None, &[]), Err(RepositoryError::Conflict(Conflict::Unique { .. }))));
            assert_eq!(audit_count(&db), events_before + 1);
        }

        fn events_about_one_subject_oldest_first(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let other = register(&db, "CD456", &["two.example.org"]).unwrap();
            for i in 0..3 {
                db.append(&NewAuditEvent { details: serde_json::json!({ "i": i }), ..event(AuditAction::OrganisationUpdated, Some(org.id)) }).unwrap();
            }
            db.append(&subject_event(AuditAction::AgreementDrafted, "agreement", org.id.to_string())).unwrap();
            let about = db.events_about("organisation", &org.id.to_string(), 10).unwrap();
            assert_eq!(about.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["organisation.registered", "organisation.updated", "organisation.updated", "organisation.updated"]);
            assert!(about.windows(2).all(|w| w[0].seq < w[1].seq));
            assert_eq!(db.events_about("organisation", &org.id.to_string(), 2).unwrap().len(), 2);
            assert_eq!(db.events_about("organisation", &other.id.to_string(), 10).unwrap().len(), 1);
            assert!(db.events_about("organisation", "nobody", 10).unwrap().is_empty());
        }
    }
}

backend_tests! {
    fn window_counters_count_every_racing_hit_once(backend) {
        use gateway_domain::RateLimitStore;
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        assert_eq!(db.hits("limit", "198.51.100.7", 600).unwrap(), 0);
        // Two handles on one database: two replicas.
        let replicas = [db.clone(), Arc::new(test.open())];
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (db, barrier) = (replicas[i % 2].clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..5).map(|_| db.hit("limit", "198.51.100.7", 600, Some("n")).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen: Vec<i64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "each hit sees the count it made");
        assert_eq!(db.hits("limit", "198.51.100.7", 600).unwrap(), 40);
        assert_eq!(db.hits("limit", "198.51.100.7", 660).unwrap(), 0, "per window");
        assert_eq!(db.hits("other", "198.51.100.7", 600).unwrap(), 0, "per limit");
        assert_eq!(db.hits("limit", "198.51.100.8", 600).unwrap(), 0, "per key");
    }

    fn finished_windows_are_flushed_into_audit_records_once(backend) {
        use gateway_domain::{RateLimitStore, WindowCount};
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        for _ in 0..3 {
            db.hit("audited", "192.0.2.1", 600, Some("first")).unwrap();
        }
        db.hit("audited", "192.0.2.1", 600, Some("last")).unwrap();
        db.hit("audited", "192.0.2.1", 660, None).unwrap();
        db.hit("quiet", "192.0.2.1", 600, None).unwrap();
        let record = |count: &WindowCount| {
            (count.limit == "audited").then(|| NewAuditEvent {
                subject_type: "client_address",
                subject_id: Some(count.key.clone()),
                details: serde_json::json!({ "count": count.hits, "minute": count.window_start, "last": count.note }),
                ..event(AuditAction::AssertionRejected, None)
            })
        };
        // Two replicas flush at once: each finished counter is audited once.
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [db.clone(), Arc::new(test.open())]
            .into_iter()
            .map(|db| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    db.flush_windows(660, &record).unwrap()
                })
            })
            .collect();
        let flushed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(flushed, 2, "the two counters of the finished window");
        let records: Vec<_> = db.list_events(0, 100).unwrap().into_iter().filter(|e| e.action == "token.assertion_rejected").collect();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].details["count"], 4);
        assert_eq!(records[0].details["minute"], 600);
        assert_eq!(records[0].details["last"], "last");
        assert_eq!(records[0].subject_id.as_deref(), Some("192.0.2.1"));
        assert_eq!(db.hits("audited", "192.0.2.1", 600).unwrap(), 0, "removed");
        assert_eq!(db.hits("quiet", "192.0.2.1", 600).unwrap(), 0, "removed without a record");
        assert_eq!(db.hits("audited", "192.0.2.1", 660).unwrap(), 1, "the current window stays");
    }

    fn audit_records_keep_only_bounded_strings(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let huge = "g".repeat(64 * 1024);
        let stored = db
            .append(&NewAuditEvent {
                subject_id: Some(huge.clone()),
                request_id: Some(huge.clone()),
                actor: Actor::Reviewer(huge.clone()),
                details: serde_json::json!({ "grant_type": huge.clone(), "nested": [{ "kid": huge.clone() }] }),
                ..event(AuditAction::ReviewerLoginFailed, None)
            })
            .unwrap();
        let size = stored.details.to_string().len()
            + stored.subject_id.unwrap().len()
            + stored.request_id.unwrap().len()
            + stored.actor_id.unwrap().len();
        assert!(size < 4 * 1024, "{size} bytes stored of a 64 KiB input");
    }
}

/// Reviewer sessions: the store behind sign-in, sign-out, idle timeout and absolute lifetime.
mod reviewer_sessions {
    use super::*;
    use gateway_domain::{ReviewerIdentity, ReviewerSession, Role, SessionRepository};

    fn session(digest: &str, at: DateTime<Utc>) -> ReviewerSession {
        ReviewerSession {
            id_sha256: digest.repeat(64 / digest.len()),
            identity: ReviewerIdentity {
                subject: "reviewer1".into(),
                name: Some("Rita Reviewer".into()),
                email: Some("rita@example.org".into()),
                roles: vec![Role::Reviewer, Role::Approver],
                person: true,
            },
            csrf_token: format!("csrf-{digest}"),
            created_at: at,
            last_seen_at: at,
            expires_at: at + Duration::hours(8),
            revoked_at: None,
        }
    }

    fn reviewer_event(action: AuditAction) -> NewAuditEvent {
        NewAuditEvent {
            occurred_at: now(),
            actor: Actor::Reviewer("reviewer1".into()),
            action,
            subject_type: "reviewer",
            subject_id: Some("reviewer1".into()),
            request_id: None,
            details: serde_json::json!({}),
        }
    }

    backend_tests! {
        fn sessions_are_stored_by_digest_touched_forward_and_revoked_once(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let t0 = now();
            let stored = session("a1", t0);
            db.create_session(&stored, &reviewer_event(AuditAction::ReviewerLogin)).unwrap();
            assert_eq!(db.find_session(&stored.id_sha256).unwrap(), Some(stored.clone()), "every field round-trips");
            assert_eq!(audit_count(&db), 1, "the sign-in is recorded with the session");

            // The same digest twice: refused, nothing stored or recorded.
            let twin = ReviewerSession { csrf_token: "other".into(), ..stored.clone() };
            assert!(matches!(
                db.create_session(&twin, &reviewer_event(AuditAction::ReviewerLogin)),
                Err(RepositoryError::Conflict(Conflict::Unique { .. }))
            ));
            assert_eq!(db.find_session(&stored.id_sha256).unwrap().unwrap().csrf_token, stored.csrf_token);
            assert_eq!(audit_count(&db), 1);

            // Touching moves last_seen_at forward only.
            let t1 = t0 + Duration::minutes(5);
            assert!(db.touch_session(&stored.id_sha256, t1).unwrap());
            assert!(!db.touch_session(&stored.id_sha256, t1).unwrap(), "not again at the same time");
            assert!(!db.touch_session(&stored.id_sha256, t0).unwrap(), "never backwards");
            assert_eq!(db.find_session(&stored.id_sha256).unwrap().unwrap().last_seen_at, t1);

            // Revoked once, recorded once; a revoked session is never touched again.
            let t2 = t1 + Duration::minutes(1);
            assert!(db.revoke_session(&stored.id_sha256, t2, &reviewer_event(AuditAction::ReviewerLogout)).unwrap());
            assert!(!db.revoke_session(&stored.id_sha256, t2 + Duration::seconds(1), &reviewer_event(AuditAction::ReviewerLogout)).unwrap());
            assert_eq!(audit_count(&db), 2, "one sign-out record");
            let revoked = db.find_session(&stored.id_sha256).unwrap().unwrap();
            assert_eq!(revoked.revoked_at, Some(t2));
            assert!(!db.touch_session(&stored.id_sha256, t2 + Duration::minutes(1)).unwrap());
            assert_eq!(db.find_session(&stored.id_sha256).unwrap().unwrap().last_seen_at, t1);

            // Unknown sessions: nothing found, nothing changed, nothing recorded.
            let unknown = "ff".repeat(32);
            assert_eq!(db.find_session(&unknown).unwrap(), None);
            assert!(!db.touch_session(&unknown, t2).unwrap());
            assert!(!db.revoke_session(&unknown, t2, &reviewer_event(AuditAction::ReviewerLogout)).unwrap());
            assert_eq!(audit_count(&db), 2);
        }

        fn ended_sessions_are_purged_in_bounded_batches(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let t0 = now();
            let event = reviewer_event(AuditAction::ReviewerLogin);
            let live = session("b1", t0);
            let revoked = session("b2", t0);
            let expired = ReviewerSession { expires_at: t0 + Duration::minutes(10), ..session("b3", t0 - Duration::hours(8)) };
            let idle = ReviewerSession { last_seen_at: t0 - Duration::minutes(31), ..session("b4", t0 - Duration::hours(1)) };
            for s in [&live, &revoked, &expired, &idle] {
                db.create_session(s, &event).unwrap();
            }
            db.revoke_session(&revoked.id_sha256, t0, &reviewer_event(AuditAction::ReviewerLogout)).unwrap();
            let at = t0 + Duration::minutes(10);
            let idle_cutoff = at - Duration::minutes(30);
            assert_eq!(db.purge_sessions(at, idle_cutoff, 2).unwrap(), 2, "at most the limit");
            assert_eq!(db.purge_sessions(at, idle_cutoff, 2).unwrap(), 1);
            assert_eq!(db.purge_sessions(at, idle_cutoff, 2).unwrap(), 0);
            for ended in [&revoked, &expired, &idle] {
                assert_eq!(db.find_session(&ended.id_sha256).unwrap(), None);
            }
            assert_eq!(db.find_session(&live.id_sha256).unwrap(), Some(live.clone()), "a live session stays");
            // Exactly at its idle cutoff a session is ended; exactly at expiry too.
            assert_eq!(db.purge_sessions(t0 + Duration::hours(8), t0 - Duration::seconds(1), 10).unwrap(), 1);
        }

        fn a_sign_out_at_one_replica_is_seen_at_another(backend) {
            let test = TestDatabase::new(backend);
            let (one, two) = (test.open(), test.open());
            let t0 = now();
            let s = session("c1", t0);
            one.create_session(&s, &reviewer_event(AuditAction::ReviewerLogin)).unwrap();
            assert_eq!(two.find_session(&s.id_sha256).unwrap(), Some(s.clone()));
            assert!(two.revoke_session(&s.id_sha256, t0 + Duration::minutes(1), &reviewer_event(AuditAction::ReviewerLogout)).unwrap());
            assert_eq!(one.find_session(&s.id_sha256).unwrap().unwrap().revoked_at, Some(t0 + Duration::minutes(1)));
        }
    }
}

mod registration_tokens {
    //! The registration token's live credentials and state: rotation swaps the presented
    //! credential atomically (one winner), reviewers' changes compare the state's version.

    use super::*;
    use gateway_domain::registration_token::{RegistrationTokenState, TokenIssuer};
    use gateway_domain::text::Reason;

    fn rotated(
        db: &Database,
        org: OrganisationId,
        current: &str,
        next: &str,
    ) -> Result<gateway_domain::registration_token::RegistrationTokenStatus, RepositoryError> {
        db.rotate_credential(
            org,
            current,
            &credential(next),
            now(),
            &event(AuditAction::RegistrationTokenRotated, Some(org)),
        )
    }

    backend_tests! {
        fn registration_starts_an_active_token_that_rotation_replaces(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let status = db.registration_tokens(&[org.id]).unwrap().remove(&org.id).unwrap();
            assert_eq!((status.state, status.issued_by.clone(), status.rotations), (RegistrationTokenState::Active, TokenIssuer::Registration, 0));
            let events_before = audit_count(&db);

            let after = rotated(&db, org.id, "sel-AB123", "sel-next").unwrap();
            assert_eq!((after.rotations, after.version), (1, status.version.next()));
            assert!(after.rotated_at.is_some());
            assert!(db.find_credential("sel-AB123").unwrap().is_none(), "the old credential is gone");
            assert_eq!(db.find_credential("sel-next").unwrap().unwrap().organisation_id, org.id);
            assert_eq!(audit_count(&db), events_before + 1);

            // The old credential cannot rotate again, nor can another organisation's id.
            assert!(matches!(rotated(&db, org.id, "sel-AB123", "sel-x"), Err(RepositoryError::NotFound)));
            let other = register(&db, "CD456", &["two.example.org"]).unwrap();
            assert!(matches!(rotated(&db, other.id, "sel-next", "sel-y"), Err(RepositoryError::NotFound)));
            assert!(db.find_credential("sel-x").unwrap().is_none());
            assert!(db.find_credential("sel-y").unwrap().is_none());
            assert_eq!(db.find_credential("sel-next").unwrap().unwrap().organisation_id, org.id);
            assert_eq!(audit_count(&db), events_before + 2, "refused rotations append nothing");
        }

        fn of_concurrent_rotations_with_one_token_exactly_one_wins(backend) {
            let test = TestDatabase::new(backend);
            let db = Arc::new(test.open());
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let barrier = Arc::new(Barrier::new(6));
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        rotated(&db, org.id, "sel-AB123", &format!("sel-new{i}")).is_ok()
                    })
                })
                .collect();
            let won: Vec<usize> = handles.into_iter().enumerate().filter_map(|(i, h)| h.join().unwrap().then_some(i)).collect();
            assert_eq!(won.len(), 1, "exactly one rotation wins: {won:?}");
            for i in 0..6 {
                assert_eq!(db.find_credential(&format!("sel-new{i}")).unwrap().is_some(), i == won[0]);
            }
            let status = db.registration_tokens(&[org.id]).unwrap().remove(&org.id).unwrap();
            assert_eq!(status.rotations, 1);
            let rotations = db.list_events(0, 100).unwrap().into_iter().filter(|e| e.action == "registration_token.rotated").count();
            assert_eq!(rotations, 1);
        }

        fn revocation_removes_every_credential_and_a_fresh_one_replaces_them(backend) {
            let test = TestDatabase::new(backend);
            let db = test.open();
            let org = register(&db, "AB123", &["one.example.org"]).unwrap();
            let other = register(&db, "CD456", &["two.example.org"]).unwrap();
            let current = db.registration_tokens(&[org.id]).unwrap().remove(&org.id).unwrap();
            let mut revoked = current.clone();
            revoked.state = RegistrationTokenState::Revoked;
            revoked.revoked_at = Some(now());
            revoked.revoked_by = Some("approver1".into());
            revoked.revocation_reason = Some(Reason::parse("leaked").unwrap());
            revoked.version = current.version.next();
            let event = event(AuditAction::RegistrationTokenRevoked, Some(org.id));
            let stored = db.replace_token_state(org.id, current.version, &revoked, None, &event).unwrap();
            assert_eq!(stored, revoked);
            assert!(db.find_credential("sel-AB123").unwrap().is_none());
            assert!(db.find_credential("sel-CD456").unwrap().is_some(), "other organisations keep theirs");
            // A stale version changes nothing.
            let events_before = audit_count(&db);
            let refused = db.replace_token_state(org.id, current.version, &current, Some(&credential("sel-stale")), &event);
            assert!(matches!(refused, Err(RepositoryError::VersionMismatch { current }) if current == revoked.version));
            assert!(db.find_credential("sel-stale").unwrap().is_none());
            assert_eq!(audit_count(&db), events_before);
            // Unknown organisations have no token state.
            assert!(matches!(db.replace_token_state(OrganisationId::new(), Version::FIRST, &revoked, None, &event), Err(RepositoryError::NotFound)));
            // A fresh token.
            let mut fresh = revoked.clone();
            fresh.state = RegistrationTokenState::Active;
            fresh.issued_by = TokenIssuer::Approver("approver1".into());
            fresh.version = revoked.version.next();
            db.replace_token_state(org.id, revoked.version, &fresh, Some(&credential("sel-fresh")), &event).unwrap();
            assert_eq!(db.find_credential("sel-fresh").unwrap().unwrap().organisation_id, org.id);
            let both = db.registration_tokens(&[org.id, other.id]).unwrap();
            assert_eq!(both[&org.id], fresh);
            assert_eq!(both[&other.id].state, RegistrationTokenState::Active);
        }
    }
}
