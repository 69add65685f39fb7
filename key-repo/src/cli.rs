//! Command line (`key-repo ...`). Exit codes: 0 success, 1 failure, 2 usage error,
//! 3 audit chain does not verify.

use std::path::PathBuf;

use clap::Subcommand;
use foundations::config::{ServiceCli, ServiceCommand, ServiceInfo};

use crate::Error;
use crate::model::Role;

/// The command line: `init`, `serve` and [`Command`].
pub type Cli = ServiceCli<Command>;

const INFO: ServiceInfo = ServiceInfo {
    name: "key-repo",
    version: env!("CARGO_PKG_VERSION"),
    about: "Key repository protected by OAuth 2.0",
    init_about: "Create a configuration, TLS certificate, master key, token-signing key and admin client (`--json` prints the report, the admin secret included, as JSON).",
    exit_codes: "0 success; 1 failure; 2 usage error; 3 audit chain does not verify.",
    log_env: "KEY_REPO_LOG",
};

/// The key repository's own commands (beside `init` and `serve`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage OAuth clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and secret once.
    Add {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// VENDOR_UUID/CLASS_UUID the client may access (repeatable).
        #[arg(long = "product")]
        products: Vec<String>,
        /// Public P-256 JWK file: the client authenticates with private_key_jwt
        /// (RFC 7523) instead of a secret.
        #[arg(long)]
        jwk_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List clients (no secrets).
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Remove a client by id or name. A running server refuses its tokens from the next
    /// request on.
    Remove {
        #[arg(long)]
        config: PathBuf,
        id_or_name: String,
    },
    /// Disable a client: it gets no token, and a running server refuses its tokens from the
    /// next request on (also after `enable`: only tokens issued later work again).
    Disable {
        #[arg(long)]
        config: PathBuf,
        id_or_name: String,
    },
    /// Enable a disabled client again (its earlier tokens stay refused).
    Enable {
        #[arg(long)]
        config: PathBuf,
        id_or_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of the audit log (server stopped, or on a backup copy).
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// Database directory to check instead of the configured one (e.g. a backup).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> u8 {
    main_from(std::env::args_os())
}

/// As [`main`], with the arguments given (the first is the program name).
pub fn main_from(args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>) -> u8 {
    foundations::config::service_main(&INFO, args, run, |e| matches!(e, Error::Usage(_)))
}

fn run(cmd: ServiceCommand<Command>) -> Result<u8, Error> {
    match cmd {
        ServiceCommand::Init(a) => a.run(crate::init::init, |r| {
            for p in &r.created {
                println!("created {}", p.display());
            }
            println!(
                "clients should trust the CA certificate {}",
                r.ca_file.display()
            );
            println!("admin client (the secret is shown only now; store it safely):");
            println!("  client_id:     {}", r.admin.client_id);
            println!("  client_secret: {}", r.admin.client_secret);
        }),
        ServiceCommand::Serve(a) => a.run(crate::server::run),
        ServiceCommand::Own(Command::Clients { command }) => clients(command),
        ServiceCommand::Own(Command::Audit {
            command: AuditCommand::Verify { config, data_dir },
        }) => {
            let cfg = crate::config::Config::load(&config)?;
            let master = crate::crypto::MasterKey::load(&cfg.master_key_file)?;
            let dir = data_dir.unwrap_or(cfg.data_dir);
            let db = sled::Config::new().path(&dir).open().map_err(|e| {
                Error::Db(format!(
                    "cannot open {} ({e}); stop the server or verify a backup copy with --data-dir",
                    dir.display()
                ))
            })?;
            let tree = db.open_tree("audit")?;
            match foundations::audit::verify(&tree, &master.audit_mac_key()) {
                Ok(r) => {
                    println!("audit chain OK: {} records, head {}", r.records, r.head_mac);
                    Ok(0)
                }
                Err(e) => {
                    println!("audit chain BROKEN: {e}");
                    Ok(3)
                }
            }
        }
    }
}

fn clients(cmd: ClientsCommand) -> Result<u8, Error> {
    match cmd {
        ClientsCommand::Add {
            config,
            name,
            role,
            products,
            jwk_file,
            json,
        } => {
            if role == Role::Admin {
                return Err(Error::Usage("the admin client is created by init".into()));
            }
            let cfg = crate::config::Config::load(&config)?;
            let jwk = match &jwk_file {
                None => None,
                Some(p) => {
                    let b = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                    Some(serde_json::from_slice(&b).map_err(|e| Error::Config {
                        path: p.display().to_string(),
                        reason: format!("not a JWK: {e}"),
                    })?)
                }
            };
            let c = crate::clients::add_with_key(&cfg.clients_file, &name, role, &products, jwk)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&c).map_err(|e| Error::Corrupt(e.to_string()))?
                );
            } else {
                println!("client_id:     {}", c.client_id);
                if !c.client_secret.is_empty() {
                    println!("client_secret: {}", c.client_secret);
                    println!("(the secret is shown only now)");
                }
            }
            Ok(0)
        }
        ClientsCommand::List { config, json } => {
            let cfg = crate::config::Config::load(&config)?;
            let list = crate::clients::list(&cfg.clients_file)?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| {
                        serde_json::json!({"client_id": c.client_id, "name": c.name,
                            "role": c.role, "products": c.products, "created_at": c.created_at,
                            "disabled": c.disabled})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for c in list {
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        c.client_id,
                        c.name,
                        c.role,
                        c.products.join(","),
                        if c.disabled { "\tdisabled" } else { "" }
                    );
                }
            }
            Ok(0)
        }
        ClientsCommand::Remove { config, id_or_name } => {
            let cfg = crate::config::Config::load(&config)?;
            let c = crate::clients::remove(&cfg.clients_file, &id_or_name)?;
            println!("removed {} ({})", c.client_id, c.name);
            Ok(0)
        }
        ClientsCommand::Disable { config, id_or_name } => {
            let cfg = crate::config::Config::load(&config)?;
            let c = crate::clients::set_disabled(&cfg.clients_file, &id_or_name, true)?;
            println!("disabled {} ({})", c.client_id, c.name);
            Ok(0)
        }
        ClientsCommand::Enable { config, id_or_name } => {
            let cfg = crate::config::Config::load(&config)?;
            let c = crate::clients::set_disabled(&cfg.clients_file, &id_or_name, false)?;
            println!("enabled {} ({})", c.client_id, c.name);
            Ok(0)
        }
    }
}
