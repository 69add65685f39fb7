//! Command line. Exit codes: 0 success; 1 failure (including a mirror that refused a
//! release); 2 usage or configuration error.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use foundations::config::{InitArgs, LogArgs, ServeArgs};
use uuid::Uuid;

use crate::Error;

#[derive(Debug, Parser)]
#[command(
    name = "update-server",
    version,
    about = "Hosts signed, encrypted SUIT releases; verifies before it stores",
    after_help = "Exit codes: 0 success; 1 failure (a mirror refused a release); 2 usage or configuration error."
)]
pub struct Cli {
    /// `--log-format text|json` (level from UPDATE_SERVER_LOG, e.g. debug).
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a configuration, TLS certificate, empty publisher list and object directory.
    Init(InitArgs),
    /// Run the service.
    Serve(ServeArgs),
    /// Manage the publisher keys allowed to upload.
    Publishers {
        #[command(subcommand)]
        command: PublishersCommand,
    },
    /// Replicate releases from another update server, verifying each as an upload.
    /// Run it while this server is stopped (the index is a single-process database); a
    /// running server replicates from the `[[mirrors]]` of its configuration.
    Mirror {
        #[arg(long)]
        config: PathBuf,
        /// Base URL of the source server (https://host:port).
        #[arg(long)]
        from: String,
        /// CA certificate (PEM) to trust for the source instead of the web PKI.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Environment variable holding a bearer token for the source (if it needs one).
        #[arg(long)]
        token_env: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PublishersCommand {
    /// Register a publisher key for one or more vendor-ids.
    Add {
        #[arg(long)]
        config: PathBuf,
        /// kid of the key (as in the protected header of its signatures).
        #[arg(long)]
        kid: String,
        /// SPKI PEM file of the P-256 public key.
        #[arg(long)]
        public_key: PathBuf,
        /// Vendor-id the key may publish for (repeatable, at least one).
        #[arg(long = "vendor-id", required = true)]
        vendor_ids: Vec<Uuid>,
        /// manufacturer (T1, T2, T3) or third-party (T1 only).
        #[arg(long, default_value = "manufacturer", value_parser = ["manufacturer", "third-party"])]
        role: String,
    },
    /// List publisher keys.
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a publisher key: it can no longer upload.
    Revoke {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        kid: String,
    },
}

/// Runs the command line; returns the exit code.
pub fn main() -> u8 {
    main_from(std::env::args_os())
}

/// As [`main`], with the arguments given (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>) -> u8 {
    let cli = Cli::parse_from(args);
    cli.log.init("UPDATE_SERVER_LOG");
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_usage() { 2 } else { 1 }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(foundations::config::runtime()?)
}

fn publishers_file(config: &std::path::Path) -> Result<PathBuf, Error> {
    Ok(crate::config::Config::load(config)?.publishers_file)
}

fn run(cmd: Command) -> Result<u8, Error> {
    match cmd {
        Command::Init(InitArgs {
            dir,
            hostname,
            json,
        }) => {
            let r = crate::init::init(&dir, &hostname)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!("configuration  {}", r.config.display());
                println!(
                    "CA certificate {} (give it to clients)",
                    r.ca_file.display()
                );
                for c in &r.created {
                    println!("created        {}", c.display());
                }
            }
        }
        Command::Serve(ServeArgs { config, listen }) => {
            runtime()?.block_on(crate::server::run(&config, listen))?;
        }
        Command::Publishers { command } => match command {
            PublishersCommand::Add {
                config,
                kid,
                public_key,
                vendor_ids,
                role,
            } => {
                let pem =
                    std::fs::read_to_string(&public_key).map_err(|e| Error::io(&public_key, e))?;
                let p = crate::publishers::add(
                    &publishers_file(&config)?,
                    &kid,
                    &pem,
                    &vendor_ids,
                    &role,
                )?;
                println!(
                    "publisher {} ({}) may publish for {}",
                    p.kid,
                    p.role,
                    p.vendors.join(", ")
                );
            }
            PublishersCommand::List { config, json } => {
                let l = crate::publishers::list(&publishers_file(&config)?)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&l).unwrap_or_default());
                } else {
                    for p in l {
                        println!(
                            "{}\t{}\t{}\t{}",
                            p.kid,
                            p.role,
                            if p.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "active"
                            },
                            p.vendors.join(",")
                        );
                    }
                }
            }
            PublishersCommand::Revoke { config, kid } => {
                let p = crate::publishers::revoke(&publishers_file(&config)?, &kid)?;
                println!("publisher {} revoked", p.kid);
            }
        },
        Command::Mirror {
            config,
            from,
            ca,
            token_env,
            json,
        } => {
            let cfg = crate::config::Config::load(&config)?;
            let source = crate::mirror::source_client(&crate::config::MirrorConfig {
                from: from.clone(),
                ca_file: ca,
                token_env,
                interval_secs: 0,
            })?;
            let report = runtime()?.block_on(async {
                let st = crate::state::AppState::open(cfg)?;
                let r = crate::mirror::mirror(&st, &source).await;
                st.index().flush().await?;
                r
            })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!(
                    "mirrored from {from}: {} copied, {} already present, {} refused",
                    report.copied.len(),
                    report.unchanged.len(),
                    report.refused.len()
                );
                for (id, check, detail) in &report.refused {
                    println!("refused {id}: {check}: {detail}");
                }
            }
            if !report.refused.is_empty() {
                return Ok(1);
            }
        }
    }
    Ok(0)
}
