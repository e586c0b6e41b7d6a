//! Races between two processes on one SQLite file. The contract tests' SQLite halves cannot
//! race (one process's writers take turns on its in-process write lock), so these start this
//! test binary twice as helper processes on one file, released at the same moment, both
//! claiming the same things: exactly one wins each, the other gets the documented outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use gateway_domain::dns::{Verification, VerificationMethod};
use gateway_domain::organisation::{ContactForm, RegistrationForm};
use gateway_domain::{
    Actor, AuditAction, Conflict, CredentialDigest, EmailDomain, NewAuditEvent, NewOrganisation,
    OrganisationId, OrganisationRepository, ReplayCache, RepositoryError,
};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{Backend, Database, DatabaseUrl, PoolOptions};

const ROLE: &str = "GW_RACE_ROLE";
const DB_FILE: &str = "GW_RACE_DB";
const WORK_DIR: &str = "GW_RACE_DIR";
const NAME: &str = "GW_RACE_NAME";
const ORGANISATION: &str = "GW_RACE_ORGANISATION";
/// How many things each race claims: enough that, with deferred SQLite transactions (before
/// `BEGIN IMMEDIATE`), a side regularly ended with `Unavailable("database is locked")`.
const CLAIMS: usize = 200;

fn event(action: AuditAction, subject: OrganisationId) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: Utc::now().trunc_subsecs(6),
        actor: Actor::Organisation(subject),
        action,
        subject_type: "organisation",
        subject_id: Some(subject.to_string()),
        request_id: None,
        details: serde_json::json!({}),
    }
}

fn domain(i: usize) -> String {
    format!("contested{i}.example.org")
}

/// One side of a race, run in its own process: signals it is ready, waits for the start,
/// claims everything in order and writes one line per claim: `index outcome`.
#[test]
#[ignore = "a helper process that the race tests start; does nothing on its own"]
fn race_helper() {
    let (Ok(role), Ok(file), Ok(dir), Ok(name)) = (
        std::env::var(ROLE),
        std::env::var(DB_FILE),
        std::env::var(WORK_DIR),
        std::env::var(NAME),
    ) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let db = Database::connect(
        &DatabaseUrl::Sqlite(PathBuf::from(file)),
        &PoolOptions::default(),
    )
    .unwrap();
    std::fs::write(dir.join(format!("ready-{name}")), "").unwrap();
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut lines = Vec::new();
    for i in 0..CLAIMS {
        let outcome = match role.as_str() {
            "jti" => {
                let now = Utc::now();
                match db.remember(
                    "client",
                    &format!("jti-{i}"),
                    now + chrono::Duration::seconds(600),
                    now,
                ) {
                    Ok(true) => "won".to_owned(),
                    Ok(false) => "replay".to_owned(),
                    Err(error) => format!("error {error:?}"),
                }
            }
            "verify" => {
                let org = OrganisationId::from_uuid(
                    std::env::var(ORGANISATION).unwrap().parse().unwrap(),
                );
                let verification = Verification {
                    at: Utc::now().trunc_subsecs(6),
                    method: VerificationMethod::Dns,
                    by: None,
                    reason: None,
                };
                match db.verify_domain(
                    org,
                    &EmailDomain::parse(&domain(i)).unwrap(),
                    &verification,
                    &event(AuditAction::DomainVerified, org),
                ) {
                    Ok(_) => "won".to_owned(),
                    Err(RepositoryError::Conflict(Conflict::DomainTaken(taken))) => {
                        format!("taken {taken}")
                    }
                    Err(error) => format!("error {error:?}"),
                }
            }
            other => panic!("unknown role {other}"),
        };
        lines.push(format!("{i} {outcome}"));
    }
    std::fs::write(dir.join(format!("result-{name}")), lines.join("\n")).unwrap();
}

fn start(
    role: &str,
    file: &Path,
    dir: &Path,
    name: &str,
    organisation: Option<OrganisationId>,
) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "race_helper",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(DB_FILE, file)
        .env(WORK_DIR, dir)
        .env(NAME, name);
    if let Some(org) = organisation {
        command.env(ORGANISATION, org.to_string());
    }
    command.spawn().unwrap()
}

/// Runs the two sides at once; returns each side's outcome per claim.
fn race(
    test: &TestDatabase,
    role: &str,
    organisations: [Option<OrganisationId>; 2],
) -> [Vec<String>; 2] {
    let DatabaseUrl::Sqlite(file) = &test.url else {
        panic!("a SQLite race")
    };
    let dir = tempfile::tempdir().unwrap();
    let mut children: Vec<Child> = ["a", "b"]
        .iter()
        .zip(organisations)
        .map(|(name, org)| start(role, file, dir.path(), name, org))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(dir.path().join("ready-a").exists() && dir.path().join("ready-b").exists()) {
        assert!(
            Instant::now() < deadline,
            "the helper processes did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    for child in &mut children {
        assert!(child.wait().unwrap().success(), "a helper process failed");
    }
    ["a", "b"].map(|name| {
        let text = std::fs::read_to_string(dir.path().join(format!("result-{name}"))).unwrap();
        let outcomes: Vec<String> = text
            .lines()
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect();
        assert_eq!(outcomes.len(), CLAIMS);
        outcomes
    })
}

#[test]
fn two_processes_remembering_the_same_jtis_have_one_winner_each() {
    let test = TestDatabase::new(Backend::Sqlite);
    drop(test.open());
    let [a, b] = race(&test, "jti", [None, None]);
    for i in 0..CLAIMS {
        let mut pair = [a[i].as_str(), b[i].as_str()];
        pair.sort_unstable();
        assert_eq!(
            pair,
            ["replay", "won"],
            "jti-{i}: one process records it, the other sees a replay"
        );
    }
}

#[test]
fn two_processes_verifying_the_same_domains_have_one_winner_each() {
    let test = TestDatabase::new(Backend::Sqlite);
    let db = test.open();
    let domains: Vec<String> = (0..CLAIMS).map(domain).collect();
    let organisations = ["AB123", "CD456"].map(|ods| {
        let id = OrganisationId::new();
        let form = NewOrganisation::parse(&RegistrationForm {
            ods_code: ods.into(),
            name: format!("Care Organisation {ods}"),
            category: "hospice".into(),
            exchange_version: "exchange_2019".into(),
            domains: domains.clone(),
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
        .unwrap();
        let credential = CredentialDigest {
            selector: format!("sel-{ods}"),
            secret_sha256: "hash".into(),
        };
        db.create(
            id,
            &form,
            &credential,
            Utc::now().trunc_subsecs(6),
            &event(AuditAction::OrganisationRegistered, id),
        )
        .unwrap();
        id
    });
    drop(db);
    let [a, b] = race(&test, "verify", organisations.map(Some));
    for i in 0..CLAIMS {
        let taken = format!("taken {}", domain(i));
        let mut pair = [a[i].as_str(), b[i].as_str()];
        pair.sort_unstable();
        assert_eq!(
            pair,
            [taken.as_str(), "won"],
            "{}: one process verifies it, the other gets DomainTaken",
            domain(i)
        );
    }
    // And the store agrees: each domain is verified for exactly one of them.
    let db = test.open();
    let verified: usize = organisations
        .iter()
        .map(|id| {
            db.get(*id)
                .unwrap()
                .unwrap()
                .domains
                .iter()
                .filter(|d| d.verification.is_some())
                .count()
        })
        .sum();
    assert_eq!(verified, CLAIMS);
}
