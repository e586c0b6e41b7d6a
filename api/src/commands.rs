//! Operator commands of the `federation-gateway` binary besides `serve`.

use std::path::Path;

use anyhow::Context;
use gateway_domain::accreditation::parse_secure_domain_list;
use gateway_domain::{
    Actor, AuditAction, Clock, NewAuditEvent, SecureDomainRepository, SystemClock,
};

use crate::config::Settings;
use crate::startup::open_database;

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
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
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
