//! A real OpenID provider for the reviewer tests: the npm package oidc-provider (pinned in
//! tools/package-lock.json), run by Node on loopback, one per test, stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

pub struct OidcProvider {
    pub issuer: String,
    child: Child,
    redirect_uri: String,
    audience: String,
    keys: Option<&'static str>,
}

/// Which signing keys a test provider uses.
#[derive(Debug, Clone, Copy)]
pub enum ProviderKeys {
    /// A fresh RS256 key per start: restarting is a key rotation.
    FreshRsa,
    /// A fresh P-256 key per start; ES256 is its only ID-token and access-token algorithm.
    FreshEs256Only,
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
    /// Starts a provider whose `gateway` client redirects to `redirect_uri` (oidc-provider's
    /// development keys).
    pub fn start(redirect_uri: &str, audience: &str) -> Self {
        Self::spawn(redirect_uri, audience, None, 0)
    }

    /// Starts a provider with its own fresh keys.
    pub fn start_with_keys(redirect_uri: &str, audience: &str, keys: ProviderKeys) -> Self {
        let keys = match keys {
            ProviderKeys::FreshRsa => "rsa",
            ProviderKeys::FreshEs256Only => "ec",
        };
        Self::spawn(redirect_uri, audience, Some(keys), 0)
    }

    /// Restarts the provider on the same address (so the same issuer) with new signing keys:
    /// what a provider's key rotation looks like to the gateway (new `kid`, old key gone).
    pub fn rotate_keys(&mut self) {
        assert!(
            self.keys.is_some(),
            "only a provider with fresh keys rotates"
        );
        let port: u16 = self
            .issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the issuer's port");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let restarted = Self::spawn(&self.redirect_uri, &self.audience, self.keys, port);
        assert_eq!(
            restarted.issuer, self.issuer,
            "restarted at the same address"
        );
        *self = restarted;
    }

    fn spawn(redirect_uri: &str, audience: &str, keys: Option<&'static str>, port: u16) -> Self {
        ensure_installed();
        let mut command = Command::new("node");
        command
            .arg(tools_dir().join("oidc/provider.mjs"))
            .env("REDIRECT_URI", redirect_uri)
            .env("AUDIENCE", audience)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(keys) = keys {
            command.env("KEYS", keys);
        }
        let mut child = command
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
        Self {
            issuer,
            child,
            redirect_uri: redirect_uri.to_owned(),
            audience: audience.to_owned(),
            keys,
        }
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
