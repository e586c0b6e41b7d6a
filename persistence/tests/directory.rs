//! The directory's repository contract and the change feed's promises, on SQLite and
//! PostgreSQL: batches all or nothing, no-ops write nothing, emails unique, a reader never
//! skips a committed change (also with concurrent publishers), and replaying the feed from any
//! cursor converges to exactly a partner's view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{Duration, Utc};
use gateway_domain::agreement::{AddressBookAttribute, OdsSelection};
use gateway_domain::directory::{
    AddressBookView, BatchOutcome, DirectoryEntry, DirectoryOperation, EntryForm, EntryId, FeedItem,
};
use gateway_domain::services::directory::{DirectoryService, ScanWindows, SyncPosition};
use gateway_domain::services::ServiceError;
use gateway_domain::{
    Actor, AuditAction, Conflict, DirectoryRepository, FixedClock, IdempotentAnswer, NewAuditEvent,
    OdsCode, RepositoryError,
};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{backend_tests, Backend, Database};
use proptest::prelude::*;

fn entry(n: u128, ods: &str, hidden: bool, version: u32) -> DirectoryEntry {
    EntryForm {
        id: uuid::Uuid::from_u128(n + 1).to_string(),
        email: format!("person{n}@nhs.net"),
        display_name: format!("Person {n} v{version}"),
        given_name: Some("Ada".into()),
        surname: None,
        job_title: Some(format!("Nurse {version}")),
        department: None,
        ods_code: ods.into(),
        organisation_name: format!("Organisation {ods}"),
        office_phone: None,
        mobile_phone: Some("07700 900123".into()),
        hidden_from_address_book: hidden,
    }
    .parse()
    .unwrap()
}

fn id(n: u128) -> EntryId {
    EntryId::from_uuid(uuid::Uuid::from_u128(n + 1))
}

fn record(outcome: &BatchOutcome) -> (NewAuditEvent, Option<IdempotentAnswer>) {
    (
        NewAuditEvent {
            occurred_at: Utc::now(),
            actor: Actor::Publisher("publisher".into()),
            action: AuditAction::DirectoryChanged,
            subject_type: "directory",
            subject_id: Some("national".into()),
            request_id: None,
            details: serde_json::json!({ "upserted": outcome.upserted }),
        },
        None,
    )
}

fn apply(db: &Database, ops: &[DirectoryOperation]) -> Result<BatchOutcome, RepositoryError> {
    db.apply_changes(ops, Utc::now(), &record)
}

fn service(db: &Arc<Database>) -> DirectoryService {
    DirectoryService {
        directory: db.clone(),
        clock: Arc::new(FixedClock(Utc::now())),
    }
}

fn codes(raw: &[&str]) -> OdsSelection {
    let mut codes: Vec<OdsCode> = raw.iter().map(|c| OdsCode::parse(c).unwrap()).collect();
    codes.sort();
    codes.dedup();
    OdsSelection::Only(codes)
}

fn view(organisations: OdsSelection) -> AddressBookView {
    AddressBookView {
        organisations,
        attributes: vec![AddressBookAttribute::DisplayName],
    }
}

type Replica = BTreeMap<EntryId, DirectoryEntry>;

/// Applies pages from `position` until there is no more; returns where it stopped. Pages
/// scan through small windows (3 entries, 4 positions), so the streams cross many window
/// edges, with pages that hold fewer items than asked, or none.
fn sync(
    svc: &DirectoryService,
    view: &AddressBookView,
    replica: &mut Replica,
    mut position: SyncPosition,
    limit: i64,
) -> SyncPosition {
    loop {
        let windows = ScanWindows {
            entries: 3,
            positions: 4,
        };
        let page = svc.page_within(view, position, limit, windows).unwrap();
        if page.reset {
            replica.clear();
        }
        for item in page.items {
            match item {
                FeedItem::Upsert(entry) => {
                    replica.insert(entry.id, entry);
                }
                FeedItem::Delete { id, .. } => {
                    replica.remove(&id);
                }
            }
        }
        position = page.next;
        if !page.has_more {
            return position;
        }
    }
}

fn expected(directory: &HashMap<EntryId, DirectoryEntry>, view: &AddressBookView) -> Replica {
    directory
        .values()
        .filter(|e| view.lists(&e.state()))
        .map(|e| (e.id, e.clone()))
        .collect()
}

