//! Typed configuration: built-in defaults, then an optional TOML file, then `GATEWAY__`
//! environment variables. Secrets are wrapped so they never print.

use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// Environment variables `GATEWAY__SECTION__KEY` override the file.
pub const ENV_PREFIX: &str = "GATEWAY";
/// The environment variable naming a configuration file, when `--config` is not given.
pub const CONFIG_FILE_VAR: &str = "GATEWAY_CONFIG";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub registration: RegistrationSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub publisher: PublisherSettings,
    pub oidc: OidcSettings,
    pub audit: AuditSettings,
    pub dns: DnsSettings,
    pub address_book: AddressBookSettings,
    pub free_busy: FreeBusySettings,
}

/// How domain-ownership proofs (TXT records) are resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Nameservers as "ip:port", asked over UDP and TCP; empty: the system's resolvers.
    pub nameservers: Vec<String>,
    /// How long to wait for an answer before the proof counts as unavailable (503).
    pub timeout_ms: u64,
    /// One lookup per claimed domain this often (429 with Retry-After sooner); 0: no limit.
    pub verify_interval_seconds: u64,
    /// At most one `domain.verification_failed` record per claim this often; the next one
    /// counts the attempts in between.
    pub failure_audit_interval_seconds: u64,
    /// A DNS proof missing this long (found by `maintenance`) withdraws the verification.
    pub demote_after_days: u32,
    /// Lookups in flight at once in this process; more wait (within the timeout).
    pub max_concurrent_lookups: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBookSettings {
    /// How long changes and tombstones stay in the feed (days); `maintenance` purges older
    /// ones, and cursors that needed them get 410 resync-required.
    pub retention_days: u32,
    /// How long a publisher's Idempotency-Key answers are kept (days).
    pub idempotency_days: u32,
    /// Pages one partner organisation may fetch a minute (a token bucket per organisation,
    /// per process); more answer 429 with Retry-After.
    pub pages_per_minute: u32,
    /// Pages one organisation may fetch at once before the per-minute rate applies (a full
    /// sync of 1.5 million entries at limit 5000 is 300 pages).
    pub page_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeBusySettings {
    /// Free/busy queries one partner organisation may make a minute (a token bucket per
    /// organisation, per process); more answer 429 with Retry-After.
    pub queries_per_minute: u32,
    /// Queries one organisation may make at once before the per-minute rate applies.
    pub query_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// How often the sequencer seals committed records (milliseconds).
    pub seal_interval_ms: u64,
    /// How often the sealed head is signed as a checkpoint (seconds), when it grew.
    pub checkpoint_interval_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub access_token_lifetime_seconds: u64,
    pub assertion_max_lifetime_seconds: u64,
    pub assertion_max_lifetime_with_iat_seconds: u64,
    pub clock_skew_seconds: u64,
    pub key_unused_after_days: u32,
    pub key_removal_grace_days: u32,
    pub signing_key_overlap_hours: u32,
    /// How often the server deletes expired replay-cache entries (in batches); 0: never.
    pub replay_purge_interval_seconds: u64,
    /// How often each replica re-reads the signing keys (another replica or the operator's
    /// `rotate-signing-key` may have added one); at least 1.
    pub signing_key_reload_seconds: u64,
    pub key_encryption_key: SecretString,
    pub key_encryption_key_file: String,
    /// Refused token requests per client address and minute, across replicas; then 429.
    pub failed_assertions_per_minute: u32,
    /// Failed assertions per claimed client id and minute (per replica) before further
    /// refusals for it answer 429; a valid assertion is never refused by this.
    pub failed_assertions_per_client_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSettings {
    pub client_id: String,
    pub jwks_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_url: String,
    pub audience: String,
    pub roles_claim: String,
    pub reviewer_role: String,
    pub approver_role: String,
    pub auditor_role: String,
    /// A session ends this long after sign-in, however busy (absolute lifetime).
    pub session_lifetime_minutes: u32,
    /// A session unused this long ends (idle timeout).
    pub session_idle_minutes: u32,
    pub bearer_people: BearerPeople,
    /// Refetch the provider's keys at most this often when a token names an unknown `kid`.
    pub jwks_min_refetch_seconds: u64,
    pub cookie_secure: bool,
    pub session_key: SecretString,
    /// Failed sign-ins (`/auth/callback`) per client address and minute, across replicas.
    pub failed_sign_ins_per_minute: u32,
}

/// Which provider bearer tokens count as a person's (only people change state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BearerPeople {
    /// None: state changes need a signed-in session.
    Never,
    /// Tokens whose subject is not the client they were issued to.
    SubjectNotClient,
}

impl OidcSettings {
    pub fn enabled(&self) -> bool {
        !self.issuer_url.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub public_base_url: String,
    pub json_body_limit_bytes: usize,
    pub shutdown_timeout_seconds: u64,
    /// A request's whole body must arrive within this many seconds of the request starting.
    pub body_timeout_seconds: u64,
    pub workers: usize,
    /// Proxies (IP addresses or CIDRs) whose `X-Forwarded-For` names the client; empty: the
    /// TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// How many client addresses the in-memory rate limiters remember (least recent forgotten).
    pub rate_limit_tracked_clients: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May hold a password: kept secret, shown only through `DatabaseUrl`'s redacting Display.
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSettings {
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

impl Settings {
    /// The built-in defaults alone (no file, no environment): what tests start from.
    pub fn defaults() -> anyhow::Result<Self> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()?
            .try_deserialize()
            .context("the built-in default configuration is invalid")
    }

    /// Defaults, then `file` (or the file named by `GATEWAY_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let env_file = std::env::var_os(CONFIG_FILE_VAR).map(std::path::PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = &file {
            anyhow::ensure!(
                file.exists(),
                "configuration file {} does not exist",
                file.display()
            );
            builder = builder
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("dns.nameservers")
                .with_list_parse_key("server.trusted_proxies"),
        );
        let settings: Settings = builder
            .build()
            .context("could not read the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        gateway_persistence::DatabaseUrl::parse(self.database.url.expose_secret())
            .context("database.url")?;
        anyhow::ensure!(
            self.server.json_body_limit_bytes >= 1024,
            "server.json_body_limit_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.database.max_connections >= 1,
            "database.max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.registration.rate_limit_per_minute >= 1 && self.registration.rate_limit_burst >= 1,
            "registration.rate_limit_per_minute and rate_limit_burst must be at least 1"
        );
        crate::client_address::TrustedProxies::parse(&self.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?;
        anyhow::ensure!(
            self.auth.failed_assertions_per_minute >= 1
                && self.auth.failed_assertions_per_client_per_minute >= 1
                && self.oidc.failed_sign_ins_per_minute >= 1,
            "auth.failed_assertions_per_minute, auth.failed_assertions_per_client_per_minute and oidc.failed_sign_ins_per_minute must be at least 1"
        );
        anyhow::ensure!(
            self.server.rate_limit_tracked_clients >= 1024,
            "server.rate_limit_tracked_clients must be at least 1024"
        );
        anyhow::ensure!(
            (1..=600).contains(&self.auth.access_token_lifetime_seconds),
            "auth.access_token_lifetime_seconds must be between 1 and 600"
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.auth.assertion_max_lifetime_seconds),
            "auth.assertion_max_lifetime_seconds must be between 1 and 3600"
        );
        anyhow::ensure!(
            (self.auth.assertion_max_lifetime_seconds..=86_400)
                .contains(&self.auth.assertion_max_lifetime_with_iat_seconds),
            "auth.assertion_max_lifetime_with_iat_seconds must be between auth.assertion_max_lifetime_seconds and 86400"
        );
        anyhow::ensure!(
            self.publisher.client_id.is_empty() == self.publisher.jwks_file.is_empty(),
            "publisher.client_id and publisher.jwks_file are set together"
        );
        anyhow::ensure!(
            (1..=3650).contains(&self.address_book.retention_days),
            "address_book.retention_days must be between 1 and 3650"
        );
        anyhow::ensure!(
            (1..=365).contains(&self.address_book.idempotency_days),
            "address_book.idempotency_days must be between 1 and 365"
        );
        anyhow::ensure!(
            self.address_book.pages_per_minute >= 1 && self.address_book.page_burst >= 1,
            "address_book.pages_per_minute and address_book.page_burst must be at least 1"
        );
        anyhow::ensure!(
            self.free_busy.queries_per_minute >= 1 && self.free_busy.query_burst >= 1,
            "free_busy.queries_per_minute and free_busy.query_burst must be at least 1"
        );
        anyhow::ensure!(
            self.server.body_timeout_seconds >= 1,
            "server.body_timeout_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.auth.signing_key_reload_seconds >= 1,
            "auth.signing_key_reload_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.auth.signing_key_overlap_hours >= 1,
            "auth.signing_key_overlap_hours must be at least 1: tokens the old key signed must keep verifying after a rotation"
        );
        for (key, value) in [
            ("oidc.roles_claim", &self.oidc.roles_claim),
            ("oidc.reviewer_role", &self.oidc.reviewer_role),
            ("oidc.approver_role", &self.oidc.approver_role),
            ("oidc.auditor_role", &self.oidc.auditor_role),
        ] {
            // A blank role name would match an empty roles claim: anyone would hold it.
            anyhow::ensure!(!value.trim().is_empty(), "{key} must not be blank");
        }
        if self.oidc.enabled() {
            anyhow::ensure!(
                !self.oidc.client_id.is_empty() && !self.oidc.redirect_url.is_empty(),
                "oidc.client_id and oidc.redirect_url are needed with oidc.issuer_url"
            );
        }
        anyhow::ensure!(
            self.oidc.session_lifetime_minutes >= 1,
            "oidc.session_lifetime_minutes must be at least 1"
        );
        anyhow::ensure!(
            (1..=self.oidc.session_lifetime_minutes).contains(&self.oidc.session_idle_minutes),
            "oidc.session_idle_minutes must be between 1 and oidc.session_lifetime_minutes"
        );
        if !self.server.public_base_url.is_empty() {
            anyhow::ensure!(
                self.server.public_base_url.starts_with("http://")
                    || self.server.public_base_url.starts_with("https://"),
                "server.public_base_url must start with http:// or https://"
            );
        }
        Ok(())
    }

    pub fn database_url(&self) -> anyhow::Result<gateway_persistence::DatabaseUrl> {
        gateway_persistence::DatabaseUrl::parse(self.database.url.expose_secret())
            .context("database.url")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_on_loopback_with_embedded_sqlite() {
        let settings = Settings::defaults().unwrap();
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.server.port, 8080);
        assert_eq!(
            settings.database.url.expose_secret(),
            "sqlite://./data/gateway.db"
        );
        settings.validate().unwrap();
    }

    #[test]
    fn debug_output_hides_the_database_url() {
        let mut settings = Settings::defaults().unwrap();
        settings.database.url = SecretString::from("postgres://gw:hunter2@127.0.0.1/gw");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_signing_key_overlap_of_zero_is_refused() {
        let mut settings = Settings::defaults().unwrap();
        settings.auth.signing_key_overlap_hours = 0;
        let error = format!("{:#}", settings.validate().unwrap_err());
        assert!(error.contains("auth.signing_key_overlap_hours"), "{error}");
        settings.auth.signing_key_overlap_hours = 1;
        settings.validate().unwrap();
    }

    #[test]
    fn blank_role_names_are_refused() {
        for key in [
            "roles_claim",
            "reviewer_role",
            "approver_role",
            "auditor_role",
        ] {
            for blank in ["", "  "] {
                let mut settings = Settings::defaults().unwrap();
                let value = match key {
                    "roles_claim" => &mut settings.oidc.roles_claim,
                    "reviewer_role" => &mut settings.oidc.reviewer_role,
                    "approver_role" => &mut settings.oidc.approver_role,
                    _ => &mut settings.oidc.auditor_role,
                };
                *value = blank.to_owned();
                let error = format!("{:#}", settings.validate().unwrap_err());
                assert!(
                    error.contains(&format!("oidc.{key} must not be blank")),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn the_documented_empty_public_base_url_is_what_the_code_derives() {
        // default.toml documents every key; its word on an empty public_base_url must be
        // what startup's public_base_url() does: http://HOST:PORT as bound.
        let documented = DEFAULTS
            .split("public_base_url =")
            .next()
            .and_then(|before| before.rsplit("[server]").next())
            .unwrap();
        assert!(documented.contains("http://HOST:PORT"), "{documented}");
        assert!(
            !documented.contains("derived from each request"),
            "{documented}"
        );
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("gw-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[server]\nport = 9999\n").unwrap();
        assert_eq!(Settings::load(Some(&good)).unwrap().server.port, 9999);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[server]\nprot = 9999\n").unwrap();
        let error = format!("{:#}", Settings::load(Some(&bad)).unwrap_err());
        assert!(error.contains("prot"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
