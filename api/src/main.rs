//! The `federation-gateway` binary: serve, migrate, and operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway_api::{commands, directory_import, telemetry, Application, Settings};

/// mimalloc rather than the system allocator: a feed page of 1,000 entries makes tens of
/// thousands of small allocations across the worker threads, and glibc's malloc and free
/// were a fifth of the gateway's CPU on such a page (perf, issue 9).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "federation-gateway",
    version,
    about = "The Federation Gateway service"
)]
struct Cli {
    /// A TOML configuration file (default: $GATEWAY_CONFIG, if set). Environment variables
    /// GATEWAY__SECTION__KEY override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (creating and migrating the database first).
    Serve,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Replace the accredited secure-email domain list (DCB1596) with FILE: one domain or
    /// `*.parent` wildcard per line; blank lines and `#` comments are ignored.
    ImportSecureDomains { file: PathBuf },
    /// Make a new gateway signing key active; the old one stays published for
    /// auth.signing_key_overlap_hours so tokens it signed keep verifying.
    RotateSigningKey,
    /// Remove partner keys whose removal countdown has reached 0, expired client-assertion
    /// replay entries, ended reviewer sessions and retired signing keys. Run it daily.
    Maintenance,
    /// Verify an agreement's signature offline: FILE is the agreement as the API returns it
    /// (GET .../agreements/{aid}, or `agreement` of the review view). Checks the detached JWS
    /// over the stored payload with the stored public key; needs no database.
    VerifyAgreement { file: PathBuf },
    /// The national directory: import JSON Lines, or write a synthetic directory.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum DirectoryCommand {
    /// Import FILE: JSON Lines, one `{"op":"upsert","entry":{...}}` or
    /// `{"op":"delete","id":"..."}` a line, through the publisher's code path, in batches
    /// (each all or nothing). Interrupted, or stopped by a bad line (reported with its line
    /// number and field), run it again: committed batches are skipped, nothing is applied twice.
    Import {
        file: PathBuf,
        /// Lines per batch (1 to 10000).
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Write a synthetic directory as JSON Lines (realistic names across ODS organisations,
    /// one entry in fifty hidden), for demos and benchmarks.
    Synthesize {
        #[arg(long, default_value_t = 10_000)]
        entries: u64,
        #[arg(long, default_value_t = 200)]
        organisations: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the whole trail: every chain hash, contiguous positions, and the Merkle root at
    /// every stored checkpoint. With --from-checkpoint FILE (a checkpoint you kept, as
    /// GET /v1/audit/checkpoints/latest answered it), also against that one: a trail that was
    /// rewritten or cut short since fails. Prints a JSON report; exits 1 unless intact.
    Verify {
        #[arg(long = "from-checkpoint")]
        from_checkpoint: Option<PathBuf>,
        /// The audit keys you kept (/.well-known/audit-keys.json) to verify the checkpoint's
        /// signature with; default: the keys in the database.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Openapi => {
            println!("{}", gateway_api::openapi::document().to_pretty_json()?);
            return Ok(());
        }
        Command::VerifyAgreement { file } => {
            let verified = commands::verify_agreement(file)?;
            println!("{verified}");
            return Ok(());
        }
        Command::Directory {
            command:
                DirectoryCommand::Synthesize {
                    entries,
                    organisations,
                    seed,
                    out,
                },
        } => {
            let mut sink: Box<dyn std::io::Write> = match out {
                Some(path) => Box::new(std::fs::File::create(path)?),
                None => Box::new(std::io::stdout().lock()),
            };
            directory_import::synthesize(&mut *sink, *entries, *organisations, *seed)?;
            return Ok(());
        }
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let _log_writer = telemetry::init(&settings.log);
    match cli.command {
        Command::Serve => serve(&settings),
        Command::Migrate => commands::migrate(&settings),
        Command::ImportSecureDomains { file } => {
            let stored = commands::import_secure_domains(&settings, &file)?;
            println!(
                "imported {stored} accredited secure-email domain entries from {}",
                file.display()
            );
            Ok(())
        }
        Command::RotateSigningKey => {
            let kid = commands::rotate_signing_key(&settings)?;
            println!(
                "new signing key {kid} is active; previous keys stay published for {} hours",
                settings.auth.signing_key_overlap_hours
            );
            Ok(())
        }
        Command::Maintenance => {
            let report = commands::maintenance(&settings, chrono::Utc::now())?;
            println!(
                "removed {} unused partner key(s), purged {} replay entr(ies), retired {} signing key(s)",
                report.keys_removed, report.replay_entries_purged, report.signing_keys_retired
            );
            println!(
                "reviewer sessions: purged {} ended (revoked, expired or idle)",
                report.sessions_purged
            );
            println!(
                "agreements: {} expired, {} suspended for lapsed evidence, {} reinstated",
                report.agreements.expired,
                report.agreements.suspended,
                report.agreements.reinstated
            );
            println!(
                "domains: {} proof(s) in place, {} newly missing (flagged), {} restored, {} lookup(s) unanswered",
                report.domains.present,
                report.domains.newly_missing,
                report.domains.restored,
                report.domains.unanswered
            );
            println!(
                "address book: purged {} change(s) older than {} days from the feed",
                report.feed_changes_purged, settings.address_book.retention_days
            );
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    from_checkpoint,
                    keys,
                },
        } => {
            let (report, intact) =
                commands::audit_verify(&settings, from_checkpoint.as_deref(), keys.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if intact {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Directory {
            command: DirectoryCommand::Import { file, batch, quiet },
        } => {
            let started = std::time::Instant::now();
            let report = directory_import::import(&settings, &file, batch, !quiet)?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "imported {} line(s) in {:.1} s ({:.0} lines/s): {} upserted, {} deleted, {} unchanged; {} batch(es) applied, {} already imported",
                report.lines,
                seconds,
                report.lines as f64 / seconds.max(0.001),
                report.upserted,
                report.deleted,
                report.unchanged,
                report.batches_applied,
                report.batches_skipped
            );
            Ok(())
        }
        Command::Openapi
        | Command::VerifyAgreement { .. }
        | Command::Directory {
            command: DirectoryCommand::Synthesize { .. },
        } => Ok(()),
    }
}

fn serve(settings: &Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let app = Application::build(settings)?;
        app.run_until_stopped().await.context("server failed")
    })
}
