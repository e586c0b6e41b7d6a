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
    db.list(0, 1000).unwrap().len()
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

        let events = db.list(0, 10).unwrap();
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
        let first = db.list(0, 3).unwrap();
        assert_eq!(first.len(), 3);
        let rest = db.list(first[2].seq, 10).unwrap();
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