backend_tests! {
    fn batches_write_changes_and_skip_what_changes_nothing(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        let ops: Vec<_> = (0..3).map(|n| DirectoryOperation::Upsert(entry(n, "RR8", false, 1))).collect();
        let outcome = apply(&db, &ops).unwrap();
        assert_eq!((outcome.upserted, outcome.deleted, outcome.unchanged), (3, 0, 0));
        // The same entries again, and a delete of an unknown one, change nothing.
        let mut again = ops.clone();
        again.push(DirectoryOperation::Delete(id(99)));
        let outcome = apply(&db, &again).unwrap();
        assert_eq!((outcome.upserted, outcome.deleted, outcome.unchanged), (0, 0, 4));
        // Nothing is visible before the sequencer positions it.
        assert_eq!(db.feed_head().unwrap().head, 0);
        assert_eq!(db.sequence_changes(100).unwrap(), 3);
        assert_eq!(db.feed_head().unwrap().head, 3);
        assert_eq!(db.sequence_changes(100).unwrap(), 0);
        let outcome = apply(&db, &[DirectoryOperation::Delete(id(1))]).unwrap();
        assert_eq!(outcome.deleted, 1);
        assert!(db.get_entry(id(1)).unwrap().is_none());
        assert_eq!(db.get_entry(id(0)).unwrap(), Some(entry(0, "RR8", false, 1)));
        // The deleted entry comes back with a new upsert.
        assert_eq!(apply(&db, &[DirectoryOperation::Upsert(entry(1, "RR8", false, 2))]).unwrap().upserted, 1);
        assert_eq!(db.sequence_changes(100).unwrap(), 2);
        let page = db.changes_after(&OdsSelection::All, 3, i64::MAX, 10).unwrap();
        assert_eq!(page.changes.iter().map(|c| c.0.position).collect::<Vec<_>>(), [4, 5]);
    }

    fn an_email_held_by_another_entry_is_refused_and_nothing_changes(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        apply(&db, &[DirectoryOperation::Upsert(entry(0, "RR8", false, 1))]).unwrap();
        let mut thief = entry(1, "RR8", false, 1);
        thief.email = entry(0, "RR8", false, 1).email;
        let other = entry(2, "RR8", false, 1);
        let refused = apply(&db, &[DirectoryOperation::Upsert(other), DirectoryOperation::Upsert(thief.clone())]);
        assert!(matches!(refused, Err(RepositoryError::Conflict(Conflict::EmailTaken(ref e))) if e == "person0@nhs.net"), "{refused:?}");
        assert!(db.get_entry(id(2)).unwrap().is_none(), "the batch stored nothing");
        // Once the holder is deleted (in the same batch), the address is free.
        apply(&db, &[DirectoryOperation::Delete(id(0)), DirectoryOperation::Upsert(thief)]).unwrap();
        assert_eq!(db.get_entry(id(1)).unwrap().unwrap().email.as_str(), "person0@nhs.net");
    }

    fn emails_swap_and_move_along_a_chain_within_one_batch(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        let email = |n: u128| entry(n, "RR8", false, 1).email;
        apply(&db, &(0..3).map(|n| DirectoryOperation::Upsert(entry(n, "RR8", false, 1))).collect::<Vec<_>>()).unwrap();
        // 0 and 1 swap; 2 takes a new address: in either order of the rows.
        let with = |n: u128, from: u128| {
            let mut e = entry(n, "RR8", false, 2);
            e.email = email(from);
            e
        };
        let mut fresh = entry(2, "RR8", false, 2);
        fresh.email = entry(9, "RR8", false, 1).email;
        apply(&db, &[DirectoryOperation::Upsert(with(0, 1)), DirectoryOperation::Upsert(with(1, 0)), DirectoryOperation::Upsert(fresh)]).unwrap();
        let held = |n: u128| db.get_entry(id(n)).unwrap().unwrap().email.as_str().to_owned();
        assert_eq!((held(0), held(1), held(2)), ("person1@nhs.net".into(), "person0@nhs.net".into(), "person9@nhs.net".into()));
        // A chain: 0 takes 2's (person9), 2 takes 1's (person0), 1 takes a new one.
        let mut new_one = entry(1, "RR8", false, 3);
        new_one.email = entry(7, "RR8", false, 1).email;
        let mut zero = entry(0, "RR8", false, 3);
        zero.email = entry(9, "RR8", false, 1).email;
        let mut two = entry(2, "RR8", false, 3);
        two.email = email(0);
        apply(&db, &[DirectoryOperation::Upsert(zero), DirectoryOperation::Upsert(two), DirectoryOperation::Upsert(new_one)]).unwrap();
        assert_eq!((held(0), held(1), held(2)), ("person9@nhs.net".into(), "person7@nhs.net".into(), "person0@nhs.net".into()));
        // Another case of a held address is the same mailbox: refused, naming the holder's.
        let mut shouting = entry(5, "RR8", false, 1);
        shouting.email = gateway_domain::EmailAddress::parse("PERSON9@nhs.net").unwrap();
        let refused = apply(&db, &[DirectoryOperation::Upsert(shouting)]);
        assert!(matches!(refused, Err(RepositoryError::Conflict(Conflict::EmailTaken(ref e))) if e == "person9@nhs.net"), "{refused:?}");
        assert!(db.get_entry(id(5)).unwrap().is_none());
    }

    fn idempotent_answers_are_stored_with_the_batch_once(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        let answer = IdempotentAnswer { scope: "s".into(), key: "k".into(), request_sha256: "h".into(), answer: serde_json::json!({"upserted": 1}) };
        let with_answer = |_: &BatchOutcome| (record(&BatchOutcome::default()).0, Some(answer.clone()));
        db.apply_changes(&[DirectoryOperation::Upsert(entry(0, "RR8", false, 1))], Utc::now(), &with_answer).unwrap();
        assert_eq!(db.idempotent_answer("s", "k").unwrap(), Some(answer.clone()));
        let again = db.apply_changes(&[DirectoryOperation::Upsert(entry(1, "RR8", false, 1))], Utc::now(), &with_answer);
        assert!(matches!(again, Err(RepositoryError::Conflict(Conflict::Unique { .. }))), "{again:?}");
        assert!(db.get_entry(id(1)).unwrap().is_none(), "the second batch stored nothing");
        assert_eq!(db.purge_answers(Utc::now() + Duration::seconds(1)).unwrap(), 1);
        assert_eq!(db.idempotent_answer("s", "k").unwrap(), None);
    }

    fn purged_changes_send_old_cursors_to_a_resync(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        let svc = service(&db);
        let v = view(OdsSelection::All);
        apply(&db, &[DirectoryOperation::Upsert(entry(0, "RR8", false, 1))]).unwrap();
        svc.sequence_all().unwrap();
        let mut replica = Replica::new();
        let old = sync(&svc, &v, &mut replica, SyncPosition::Start, 10);
        apply(&db, &[DirectoryOperation::Delete(id(0))]).unwrap();
        apply(&db, &[DirectoryOperation::Upsert(entry(1, "RR8", false, 1))]).unwrap();
        svc.sequence_all().unwrap();
        // Everything made before "tomorrow" is older than a retention of 0 days then.
        let later = DirectoryService { directory: db.clone(), clock: Arc::new(FixedClock(Utc::now() + Duration::days(1))) };
        assert_eq!(later.purge(0, 7).unwrap(), 3);
        assert_eq!(db.feed_head().unwrap().purged_through, 3);
        assert!(matches!(svc.page(&v, old, 10), Err(ServiceError::Gone)));
        // The tombstone is gone too; a fresh snapshot is the current view.
        let mut fresh = Replica::new();
        sync(&svc, &v, &mut fresh, SyncPosition::Start, 10);
        assert_eq!(fresh.keys().copied().collect::<Vec<_>>(), [id(1)]);
    }

    fn concurrent_publishers_never_let_a_reader_skip_a_change(backend) {
        let store = TestDatabase::new(backend);
        let db = Arc::new(store.open());
        let writing = Arc::new(AtomicBool::new(true));
        let writers: Vec<_> = (0..4u128)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for round in 0..25u32 {
                        // Overlapping ids: writers touch each other's entries too.
                        let ops: Vec<_> = (0..10u128)
                            .map(|i| {
                                let n = (w * 7 + i + u128::from(round)) % 60;
                                DirectoryOperation::Upsert(entry(n, "RR8", false, round * 10 + w as u32))
                            })
                            .collect();
                        apply(&db, &ops).unwrap();
                    }
                })
            })
            .collect();
        let sequencer = {
            let db = db.clone();
            let writing = writing.clone();
            std::thread::spawn(move || {
                while writing.load(Ordering::Relaxed) {
                    db.sequence_changes(7).unwrap();
                }
            })
        };
        // Readers stop once everything is positioned and they have seen nothing more.
        let drained = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let db = db.clone();
                let drained = drained.clone();
                std::thread::spawn(move || {
                    let mut seen: Vec<i64> = Vec::new();
                    let mut after = 0;
                    loop {
                        let done = drained.load(Ordering::Relaxed);
                        let page = db.changes_after(&OdsSelection::All, after, i64::MAX, 5).unwrap();
                        for (change, _) in &page.changes {
                            seen.push(change.position);
                        }
                        if let Some((last, _)) = page.changes.last() {
                            after = last.position.max(after);
                        }
                        if done && page.changes.is_empty() {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Relaxed);
        sequencer.join().unwrap();
        while db.sequence_changes(1000).unwrap() > 0 {}
        drained.store(true, Ordering::Relaxed);
        let head = db.feed_head().unwrap().head;
        assert!(head > 0);
        for reader in readers {
            let seen = reader.join().unwrap();
            // Every position, once, in order: nothing skipped, nothing out of order.
            assert_eq!(seen, (1..=head).collect::<Vec<_>>());
        }
        // And a replica following the feed ends equal to the directory.
        let svc = service(&db);
        let v = view(OdsSelection::All);
        let mut replica = Replica::new();
        sync(&svc, &v, &mut replica, SyncPosition::Start, 17);
        let stored: Replica = (0..60u128).filter_map(|n| db.get_entry(id(n)).unwrap()).map(|e| (e.id, e)).collect();
        assert_eq!(replica, stored);
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Upsert {
        n: u128,
        ods: usize,
        hidden: bool,
    },
    Delete {
        n: u128,
    },
    /// Positions what is waiting (otherwise changes wait, as with a slow sequencer).
    Sequence,
    /// A partner syncs now and keeps its cursor and copy.
    Checkpoint,
}

const ODS: [&str; 3] = ["RR8", "RAE", "RX1"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..8u128, 0..3usize, proptest::bool::weighted(0.2)).prop_map(|(n, ods, hidden)| Step::Upsert { n, ods, hidden }),
        2 => (0..8u128).prop_map(|n| Step::Delete { n }),
        1 => Just(Step::Sequence),
        1 => Just(Step::Checkpoint),
    ]
}

