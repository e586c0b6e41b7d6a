//! The repository contract, run against SQLite and PostgreSQL: every port method's documented
//! promise, on both backends, each test on its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, SubsecRound, Utc};
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

    fn duplicate_ods_code_is_a_conflict_and_stores_nothing(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        register(&db, "AB123", &["one.example.org"]).unwrap();
        let error = register(&db, "ab123", &["other.example.org"]).unwrap_err();
        assert!(matches!(error, RepositoryError::Conflict(Conflict::OdsCodeTaken(ref c)) if c.as_str() == "AB123"), "{error:?}");
        assert_eq!(audit_count(&db), 1);
        assert!(db.find_credential("sel-ab123").unwrap().is_none());
    }

    fn a_domain_belongs_to_one_organisation(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        register(&db, "AB123", &["one.example.org"]).unwrap();
        let error = register(&db, "CD456", &["fresh.example.org", "one.example.org"]).unwrap_err();
        match error {
            RepositoryError::Conflict(Conflict::DomainTaken(domain)) => assert_eq!(domain.as_str(), "one.example.org"),
            other => panic!("expected DomainTaken, got {other:?}"),
        }
        // Nothing of the refused registration was kept: its free domain is still free.
        assert_eq!(audit_count(&db), 1);
        register(&db, "EF789", &["fresh.example.org"]).unwrap();
    }

    fn concurrent_claims_of_one_domain_have_one_winner(backend) {
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    register(&db, &format!("RACE{i}"), &["contested.example.org"])
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        for result in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(result, Err(RepositoryError::Conflict(Conflict::DomainTaken(_)))), "{result:?}");
        }
        assert_eq!(audit_count(&db), 1);
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
        register(&db, "CD456", &["theirs.example.org"]).unwrap();
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
        let removed = db.remove_keys(&[(org.id, "k1".into())], std::slice::from_ref(&event)).unwrap();
        assert_eq!(removed, 1);
        assert!(db.list_keys(org.id).unwrap().is_empty());
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
        assert_eq!(db.purge_expired(until + Duration::seconds(500)).unwrap(), 2);
    }

    fn concurrent_replays_have_one_winner(backend) {
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

backend_tests! {
    fn concurrent_key_replacements_all_succeed(backend) {
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
