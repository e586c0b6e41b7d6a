//! The sealed audit trail on both backends: many concurrent writers, sequencers and a reader;
//! nothing skipped, nothing forked, and the stored Merkle tree equals the one the records
//! define.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use gateway_domain::audit::ChainVerifier;
use gateway_domain::merkle::{self, NodeMap, NodeRecorder};
use gateway_domain::{Actor, AuditAction, AuditFilter, AuditRepository, NewAuditEvent};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::{backend_tests, Sha256Hasher};

fn event(writer: usize, n: usize) -> NewAuditEvent {
    NewAuditEvent {
        occurred_at: Utc::now(),
        actor: Actor::System,
        action: AuditAction::TokenIssued,
        subject_type: "client",
        subject_id: Some(format!("writer-{writer}")),
        request_id: None,
        details: serde_json::json!({ "writer": writer, "n": n }),
    }
}

fn seal_all(db: &dyn AuditRepository) {
    while db.seal(&Sha256Hasher, 1000).unwrap() == 1000 {}
}

backend_tests! {
    fn eight_writers_two_sequencers_and_a_reader_never_skip_or_fork(backend) {
        // SQLite half: the threads share one process, whose writers take turns on its
        // in-process write lock, so the sequencers cannot race there (PostgreSQL's can).
        const WRITERS: usize = 8;
        const EACH: usize = 60;
        let test = TestDatabase::new(backend);
        let db = Arc::new(test.open());
        let writing = Arc::new(AtomicBool::new(true));
        let finished = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        db.append(&event(w, n)).unwrap();
                    }
                })
            })
            .collect();
        // Two sequencers at once: only the lock holder seals, positions never fork.
        let sequencers: Vec<_> = (0..2)
            .map(|_| {
                let (db, writing) = (db.clone(), writing.clone());
                std::thread::spawn(move || {
                    while writing.load(Ordering::Relaxed) {
                        db.seal(&Sha256Hasher, 50).unwrap();
                    }
                })
            })
            .collect();
        // A reader pages by position the whole time and must see 0, 1, 2, ... once each.
        let reader = {
            let (db, finished) = (db.clone(), finished.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    // Once everything is sealed, one more empty page means the reader saw it all.
                    let done = finished.load(Ordering::Relaxed);
                    let after = seen.last().copied();
                    let page = db.sealed_records(&AuditFilter::default(), after, 100).unwrap();
                    for record in &page {
                        seen.push(record.event.position.unwrap());
                    }
                    if page.is_empty() {
                        if done {
                            return seen;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            })
        };
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Relaxed);
        for sequencer in sequencers {
            sequencer.join().unwrap();
        }
        seal_all(db.as_ref());
        finished.store(true, Ordering::Relaxed);
        let seen = reader.join().unwrap();
        let total = (WRITERS * EACH) as i64;
        assert_eq!(seen, (0..total).collect::<Vec<_>>(), "every record once, in order");
        assert_eq!(db.sealed_head().unwrap().0, total);

        // The chain verifies end to end, and every writer's records are all there.
        let records = db.sealed_records(&AuditFilter::default(), None, 10_000).unwrap();
        let mut verifier = ChainVerifier::new(&Sha256Hasher);
        for record in &records {
            verifier.check(&record.event, &record.hash).unwrap();
        }
        for w in 0..WRITERS {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.event.details["writer"] == w)
                .map(|r| r.event.details["n"].as_u64().unwrap())
                .collect();
            assert_eq!(mine, (0..EACH as u64).collect::<Vec<_>>(), "writer {w} in its own order");
        }
    }

    fn the_stored_tree_is_the_rfc9162_tree_of_the_records(backend) {
        let test = TestDatabase::new(backend);
        let db = test.open();
        let h = Sha256Hasher;
        for n in 0..37 {
            db.append(&event(0, n)).unwrap();
            if n % 6 == 5 {
                db.seal(&h, 4).unwrap();
            }
        }
        seal_all(&db);
        let records = db.sealed_records(&AuditFilter::default(), None, 1000).unwrap();
        let mut verifier = ChainVerifier::new(&h);
        for (i, record) in records.iter().enumerate() {
            verifier.check(&record.event, &record.hash).unwrap();
            let size = i as u64 + 1;
            // The root from the stored nodes equals the root recomputed from the records.
            let mut recorder = NodeRecorder::default();
            merkle::root(&h, &mut recorder, size);
            let mut nodes = NodeMap { nodes: db.tree_nodes(&recorder.0).unwrap(), missing: Vec::new() };
            assert_eq!(merkle::root(&h, &mut nodes, size), verifier.head().root, "size {size}");
            assert!(nodes.missing.is_empty());
        }
        assert_eq!(records.len(), 37);
        // Only sealed records are ever read, and filters apply.
        db.append(&event(9, 0)).unwrap();
        let filtered = db
            .sealed_records(&AuditFilter { action: Some("token.issued".into()), ..AuditFilter::default() }, Some(30), 100)
            .unwrap();
        assert_eq!(filtered.len(), 6, "positions 31..36, the unsealed one left out");
    }
}
