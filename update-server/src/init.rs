//! `update-server init`: a ready-to-run default in one directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Error;
use crate::config::{AuthConfig, Config, Limits, Policy, StorageConfig, TlsConfig};

/// What `init` created.
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub config: PathBuf,
    pub ca_file: PathBuf,
    pub created: Vec<PathBuf>,
}

pub fn init(dir: &Path, hostname: &str) -> Result<InitReport, Error> {
    let config_path = foundations::config::init_config_path(
        dir,
        hostname,
        "update-server.toml",
        "refusing to overwrite (use another --dir)",
    )?;
    // The directory (0700), a local CA and the server certificate and key.
    let tls = foundations::tls::write_generated(dir, hostname, "update-server")?;
    foundations::fs::create_private_dir(&dir.join("objects"))?;
    let publishers = dir.join("publishers.toml");
    crate::publishers::Registry::create_empty(&publishers)?;
    let cfg = Config {
        listen: "127.0.0.1:8444"
            .parse()
            .map_err(|_| Error::usage("listen"))?,
        data_dir: "data".into(),
        publishers_file: "publishers.toml".into(),
        tls: TlsConfig::generated(),
        storage: StorageConfig::Local {
            path: "objects".into(),
        },
        auth: AuthConfig {
            upload_scopes: vec!["releases:write".into()],
            download_scopes: vec!["releases:read".into()],
            ..AuthConfig::default()
        },
        limits: Limits::default(),
        serve: Default::default(),
        policy: Policy::default(),
        mirrors: Vec::new(),
    };
    let header = "# update-server configuration (written by `update-server init`). Relative paths are\n\
                  # relative to this file.\n\
                  #\n\
                  # Accept upload tokens from a key repository's built-in authorization server:\n\
                  # [[auth.issuers]]\n\
                  # issuer = \"https://keys.vendor.example:8443\"\n\
                  # audience = \"https://keys.vendor.example:8443/v1\"\n\
                  # jwks_url = \"https://keys.vendor.example:8443/.well-known/jwks.json\"\n\
                  # ca_file = \"key-repo-ca.pem\"\n\
                  #\n\
                  # S3-compatible storage instead of the local directory:\n\
                  # [storage]\n\
                  # kind = \"s3\"\n\
                  # bucket = \"releases\"\n\
                  # endpoint = \"https://s3.example\"\n\n";
    foundations::config::save_toml(&config_path, header, &cfg, 0o600)?;
    Ok(InitReport {
        created: vec![
            config_path.clone(),
            tls.ca_file.clone(),
            tls.cert_file,
            tls.key_file,
            publishers,
        ],
        config: config_path,
        ca_file: tls.ca_file,
    })
}
