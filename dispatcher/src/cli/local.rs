//! The commands that work on a dispatcher's files: init, serve, add-operator, audit-verify,
//! check-policy.

use std::path::PathBuf;

use super::*;

/// Arguments of `dispatcher init`.
#[derive(clap::Args, Debug)]
pub(super) struct InitArgs {
    /// Directory to create.
    #[arg(long)]
    dir: PathBuf,
    /// Host name for the TLS certificate.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Operator API address.
    #[arg(long, default_value = "127.0.0.1:8445")]
    listen: std::net::SocketAddr,
    /// Device CoAP address.
    #[arg(long, default_value = "127.0.0.1:5683")]
    coap_listen: std::net::SocketAddr,
}

impl InitArgs {
    pub(super) fn run(&self) -> Result<(), Fail> {
        let Self {
            dir,
            hostname,
            listen,
            coap_listen,
        } = self;
        let r = crate::init::init(
            dir,
            &crate::init::InitOptions {
                hostname: hostname.clone(),
                listen: *listen,
                coap_listen: *coap_listen,
            },
        )
        .map_err(|e| Fail::Input(e.to_string()))?;
        let token_file = dir.join("admin.token");
        foundations::fs::write_secret_file(&token_file, r.admin_token.as_bytes())
            .map_err(|e| Fail::Input(e.to_string()))?;
        println!("created {}", r.config.display());
        println!(
            "admin token written to {} (mode 0600)",
            token_file.display()
        );
        println!(
            "next: add publisher keys to {}, then",
            dir.join("trust.toml").display()
        );
        println!("  dispatcher serve --config {}", r.config.display());
        println!(
            "  export DISPATCHER_URL=https://{listen} DISPATCHER_CA={} DISPATCHER_TOKEN_FILE={}",
            r.ca_file.display(),
            token_file.display()
        );
        Ok(())
    }
}

/// Arguments of `dispatcher serve`.
#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Configuration file.
    #[arg(long, env = "DISPATCHER_CONFIG")]
    config: PathBuf,
    /// Let admins set the clock through the API (tests of maintenance windows only).
    #[arg(long)]
    injectable_clock: bool,
}

impl ServeArgs {
    pub(super) async fn run(&self) -> Result<(), Fail> {
        let Self {
            config,
            injectable_clock,
        } = self;
        crate::server::run(
            config,
            *injectable_clock,
            foundations::serve::shutdown_signal(),
        )
        .await
        .map_err(|e| Fail::Input(e.to_string()))
    }
}

/// Arguments of `dispatcher add-operator`.
#[derive(clap::Args, Debug)]
pub(super) struct AddOperatorArgs {
    /// Configuration file.
    #[arg(long, env = "DISPATCHER_CONFIG")]
    config: PathBuf,
    /// Operator name.
    #[arg(long)]
    name: String,
    /// viewer, operator or admin.
    #[arg(long)]
    role: String,
    /// Write the token to this file (0600) instead of printing it.
    #[arg(long)]
    token_out: Option<PathBuf>,
}

impl AddOperatorArgs {
    pub(super) fn run(&self) -> Result<(), Fail> {
        let Self {
            config,
            name,
            role,
            token_out,
        } = self;
        let cfg = crate::config::Config::load(config).map_err(|e| Fail::Input(e.to_string()))?;
        let role = crate::operators::OperatorRole::parse(role)
            .ok_or_else(|| Fail::Input(format!("role {role:?}: viewer, operator or admin")))?;
        let mut ops = crate::operators::Operators::load(&cfg.operators_file)
            .map_err(|e| Fail::Input(e.to_string()))?;
        let token = zeroize::Zeroizing::new(
            ops.add(name, role)
                .map_err(|e| Fail::Input(e.to_string()))?,
        );
        ops.save(&cfg.operators_file)
            .map_err(|e| Fail::Input(e.to_string()))?;
        match token_out {
            Some(p) => {
                foundations::fs::write_secret_file(p, token.as_bytes())
                    .map_err(|e| Fail::Input(e.to_string()))?;
                println!(
                    "operator {name} ({}) added; token in {}",
                    role.as_str(),
                    p.display()
                );
            }
            None => println!("{}", token.as_str()),
        }
        println!("(a running dispatcher reads operators at start: restart it)");
        Ok(())
    }
}

/// Arguments of `dispatcher audit-verify`.
#[derive(clap::Args, Debug)]
pub(super) struct AuditVerifyArgs {
    /// Configuration file.
    #[arg(long, env = "DISPATCHER_CONFIG")]
    config: PathBuf,
}

impl AuditVerifyArgs {
    pub(super) fn run(&self) -> Result<(), Fail> {
        let Self { config } = self;
        let cfg = crate::config::Config::load(config).map_err(|e| Fail::Input(e.to_string()))?;
        let key = std::fs::read_to_string(&cfg.audit_key_file)
            .map_err(|e| Fail::Input(format!("{}: {e}", cfg.audit_key_file.display())))?;
        let key = zeroize::Zeroizing::new(key);
        let key: [u8; 32] = hex::decode(key.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Fail::Input("audit key: 32 bytes of hex expected".into()))?;
        let store = crate::store::Store::open(&cfg.data_dir).map_err(|e| {
            Fail::Input(format!(
                "{e} (is the dispatcher still running? stop it first)"
            ))
        })?;
        let tree = store
            .db()
            .open_tree("audit")
            .map_err(|e| Fail::Input(e.to_string()))?;
        match foundations::audit::verify(&tree, &key) {
            Ok(r) => {
                println!(
                    "audit chain intact: {} records, head {}",
                    r.records, r.head_mac
                );
                Ok(())
            }
            Err(e) => {
                println!("audit chain BROKEN: {e}");
                Err(Fail::Check)
            }
        }
    }
}

/// Arguments of `dispatcher check-policy`.
#[derive(clap::Args, Debug)]
pub(super) struct CheckPolicyArgs {
    /// The policy file.
    file: PathBuf,
}

impl CheckPolicyArgs {
    pub(super) fn run(&self) -> Result<(), Fail> {
        let Self { file } = self;
        match policies::Policy::load(file) {
            Ok(p) => {
                println!(
                    "{}: {} rules, {} windows, {} rollouts: ok",
                    file.display(),
                    p.rules.len(),
                    p.windows.len(),
                    p.rollouts.len()
                );
                Ok(())
            }
            Err(e) => Err(Fail::Input(e.to_string())),
        }
    }
}
