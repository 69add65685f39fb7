//! `dispatcher init --dir DIR`: a ready-to-run dispatcher in one directory: configuration,
//! TLS certificate (own local CA), approval key, audit key, an empty trust store, the
//! shipped plant policy, and one admin operator whose token is returned once.

use std::path::{Path, PathBuf};

use foundations::fs::{write_file_atomic, write_secret_file};
use serde::Serialize;

use crate::Error;
use crate::config::{Config, Limits, TlsConfig};
use crate::operators::{OperatorRole, Operators};

/// The shipped example policy (policies/examples/plant.toml).
pub const PLANT_POLICY: &str = include_str!("../../policies/examples/plant.toml");

/// What `init` created. Holds the admin token: print once, never log.
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// The configuration file.
    pub config: PathBuf,
    /// CA certificate for API clients.
    pub ca_file: PathBuf,
    /// The admin operator's token.
    pub admin_token: String,
}

/// Options of `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Host name for the certificate.
    pub hostname: String,
    /// Operator API address.
    pub listen: std::net::SocketAddr,
    /// Device CoAP address.
    pub coap_listen: std::net::SocketAddr,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            hostname: "localhost".into(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8445)),
            coap_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 5683)),
        }
    }
}

/// Creates everything (refuses to overwrite an existing configuration).
pub fn init(dir: &Path, o: &InitOptions) -> Result<InitReport, Error> {
    let config_path = dir.join("dispatcher.toml");
    if config_path.exists() {
        return Err(Error::BadRequest(format!(
            "{} exists; refusing to overwrite keys (use another --dir)",
            config_path.display()
        )));
    }
    if !foundations::tls::valid_hostname(&o.hostname) {
        return Err(Error::BadRequest(format!(
            "invalid hostname {:?}",
            o.hostname
        )));
    }
    // The directory (0700), a local CA and the server certificate and key.
    let tls = foundations::tls::write_generated(dir, &o.hostname, "dispatcher")?;

    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let approval = suit::SigningKey::generate(&mut rng);
    let pem = approval
        .to_pkcs8_pem()
        .map_err(|e| Error::Other(e.to_string()))?;
    write_secret_file(&dir.join("approval-key.pem"), pem.as_bytes())?;
    let audit: [u8; 32] = foundations::random_bytes()?;
    write_secret_file(&dir.join("audit.key"), hex::encode(audit).as_bytes())?;
    write_file_atomic(
        &dir.join("trust.toml"),
        b"# Trusted keys (docs/trust-store.md). One [[key]] per key:\n\
          # [[key]]\n# kid = \"acme-2026\"\n# role = \"manufacturer\"   # or third-party, internal, author\n\
          # vendors = [\"fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe\"]   # required for publishers; or [\"*\"]\n\
          # public_key_file = \"keys/acme-2026.pub.pem\"   # or public_key = \"\"\"-----BEGIN PUBLIC KEY-----...\"\"\"\n\
          # update_types = [\"T2\", \"T3\"]            # optional: narrows what the role allows\n\
          # valid_until = 2027-01-01T00:00:00Z       # rotation\n# revoked = true                          # revocation\n",
        0o644,
    )?;
    if !dir.join("policy.toml").exists() {
        write_file_atomic(&dir.join("policy.toml"), PLANT_POLICY.as_bytes(), 0o644)?;
    }
    let mut ops = Operators::default();
    let admin_token = ops.add("admin", OperatorRole::Admin)?;
    ops.save(&dir.join("operators.json"))?;
    let coap_uri = format!("coap://{}", o.coap_listen);
    let cfg = Config {
        listen: o.listen,
        coap_listen: o.coap_listen,
        coap_uri,
        data_dir: "data".into(),
        policy_file: "policy.toml".into(),
        trust_file: "trust.toml".into(),
        require_author_signature: true,
        operators_file: "operators.json".into(),
        approval_key_file: "approval-key.pem".into(),
        approval_kid: format!(
            "dispatcher-{}",
            hex::encode(foundations::random_bytes::<4>()?)
        ),
        audit_key_file: "audit.key".into(),
        tls: TlsConfig::generated(),
        update_servers: Vec::new(),
        key_repos: Vec::new(),
        limits: Limits::default(),
        serve: Default::default(),
    };
    cfg.save(&config_path)?;
    Ok(InitReport {
        config: config_path,
        ca_file: tls.ca_file,
        admin_token,
    })
}
