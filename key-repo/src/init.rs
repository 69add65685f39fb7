//! `key-repo init`: a ready-to-run embedded default in one directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Error;
use crate::clients::NewClient;
use crate::config::{Config, Limits, TlsConfig, TokenConfig};
use crate::crypto::MasterKey;
use crate::model::Role;
use foundations::token::TokenSigner;

/// What `init` created. Contains the admin secret: print once, never log.
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub config: PathBuf,
    pub ca_file: PathBuf,
    pub created: Vec<PathBuf>,
    pub admin: NewClient,
}

pub fn init(dir: &Path, hostname: &str) -> Result<InitReport, Error> {
    let config_path = foundations::config::init_config_path(
        dir,
        hostname,
        "key-repo.toml",
        "refusing to overwrite keys (use another --dir)",
    )?;
    let mut created = Vec::new();
    // The directory (0700), a local CA and the server certificate and key.
    let tls = foundations::tls::write_generated(dir, hostname, "key-repo")?;
    let ca_file = tls.ca_file.clone();
    created.extend([tls.ca_file, tls.cert_file, tls.key_file]);

    MasterKey::generate()?.save(&dir.join("master.key"))?;
    created.push(dir.join("master.key"));
    TokenSigner::generate()?.save(&dir.join("token-signing.pem"))?;
    created.push(dir.join("token-signing.pem"));

    let clients = dir.join("clients.json");
    let admin = crate::clients::add(&clients, "admin", Role::Admin, &[])?;
    created.push(clients);

    let issuer = if hostname.contains(':') {
        format!("https://[{hostname}]:8443")
    } else {
        format!("https://{hostname}:8443")
    };
    let cfg = Config {
        listen: "127.0.0.1:8443"
            .parse()
            .map_err(|_| Error::Usage("listen".into()))?,
        audience: format!("{issuer}/v1"),
        issuer,
        data_dir: "data".into(),
        clients_file: "clients.json".into(),
        master_key_file: "master.key".into(),
        token_signing_key_file: "token-signing.pem".into(),
        tls: TlsConfig::generated(),
        tokens: TokenConfig::default(),
        limits: Limits::default(),
        serve: Default::default(),
        audit: Default::default(),
        external_issuers: Vec::new(),
    };
    let header = "# key-repo configuration (written by `key-repo init`). Relative paths are relative\n\
                  # to this file. Secrets are in the files named here, mode 0600.\n\
                  #\n\
                  # Accept tokens from an external OAuth 2.0 authorization server, e.g.:\n\
                  # [[external_issuers]]\n\
                  # issuer = \"https://idp.plant.example\"\n\
                  # audience = \"https://key-repo.plant.example\"\n\
                  # jwks_url = \"https://idp.plant.example/jwks\"\n\
                  # products_claim = \"products\"\n\n";
    foundations::config::save_toml(&config_path, header, &cfg, 0o600)?;
    created.push(config_path.clone());
    Ok(InitReport {
        config: config_path,
        ca_file,
        created,
        admin,
    })
}
