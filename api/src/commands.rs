//! Operator commands of the `federation-gateway` binary besides `serve`.

use std::path::Path;

use anyhow::Context;
use gateway_domain::accreditation::parse_secure_domain_list;
use gateway_domain::{
    Actor, AuditAction, AuditRepository, Clock, NewAuditEvent, PartnerKeyRepository,
    SecureDomainRepository, SigningKeyRepository, SystemClock,
};

use crate::auth::signing::{KeyEncryptionKey, SigningKeys};

use crate::config::Settings;
use crate::startup::{key_lifecycle, open_database};

fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".to_owned())
}

fn signing_keys(
    settings: &Settings,
    db: std::sync::Arc<gateway_persistence::Database>,
) -> anyhow::Result<SigningKeys> {
    let kek = KeyEncryptionKey::load(
        &settings.auth.key_encryption_key,
        &settings.auth.key_encryption_key_file,
    )?;
    let base = if settings.server.public_base_url.is_empty() {
        format!("http://{}:{}", settings.server.host, settings.server.port)
    } else {
        settings
            .server
            .public_base_url
            .trim_end_matches('/')
            .to_owned()
    };
    SigningKeys::open(db, kek, base)
}

/// Makes a new signing key active; the old ones stay published for the overlap period.
pub fn rotate_signing_key(settings: &Settings) -> anyhow::Result<String> {
    let db = std::sync::Arc::new(open_database(settings)?);
    let keys = signing_keys(settings, db.clone())?;
    let overlap = chrono::Duration::hours(i64::from(settings.auth.signing_key_overlap_hours));
    let kid = keys.rotate(overlap, Actor::Operator(operator()))?;
    seal_before_exit(&db)?;
    Ok(kid)
}

/// What `maintenance` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub keys_removed: usize,
    pub replay_entries_purged: usize,
    /// Reviewer sessions deleted: revoked, past their lifetime, or idle.
    pub sessions_purged: usize,
    pub signing_keys_retired: usize,
    /// Agreement states that time changed, written down with their audit records.
    pub agreements: gateway_domain::services::review::AgreementMaintenance,
    /// DNS-verified domains re-resolved: proofs found missing are flagged (and audited).
    pub domains: gateway_domain::services::domains::DomainMaintenance,
    /// Directory changes purged from the feed (older than `address_book.retention_days`).
    pub feed_changes_purged: usize,
}

/// Removes partner keys whose countdown reached 0, expired replay-cache entries, ended reviewer
/// sessions and retired signing keys.
pub fn maintenance(
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<MaintenanceReport> {
    let db = std::sync::Arc::new(open_database(settings)?);
    let lifecycle = key_lifecycle(settings);
    let due: Vec<_> = db
        .all_keys()?
        .into_iter()
        .filter(|(_, key)| lifecycle.is_due(key, now))
        .collect();
    let pairs: Vec<_> = due.into_iter().map(|(org, key)| (org, key.kid)).collect();
    // The keys were read above; storage deletes each only if it is still idle, so a key used
    // in between (by a running server) is kept, and the events name only what went.
    let removal_event = |org: gateway_domain::OrganisationId, kids: &[String]| NewAuditEvent {
        occurred_at: now,
        actor: Actor::System,
        action: AuditAction::KeysRemoved,
        subject_type: "organisation",
        subject_id: Some(org.to_string()),
        request_id: None,
        details: serde_json::json!({ "kids": kids, "reason": "unused past the removal date" }),
    };
    let keys_removed = if pairs.is_empty() {
        0
    } else {
        db.remove_idle_keys(&pairs, lifecycle.idle_before(now), &removal_event)?
            .len()
    };
    let services = crate::startup::services_with_dns(
        db.clone(),
        std::sync::Arc::new(gateway_domain::FixedClock(now)),
        settings,
    )?;
    let system = gateway_domain::services::Context {
        actor: Actor::System,
        request_id: None,
    };
    let agreements = services.maintain_agreements(&system)?;
    let domains = services.recheck_domains(&system)?;
    let directory = gateway_domain::services::directory::DirectoryService {
        directory: db.clone(),
        clock: std::sync::Arc::new(gateway_domain::FixedClock(now)),
    };
    let feed_changes_purged = directory.purge(
        i64::from(settings.address_book.retention_days),
        i64::from(settings.address_book.idempotency_days),
    )?;
    seal_before_exit(&db)?;
    Ok(MaintenanceReport {
        feed_changes_purged,
        agreements,
        domains,
        keys_removed,
        replay_entries_purged: crate::housekeeping::purge_replay_cache(db.as_ref(), now)?,
        sessions_purged: crate::auth::session::purge_ended(
            db.as_ref(),
            &crate::startup::session_policy(settings),
            now,
        )?,
        signing_keys_retired: db.prune_signing_keys(now)?,
    })
}

/// Creates the database if needed and applies pending migrations.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = open_database(settings)?;
    println!(
        "database {} ({}) is migrated",
        settings.database_url()?,
        db.backend().name()
    );
    Ok(())
}

