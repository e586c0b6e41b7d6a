//! A real OpenID provider for the reviewer tests: the npm package oidc-provider (pinned in
//! tools/package-lock.json), run by Node on loopback, one per test, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

pub struct OidcProvider {
    pub issuer: String,
    child: Child,
}

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools")
}

/// Installs the Node tools from the lockfile once, if a fresh checkout lacks them.
fn ensure_installed() {
    static INSTALL: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if *done
        || tools_dir()
            .join("node_modules/oidc-provider/package.json")
            .exists()
    {
        *done = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(tools_dir())
        .status()
        .expect("npm must be installed to run the reviewer tests (Node 20+)");
    assert!(status.success(), "npm ci --prefix tools failed");
    *done = true;
}

impl OidcProvider {
    /// Starts a provider whose `gateway` client redirects to `redirect_uri`.
    pub fn start(redirect_uri: &str, audience: &str) -> Self {
        ensure_installed();
        let mut child = Command::new("node")
            .arg(tools_dir().join("oidc/provider.mjs"))
            .env("REDIRECT_URI", redirect_uri)
            .env("AUDIENCE", audience)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed to run the reviewer tests");
        let stdout = child.stdout.take().expect("provider stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("provider announces itself");
        // Keep draining its output: a closed pipe would kill the provider at its next write.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let announced: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("provider said {line:?}: {e}"));
        let issuer = announced["issuer"].as_str().expect("issuer").to_owned();
        Self { issuer, child }
    }

    /// A provider-issued access token (client credentials) for `client` and `resource`.
    pub async fn client_token(&self, client: &str, resource: &str) -> String {
        let response: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some("automation-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "reviews"),
                ("resource", resource),
            ])
            .send()
            .await
            .expect("provider token endpoint")
            .json()
            .await
            .expect("token response");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {response}"))
            .to_owned()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
