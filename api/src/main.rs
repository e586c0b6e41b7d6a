//! The `federation-gateway` binary: serve, migrate, and operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway_api::{commands, telemetry, Application, Settings};

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
    /// Print the OpenAPI document.
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        println!("{}", gateway_api::openapi::document().to_pretty_json()?);
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log);
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
        Command::Openapi => Ok(()),
    }
}

fn serve(settings: &Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let app = Application::build(settings)?;
        app.run_until_stopped().await.context("server failed")
    })
}