fn replay_converges(
    backend: Backend,
    steps: Vec<Step>,
    covered: Vec<usize>,
    batch: usize,
    limit: i64,
) {
    let store = TestDatabase::new(backend);
    let db = Arc::new(store.open());
    let svc = service(&db);
    let selection = if covered.len() == ODS.len() {
        OdsSelection::All
    } else {
        codes(&covered.iter().map(|i| ODS[*i]).collect::<Vec<_>>())
    };
    let v = view(selection);
    let mut directory: HashMap<EntryId, DirectoryEntry> = HashMap::new();
    let mut pending: Vec<DirectoryOperation> = Vec::new();
    let mut checkpoints: Vec<(SyncPosition, Replica)> = vec![(SyncPosition::Start, Replica::new())];
    let mut version = 0;
    let flush = |pending: &mut Vec<DirectoryOperation>| {
        if !pending.is_empty() {
            apply(&db, pending).unwrap();
            pending.clear();
        }
    };
    for step in steps {
        match step {
            Step::Upsert { n, ods, hidden } => {
                version += 1;
                // The batch keeps one operation per entry, as DirectoryBatch does.
                pending.retain(|op| op.id() != id(n));
                let e = entry(n, ODS[ods], hidden, version);
                directory.insert(e.id, e.clone());
                pending.push(DirectoryOperation::Upsert(e));
            }
            Step::Delete { n } => {
                pending.retain(|op| op.id() != id(n));
                directory.remove(&id(n));
                pending.push(DirectoryOperation::Delete(id(n)));
            }
            Step::Sequence => {
                flush(&mut pending);
                svc.sequence_all().unwrap();
            }
            Step::Checkpoint => {
                flush(&mut pending);
                let (position, mut replica) = checkpoints.last().cloned().unwrap();
                let next = sync(&svc, &v, &mut replica, position, limit);
                checkpoints.push((next, replica));
            }
        }
        if pending.len() >= batch {
            flush(&mut pending);
        }
    }
    flush(&mut pending);
    svc.sequence_all().unwrap();
    let want = expected(&directory, &v);
    for (position, mut replica) in checkpoints {
        sync(&svc, &v, &mut replica, position, limit);
        assert_eq!(replica, want, "replaying from {position:?}");
    }
}

fn cases(backend: Backend) -> u32 {
    let default = match backend {
        Backend::Sqlite => 48,
        Backend::Postgres => 16,
    };
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

fn histories(backend: Backend) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(backend),
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(step(), 1..60),
        proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
        1..6usize,
        1..5i64,
    );
    runner
        .run(&strategy, |(steps, covered, batch, limit)| {
            replay_converges(backend, steps, covered, batch, limit);
            Ok(())
        })
        .unwrap();
}

#[test]
fn replaying_the_feed_from_any_cursor_converges_to_the_view_sqlite() {
    histories(Backend::Sqlite);
}

#[test]
fn replaying_the_feed_from_any_cursor_converges_to_the_view_postgres() {
    histories(Backend::Postgres);
}
