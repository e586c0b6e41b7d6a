//! The address-book benchmark (issue 9), `#[ignore]`d: run it on purpose, in release, after
//! building the release binary (see README "Benchmarks"):
//!
//! ```sh
//! cargo build --release --locked --bin federation-gateway
//! cargo test --release -p gateway-tests --test e2e bench_address_book -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Per backend: a partner is approved through the real workflow (two reviewers, the test
//! OpenID provider) with an agreement covering every organisation and attribute; the
//! in-process gateway is stopped; `federation-gateway directory import` loads a synthetic
//! directory of `BENCH_ENTRIES` (1,500,000) lines across 200 organisations (wall time); a
//! release `federation-gateway serve` on the same database serves a full sync over HTTP, page
//! by page at `limit=5000`, to this client (total time, entries per second, the server's peak
//! RSS); then a second import changes 1,000 entries and the feed page holding those 1,000
//! changes is fetched 30 times (median and p90 time as seen by the client on loopback, an upper
//! bound on the server's time). Figures are printed, never asserted; what is asserted is that
//! the sync returned exactly the visible entries and the delta exactly the 1,000 changes.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_persistence::Backend;
use serde::Deserialize;
use serde_json::json;

use crate::onboarding::approved_partner;
use crate::reviewers::gateway_with_provider_and;

const PAGE: usize = 5_000;

fn binary() -> PathBuf {
    std::env::var_os("BENCH_GATEWAY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/federation-gateway"),
        PathBuf::from,
    )
}

fn entries() -> u64 {
    std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500_000)
}

fn gateway_command(database_url: &str, kek: &str) -> Command {
    let mut command = Command::new(binary());
    command
        .env("GATEWAY__DATABASE__URL", database_url)
        .env("GATEWAY__AUTH__KEY_ENCRYPTION_KEY", kek)
        .env("GATEWAY__LOG__FILTER", "warn");
    command
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Deserialize)]
struct Page {
    items: Vec<serde::de::IgnoredAny>,
    next_cursor: String,
    has_more: bool,
}

