//! Command line. Exit codes: 0 success; 1 failure (including a mirror that refused a
//! release); 2 usage or configuration error.

use std::path::PathBuf;

use clap::Subcommand;
use foundations::config::{ServiceCli, ServiceCommand, ServiceInfo};
use uuid::Uuid;

use crate::Error;

/// The command line: `init`, `serve` and [`Command`].
pub type Cli = ServiceCli<Command>;

const INFO: ServiceInfo = ServiceInfo {
    name: "update-server",
    version: env!("CARGO_PKG_VERSION"),
    about: "Hosts signed, encrypted SUIT releases; verifies before it stores",
    init_about: "Create a configuration, TLS certificate, empty publisher list and object directory.",
    exit_codes: "0 success; 1 failure (a mirror refused a release); 2 usage or configuration error.",
    log_env: "UPDATE_SERVER_LOG",
};

/// The update server's own commands (beside `init` and `serve`).
#[derive(Debug, Subcommand)]
pub enum Command {
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
    foundations::config::service_main(&INFO, args, run, Error::is_usage)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(foundations::config::runtime()?)
}

fn publishers_file(config: &std::path::Path) -> Result<PathBuf, Error> {
    Ok(crate::config::Config::load(config)?.publishers_file)
}

fn run(cmd: ServiceCommand<Command>) -> Result<u8, Error> {
    match cmd {
        ServiceCommand::Init(a) => {
            a.run(crate::init::init, |r| {
                println!("configuration  {}", r.config.display());
                println!(
                    "CA certificate {} (give it to clients)",
                    r.ca_file.display()
                );
                for c in &r.created {
                    println!("created        {}", c.display());
                }
            })?;
        }
        ServiceCommand::Serve(a) => {
            a.run(crate::server::run)?;
        }
        ServiceCommand::Own(Command::Publishers { command }) => match command {
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
        ServiceCommand::Own(Command::Mirror {
            config,
            from,
            ca,
            token_env,
            json,
        }) => {
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
