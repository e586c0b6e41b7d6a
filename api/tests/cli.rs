//! The real `federation-gateway` binary: configuration from the environment, `migrate`,
//! `import-secure-domains`, and `serve` on the embedded default with no setup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn gateway(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_federation-gateway"));
    command
        .current_dir(dir)
        .env_remove("GATEWAY_CONFIG")
        .env("GATEWAY__LOG__FORMAT", "json");
    command
}

#[test]
fn migrate_then_import_a_secure_domain_list() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/gw.db").display());
    let migrate = gateway(dir.path())
        .env("GATEWAY__DATABASE__URL", &url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(dir.path().join("nested/gw.db").exists());

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "good.example.org\nnot a domain\n").unwrap();
    let refused = gateway(dir.path())
        .env("GATEWAY__DATABASE__URL", &url)
        .args(["import-secure-domains", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("nothing was imported"),
        "{stderr}"
    );

    let good = dir.path().join("good.txt");
    std::fs::write(&good, "good.example.org\n*.council.gov.uk\n\n# end\n").unwrap();
    let imported = gateway(dir.path())
        .env("GATEWAY__DATABASE__URL", &url)
        .args(["import-secure-domains", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(String::from_utf8_lossy(&imported.stdout).contains("imported 2"));
}

#[test]
fn bad_configuration_is_reported_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path())
        .env(
            "GATEWAY__DATABASE__URL",
            "postgres://gw:hunter2@127.0.0.1:1/gw",
        )
        .env("GATEWAY__DATABASE__CONNECT_TIMEOUT_SECONDS", "1")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        all.contains("could not connect to the PostgreSQL database"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");

    let typo = gateway(dir.path())
        .env("GATEWAY__SERVER__PROT", "1")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("prot"));
}

#[test]
fn serve_works_with_no_setup_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gateway(dir.path())
        .env("GATEWAY__SERVER__PORT", "0")
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The start-up log line names the port it bound.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut port = None;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["message"] == "federation gateway listening" {
            port = value["port"].as_u64();
            break;
        }
    }
    let port = port.expect("the server logged its port");
    assert!(
        dir.path().join("data/gateway.db").exists(),
        "the default SQLite file was created"
    );
    let response = std::net::TcpStream::connect(("127.0.0.1", u16::try_from(port).unwrap())).map(
        |mut stream| {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            stream.read_to_string(&mut body).unwrap();
            body
        },
    );
    let response = response.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // SIGTERM: actix drains and exits cleanly.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