async fn get_page(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Page {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    let response = client
        .get(format!("{base}/v1/address-book/changes"))
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn import(database_url: &str, kek: &str, file: &Path) -> Duration {
    let started = Instant::now();
    let status = gateway_command(database_url, kek)
        .args(["directory", "import"])
        .arg(file)
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(status.success(), "import of {}", file.display());
    started.elapsed()
}

/// The synthetic directory (made once per run) and how many of its entries are visible.
fn directory(work: &Path) -> (PathBuf, u64) {
    let file = work.join("gal.jsonl");
    let status = Command::new(binary())
        .args(["directory", "synthesize", "--entries"])
        .arg(entries().to_string())
        .args(["--organisations", "200", "--seed", "1", "--out"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let visible = std::io::BufReader::new(std::fs::File::open(&file).unwrap())
        .lines()
        .filter(|l| {
            l.as_ref()
                .unwrap()
                .contains("\"hidden_from_address_book\":false")
        })
        .count() as u64;
    (file, visible)
}

/// 1,000 of the directory's visible entries with a new job title.
fn delta(work: &Path, file: &Path) -> PathBuf {
    let out = work.join("delta.jsonl");
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&out).unwrap());
    let lines = std::io::BufReader::new(std::fs::File::open(file).unwrap()).lines();
    for line in lines
        .map(Result::unwrap)
        .filter(|l| l.contains("\"hidden_from_address_book\":false"))
        .take(1_000)
    {
        let mut op: serde_json::Value = serde_json::from_str(&line).unwrap();
        op["entry"]["job_title"] = json!("Benchmark Lead");
        writeln!(writer, "{op}").unwrap();
    }
    out
}

async fn run(backend: Backend, file: &Path, visible: u64, work: &Path) {
    let (app, provider) = gateway_with_provider_and(backend, |_| {}).await;
    let agreement = json!({
        "template_version": "2026-11",
        "scopes": {"address_book": {"attributes": ["display_name", "given_name", "surname", "job_title", "department", "organisation", "office_phone", "mobile_phone"]}},
        "term": {"starts_on": "2026-01-01", "ends_on": "2028-06-30"},
        "signatory": {"name": "Ada Lovelace", "role": "Caldicott Guardian", "email": "ada.lovelace@leedscare.org.uk"}
    });
    let (partner, _, _, _) = approved_partner(&app, &provider, 1, agreement).await;
    let (database, settings) = app.stop().await;
    drop(provider);
    let url = database.url.expose();
    let kek = {
        use secrecy::ExposeSecret;
        settings.auth.key_encryption_key.expose_secret().to_owned()
    };

    let import_time = import(&url, &kek, file);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(work.join(format!("serve-{}.log", backend.name()))).unwrap();
    let server = Server(
        gateway_command(&url, &kek)
            .arg("serve")
            .env("GATEWAY__SERVER__PORT", port.to_string())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let ready = Instant::now();
    while client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_rss = peak_rss_mb(server.0.id());
    let assertion = crate::keys::sign(
        &partner.key,
        &crate::keys::claims(&partner.id.to_string(), &format!("{base}/oauth2/token")),
    );
    let token: serde_json::Value = client
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", crate::keys::ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_owned();

    let started = Instant::now();
    let (mut cursor, mut count, mut pages) = (None::<String>, 0u64, 0u32);
    loop {
        let page = get_page(&client, &base, &token, cursor.as_deref(), PAGE).await;
        count += page.items.len() as u64;
        pages += 1;
        cursor = Some(page.next_cursor);
        if !page.has_more {
            break;
        }
    }
    let sync_time = started.elapsed();
    let sync_rss = peak_rss_mb(server.0.id());
    assert_eq!(
        count, visible,
        "the sync returned exactly the visible entries"
    );

    import(&url, &kek, &delta(work, file));
    // The import positions its changes before it exits.
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let page = get_page(&client, &base, &token, cursor.as_deref(), 1_000).await;
        times.push(t.elapsed());
        assert_eq!(
            page.items.len(),
            1_000,
            "the delta page holds the 1,000 changes"
        );
    }
    times.sort();
    // For profiling: keep the server up with the delta's cursor, e.g. under `perf record -p`.
    if let Some(hold) = std::env::var("BENCH_HOLD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let pid = server.0.id();
        let cursor = cursor.as_deref().unwrap_or_default();
        std::fs::write(
            work.join(format!("hold-{}.env", backend.name())),
            format!("PID={pid}\nBASE={base}\nTOKEN={token}\nCURSOR={cursor}\nDATABASE_URL={url}\n"),
        )
        .unwrap();
        println!(
            "BENCH holding pid {pid} for {hold} s: {}",
            work.join(format!("hold-{}.env", backend.name())).display()
        );
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "BENCH address_book backend={} entries={} visible={} import_s={:.1} import_lines_per_s={:.0} sync_s={:.2} sync_entries_per_s={:.0} pages={} server_peak_rss_mb={:.0} (idle {:.0}) delta_1000_ms_median={:.2} delta_1000_ms_p90={:.2}",
        backend.name(),
        entries(),
        visible,
        import_time.as_secs_f64(),
        entries() as f64 / import_time.as_secs_f64(),
        sync_time.as_secs_f64(),
        count as f64 / sync_time.as_secs_f64(),
        pages,
        peak_rss_mb(server.0.id()).max(sync_rss),
        idle_rss,
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
    );
    drop(server);
    drop(database);
}

#[actix_web::test]
#[ignore = "a benchmark: run it on purpose (README, Benchmarks)"]
async fn bench_address_book() {
    assert!(
        binary().exists(),
        "build the release binary first: cargo build --release --locked --bin federation-gateway"
    );
    let work = tempfile::tempdir().unwrap();
    let (file, visible) = directory(work.path());
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for name in backends.split(',') {
        let backend = match name.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend {other}"),
        };
        run(backend, &file, visible, work.path()).await;
    }
}
