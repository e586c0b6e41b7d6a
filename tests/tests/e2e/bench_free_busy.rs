//! The free/busy benchmark (issue 10), `#[ignore]`d: run it on purpose, in release (README,
//! Benchmarks):
//!
//! ```sh
//! cargo test --release -p gateway-tests --test e2e bench_free_busy -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Per backend (`BENCH_BACKENDS`, default `sqlite,postgres`): an in-process gateway with a
//! publisher; `BENCH_MAILBOXES` (10,000) directory entries across 20 organisations; for each,
//! 8 blocks every working day for 3 months (March to May 2027) stored through the repository
//! (the same function the publisher's PUT calls); a partner approved through the real
//! workflow with a free/busy agreement covering every organisation. Then, over HTTP on
//! loopback: 40 queries of 100 mailboxes x 42 days (interval 30), timed as the client sees them
//! (an upper bound of the server's time; p50, p99 = the slowest but none); and requests per
//! second of 1 mailbox x 1 day under 16 concurrent connections for 10 s, measured in the same
//! run as `/healthz` under the same load (the HTTP ceiling). Every free/busy answer is recorded
//! as a disclosure, as in production. Figures are printed, never asserted; what is asserted is
//! that each answer held the mailboxes and views expected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, Duration as Days, NaiveDate, TimeZone, Utc};
use gateway_domain::calendar::{BusyBlock, BusyStatus, ReplaceRange};
use gateway_domain::{CalendarRepository, EmailAddress};
use gateway_persistence::Backend;
use serde_json::{json, Value};

use crate::address_book::{entry, gateway_and, publish, upsert};
use crate::onboarding::approved_partner;

fn mailboxes() -> u32 {
    std::env::var("BENCH_MAILBOXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn email(n: u32) -> String {
    format!("person{n}@nhs.net")
}

/// 8 blocks of 45 minutes every working day from 1 March to 31 May 2027, statuses mixed.
fn blocks(n: u32) -> Vec<BusyBlock> {
    let statuses = BusyStatus::ALL;
    let mut out = Vec::new();
    let mut day = NaiveDate::from_ymd_opt(2027, 3, 1).unwrap();
    let end = NaiveDate::from_ymd_opt(2027, 6, 1).unwrap();
    while day < end {
        if day.weekday().num_days_from_monday() < 5 {
            for k in 0..8u32 {
                let start = Utc.from_utc_datetime(&day.and_hms_opt(8 + k, 0, 0).unwrap());
                out.push(BusyBlock {
                    start,
                    end: start + Days::minutes(45),
                    status: statuses[((n + k + day.day()) % 4) as usize],
                    subject: Some(format!("Meeting {k}")),
                    location: Some("Room 1".into()),
                    private: k == 3,
                });
            }
        }
        day += Days::days(1);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Requests a second over `seconds` with `connections` concurrent clients; all must be 200.
async fn load(
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
    connections: usize,
    seconds: u64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (make, done) = (make.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while Instant::now() < until {
                let response = make(&client).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn run(backend: Backend) {
    let (app, provider, publisher, _dir) = gateway_and(backend, |settings| {
        settings.free_busy.queries_per_minute = 100_000_000;
        settings.free_busy.query_burst = 100_000_000;
    })
    .await;
    let count = mailboxes();
    let seeded = Instant::now();
    for chunk in (1..=count).collect::<Vec<_>>().chunks(5_000) {
        let ops: Vec<Value> = chunk
            .iter()
            .map(|n| upsert(entry(*n, &format!("RR{}", n % 20), false)))
            .collect();
        let (status, answer, _) =
            publish(&app, &publisher, None, &json!({ "operations": ops })).await;
        assert_eq!(status, 200, "{answer}");
    }
    let db = app.open_database();
    let range = ReplaceRange::parse("2027-03-01T00:00:00Z", "2027-06-01T00:00:00Z").unwrap();
    let mut stored = 0;
    for n in 1..=count {
        let blocks = blocks(n);
        stored += blocks.len();
        db.replace_blocks(&EmailAddress::parse(&email(n)).unwrap(), &range, &blocks)
            .unwrap();
    }
    let seed_time = seeded.elapsed();

    let agreement = json!({
        "template_version": "2026-11",
        "scopes": {"free_busy": {"detail": "limited_details"}},
        "term": {"starts_on": "2026-01-01", "ends_on": "2028-06-30"},
        "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
    });
    let (partner, _, _, _) = approved_partner(&app, &provider, 1, agreement).await;
    let token = app.access_token(partner.id, &partner.key).await;
    let client = reqwest::Client::new();

    // 100 mailboxes x 42 days.
    let mut times = Vec::new();
    for round in 0..40u32 {
        let schedules: Vec<String> = (0..100u32)
            .map(|i| email(1 + (round * 997 + i * 89) % count))
            .collect();
        let body = json!({
            "schedules": schedules, "start": "2027-03-08T00:00:00Z", "end": "2027-04-19T00:00:00Z",
            "interval_minutes": 30
        });
        let t = Instant::now();
        let response = client
            .post(app.url("/v1/free-busy"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        times.push(t.elapsed());
        let answered = answer["schedules"].as_array().unwrap();
        assert_eq!(answered.len(), 100);
        assert!(answered
            .iter()
            .all(|s| s["availability_view"].as_str().unwrap().len() == 42 * 48));
    }
    times.sort();

    // 1 mailbox x 1 day against /healthz, same load, same run.
    let url = app.url("/v1/free-busy");
    let day = json!({"schedules": [email(7)], "start": "2027-03-09T00:00:00Z", "end": "2027-03-10T00:00:00Z"});
    let free_busy_rps = load(
        Arc::new(move |c: &reqwest::Client| c.post(&url).bearer_auth(&token).json(&day)),
        16,
        10,
    )
    .await;
    let health = app.url("/healthz");
    let health_rps = load(Arc::new(move |c: &reqwest::Client| c.get(&health)), 16, 10).await;
    println!(
        "BENCH free_busy backend={} mailboxes={count} blocks={stored} seed_s={:.1} q100x42d_ms_p50={:.1} q100x42d_ms_p99={:.1} q1x1d_rps={free_busy_rps:.0} healthz_rps={health_rps:.0} ratio={:.2}",
        backend.name(),
        seed_time.as_secs_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        free_busy_rps / health_rps,
    );
}

#[actix_web::test]
#[ignore = "a benchmark: run it on purpose (README, Benchmarks)"]
async fn bench_free_busy() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for name in backends.split(',') {
        let backend = match name.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend {other}"),
        };
        run(backend).await;
    }
}