/// Replaces the accredited secure-email domain list with the one in `file`.
pub fn import_secure_domains(settings: &Settings, file: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let patterns = parse_secure_domain_list(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .take(20)
            .map(|e| format!("  line {}: {:?}: {}", e.line, e.text, e.reason))
            .collect();
        anyhow::anyhow!(
            "{} has {} invalid line(s); nothing was imported:\n{}",
            file.display(),
            errors.len(),
            lines.join("\n")
        )
    })?;
    anyhow::ensure!(
        !patterns.is_empty(),
        "{} lists no domains; nothing was imported",
        file.display()
    );
    let db = open_database(settings)?;
    let operator = operator();
    let event = NewAuditEvent {
        occurred_at: SystemClock.now(),
        actor: Actor::Operator(operator),
        action: AuditAction::SecureDomainsImported,
        subject_type: "secure_domain_list",
        subject_id: None,
        request_id: None,
        details: serde_json::json!({
            "file": file.display().to_string(),
            "entries": patterns.len(),
            "wildcards": patterns.iter().filter(|p| p.wildcard).count(),
        }),
    };
    let stored = db.replace_secure_domains(&patterns, &event)?;
    seal_before_exit(&db)?;
    Ok(stored)
}

/// A command that wrote audit records seals them before it exits, so the trail never waits
/// for a server to run.
fn seal_before_exit(db: &gateway_persistence::Database) -> anyhow::Result<()> {
    crate::audit_log::seal_all(db, &gateway_persistence::Sha256Hasher)
        .context("sealing the audit records this command wrote")?;
    Ok(())
}

/// What `audit verify` found, as a JSON document, and whether the trail is intact. Stored
/// checkpoints are checked with the audit keys whose MAC (under the key-encryption key) holds;
/// a kept checkpoint with the keys kept beside it (`--keys`), else with those trusted keys.
pub fn audit_verify(
    settings: &Settings,
    kept_checkpoint: Option<&Path>,
    kept_keys: Option<&Path>,
) -> anyhow::Result<(serde_json::Value, bool)> {
    let db = std::sync::Arc::new(open_database(settings)?);
    let services = crate::startup::services(db.clone(), std::sync::Arc::new(SystemClock));
    let kek = KeyEncryptionKey::load(
        &settings.auth.key_encryption_key,
        &settings.auth.key_encryption_key_file,
    )?;
    let ring = crate::auth::checkpoint::AuditKeyRing::new(kek.derive("audit-keys"));
    let trusted = ring.trusted(db.audit_keys()?);
    let kept = match kept_checkpoint {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let keys = match kept_keys {
                Some(keys_file) => {
                    let set: serde_json::Value = serde_json::from_str(
                        &std::fs::read_to_string(keys_file)
                            .with_context(|| format!("reading {}", keys_file.display()))?,
                    )
                    .with_context(|| format!("{} is not JSON", keys_file.display()))?;
                    set["keys"].as_array().cloned().unwrap_or_default()
                }
                None => trusted.clone(),
            };
            Some(crate::auth::checkpoint::read_kept(&text, &keys)?)
        }
    };
    let verifier = crate::auth::checkpoint::KeysVerifier::new(trusted);
    let report = services.verify_trail(kept.as_ref(), &verifier)?;
    let intact = report.intact();
    Ok((
        serde_json::to_value(crate::routes::audit::verify_response(&report))?,
        intact,
    ))
}

/// Verifies an agreement's stored signature offline (no database): the detached JWS over the
/// stored payload with the stored public JWK. Returns a one-line summary, or why it fails.
pub fn verify_agreement(file: &Path) -> anyhow::Result<String> {
    use gateway_domain::keys::{KeyType, PartnerKey};
    use gateway_domain::services::SignatureScheme;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let agreement: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let agreement = agreement.get("agreement").unwrap_or(&agreement);
    let signature = agreement
        .get("signature")
        .filter(|s| !s.is_null())
        .context("the agreement has no signature")?;
    let field = |name: &str| {
        signature
            .get(name)
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("signature.{name} is missing"))
    };
    let (jws, payload, kid, alg) = (
        field("jws")?,
        field("payload")?,
        field("kid")?,
        field("alg")?,
    );
    let jwk = signature
        .get("jwk")
        .cloned()
        .context("signature.jwk is missing")?;
    let key_type = jwk
        .get("kty")
        .and_then(serde_json::Value::as_str)
        .and_then(KeyType::parse)
        .context("signature.jwk has an unsupported kty")?;
    let key = PartnerKey {
        kid: kid.to_owned(),
        key_type,
        alg: Some(alg.to_owned()),
        jwk,
        added_at: chrono::Utc::now(),
        last_used_at: None,
    };
    let scheme = crate::auth::detached::JoseSignatures;
    scheme
        .verify_detached(jws, payload.as_bytes(), std::slice::from_ref(&key))
        .map_err(|why| anyhow::anyhow!("the signature does NOT verify: {why}"))?;
    let document: serde_json::Value =
        serde_json::from_str(payload).context("the signed payload is not JSON")?;
    let canonical = scheme
        .canonicalise(&document)
        .map_err(|e| anyhow::anyhow!("the payload cannot be canonicalised: {e}"))?;
    anyhow::ensure!(
        canonical == payload,
        "the signed payload is not in RFC 8785 canonical form"
    );
    Ok(format!(
        "valid: {alg} signature by key {kid} over {} bytes (sha-256 {}) for agreement {}",
        payload.len(),
        crate::credentials::sha256_hex(payload.as_bytes()),
        document
            .get("agreement_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
    ))
}
