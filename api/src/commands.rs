//! Operator commands of the `federation-gateway` binary besides `serve`.

use std::path::Path;

use anyhow::Context;
use gateway_domain::accreditation::parse_secure_domain_list;
use gateway_domain::{
    Actor, AuditAction, Clock, NewAuditEvent, PartnerKeyRepository, ReplayCache,
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
    let keys = signing_keys(settings, db)?;
    let overlap = chrono::Duration::hours(i64::from(settings.auth.signing_key_overlap_hours));
    keys.rotate(overlap, Actor::Operator(operator()))
}

/// What `maintenance` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub keys_removed: usize,
    pub replay_entries_purged: usize,
    pub signing_keys_retired: usize,
}

/// Removes partner keys whose countdown reached 0, expired replay-cache entries and retired
/// signing keys.
pub fn maintenance(
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<MaintenanceReport> {
    let db = open_database(settings)?;
    let lifecycle = key_lifecycle(settings);
    let due: Vec<_> = db
        .all_keys()?
        .into_iter()
        .filter(|(_, key)| lifecycle.is_due(key, now))
        .collect();
    let mut by_org: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for (org, key) in &due {
        by_org
            .entry(org.to_string())
            .or_default()
            .push(key.kid.clone());
    }
    let events: Vec<NewAuditEvent> = by_org
        .into_iter()
        .map(|(org, kids)| NewAuditEvent {
            occurred_at: now,
            actor: Actor::System,
            action: AuditAction::KeysRemoved,
            subject_type: "organisation",
            subject_id: Some(org),
            request_id: None,
            details: serde_json::json!({ "kids": kids, "reason": "unused past the removal date" }),
        })
        .collect();
    let pairs: Vec<_> = due.into_iter().map(|(org, key)| (org, key.kid)).collect();
    let keys_removed = if pairs.is_empty() {
        0
    } else {
        db.remove_keys(&pairs, &events)?
    };
    Ok(MaintenanceReport {
        keys_removed,
        replay_entries_purged: db.purge_expired(now)?,
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
    Ok(stored)
}
