//! How many disclosures a second the group-commit recorder takes (each acknowledged only
//! after its commit), as free/busy and address-book answers will record them.
//!
//! cargo bench -p gateway-tests --bench disclosures
//! BENCH_BACKEND=postgres cargo bench -p gateway-tests --bench disclosures
//!
//! BENCH_RECORDS (default 20000) and BENCH_CONCURRENCY (default 64) tune the load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use gateway_api::audit_log::AuditRecorder;
use gateway_domain::audit::Disclosure;
use gateway_domain::{AgreementId, OrganisationId};
use gateway_persistence::testing::TestDatabase;
use gateway_persistence::Backend;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let database = TestDatabase::new(backend);
    let recorder = AuditRecorder::start(Arc::new(database.open()));
    let (organisation, agreement) = (OrganisationId::new(), AgreementId::new());
    let started = Instant::now();
    let per_task = records / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    let disclosure = Disclosure {
                        organisation,
                        agreement,
                        key_id: Some("k1".into()),
                        request_id: Some(format!("{t}-{n}")),
                        what: "free_busy.answer",
                        count: 1,
                        details: serde_json::json!({ "mailboxes": 1 }),
                    };
                    recorder
                        .record(disclosure.event(chrono::Utc::now()))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = per_task * concurrency;
    println!(
        "disclosures on {} ({concurrency} concurrent recorders): {total} recorded and acknowledged after commit in {elapsed:.2} s: {:.0} disclosures/s",
        backend.name(),
        total as f64 / elapsed
    );
}
