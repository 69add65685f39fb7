//! `publisher publish`: release, store the release key (KEK) in the key repository with a
//! publisher token, and upload envelope + payload to the update server.
//!
//! Endpoints and credentials come from a TOML file (`--config` or `PUBLISHER_CONFIG`) and
//! the environment, never from secret-bearing command-line arguments:
//!
//! ```toml
//! [key_repo]
//! url = "https://keys.vendor.example:8443"
//! ca_file = "key-repo-ca.pem"          # optional: trust only this CA
//! client_id = "kr-..."
//! client_secret_file = "client-secret" # or PUBLISHER_CLIENT_SECRET in the environment
//!
//! [update_server]
//! url = "https://updates.example:8444"
//! ca_file = "update-server-ca.pem"
//! ```
//!
//! Environment variables override the file: `PUBLISHER_KEY_REPO_URL`,
//! `PUBLISHER_KEY_REPO_CA`, `PUBLISHER_CLIENT_ID`, `PUBLISHER_CLIENT_SECRET`,
//! `PUBLISHER_CLIENT_SECRET_FILE`, `PUBLISHER_UPDATE_SERVER_URL`,
//! `PUBLISHER_UPDATE_SERVER_CA`. The update server accepts the key repository's access
//! token (same client); relative paths in the file are relative to the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::files::read_bounded;
use crate::release::{ReleaseArgs, ReleaseSummary, release};
use crate::{CliError, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    key_repo: KeyRepoSection,
    #[serde(default)]
    update_server: UpdateServerSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRepoSection {
    url: Option<String>,
    ca_file: Option<PathBuf>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateServerSection {
    url: Option<String>,
    ca_file: Option<PathBuf>,
}

/// Resolved endpoints and credentials.
pub struct PublishConfig {
    pub key_repo_url: String,
    pub key_repo_ca: Option<Vec<u8>>,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
    pub update_server_url: String,
    pub update_server_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfig")
            .field("key_repo_url", &self.key_repo_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("update_server_url", &self.update_server_url)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read_ca(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, 1 << 20, "cannot read CA certificate")
}

impl PublishConfig {
    /// Reads `file` (if any), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let (fc, base) = match file {
            Some(p) => {
                let text = read_bounded(p, 1 << 20, "cannot read publisher configuration")?;
                let text = String::from_utf8(text)
                    .map_err(|_| CliError::Input(format!("{}: not UTF-8", p.display())))?;
                let fc: FileConfig = toml::from_str(&text)
                    .map_err(|e| CliError::Input(format!("{}: {e}", p.display())))?;
                (fc, p.parent().map(Path::to_owned).unwrap_or_default())
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        let rel = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let missing = |what: &str, var: &str| {
            CliError::Input(format!(
                "no {what}: set it in the configuration file (--config / PUBLISHER_CONFIG) or in {var}"
            ))
        };
        let key_repo_url = env("PUBLISHER_KEY_REPO_URL")
            .or(fc.key_repo.url)
            .ok_or_else(|| missing("key repository URL", "PUBLISHER_KEY_REPO_URL"))?;
        let update_server_url = env("PUBLISHER_UPDATE_SERVER_URL")
            .or(fc.update_server.url)
            .ok_or_else(|| missing("update server URL", "PUBLISHER_UPDATE_SERVER_URL"))?;
        let client_id = env("PUBLISHER_CLIENT_ID")
            .or(fc.key_repo.client_id)
            .ok_or_else(|| missing("client id", "PUBLISHER_CLIENT_ID"))?;
        let secret = match env("PUBLISHER_CLIENT_SECRET") {
            Some(s) => Zeroizing::new(s),
            None => {
                let f = env("PUBLISHER_CLIENT_SECRET_FILE")
                    .map(PathBuf::from)
                    .or(fc.key_repo.client_secret_file.map(rel))
                    .ok_or_else(|| {
                        missing(
                            "client secret",
                            "PUBLISHER_CLIENT_SECRET or PUBLISHER_CLIENT_SECRET_FILE",
                        )
                    })?;
                let b = Zeroizing::new(read_bounded(&f, 4096, "cannot read client secret")?);
                Zeroizing::new(
                    std::str::from_utf8(&b)
                        .map_err(|_| CliError::Input(format!("{}: not UTF-8", f.display())))?
                        .trim()
                        .to_owned(),
                )
            }
        };
        let key_repo_ca = match env("PUBLISHER_KEY_REPO_CA")
            .map(PathBuf::from)
            .or(fc.key_repo.ca_file.map(rel))
        {
            Some(p) => Some(read_ca(&p)?),
            None => None,
        };
        let update_server_ca = match env("PUBLISHER_UPDATE_SERVER_CA")
            .map(PathBuf::from)
            .or(fc.update_server.ca_file.map(rel))
        {
            Some(p) => Some(read_ca(&p)?),
            None => None,
        };
        Ok(PublishConfig {
            key_repo_url: key_repo_url.trim_end_matches('/').to_owned(),
            key_repo_ca,
            client_id,
            client_secret: secret,
            update_server_url: update_server_url.trim_end_matches('/').to_owned(),
            update_server_ca,
        })
    }
}

/// What `publish` did.
#[derive(Debug, Clone, Serialize)]
pub struct PublishSummary {
    pub release_id: String,
    pub release_kid: String,
    pub signer_kid: String,
    /// `VENDOR/CLASS`.
    pub product: String,
    pub key_url: String,
    pub envelope_url: String,
    pub payload_url: String,
    pub payload_size: u64,
    /// `false` when the update server already had this release (idempotent retry).
    pub newly_published: bool,
    pub upload_seconds: f64,
    /// The local files `release` wrote.
    pub release: ReleaseSummary,
}

fn remote(e: impl std::fmt::Display) -> CliError {
    CliError::Remote(e.to_string())
}

/// `publisher publish`.
pub fn publish(args: &ReleaseArgs, cfg: &PublishConfig, progress: bool) -> Result<PublishSummary> {
    let rel = release(args)?;
    let cose_key = Zeroizing::new(read_bounded(
        &rel.release_key,
        4096,
        "cannot read release key",
    )?);
    let envelope = read_bounded(&rel.envelope, 16 << 20, "cannot read envelope")?;
    let product = format!(
        "{}/{}",
        args.vendor_id.hyphenated(),
        args.class_id.hyphenated()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Input(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let kr = key_repo::client::KeyRepoClient::new(key_repo::client::ClientConfig {
            base_url: cfg.key_repo_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: (*cfg.client_secret).clone(),
            ca_pem: cfg.key_repo_ca.clone(),
            scopes: vec![],
        })
        .map_err(remote)?;
        // 1. The KEK to the key repository (immutable there; a retry with the same key is 200).
        kr.put_key(&rel.release_kid, &product, &cose_key)
            .await
            .map_err(|e| CliError::Remote(format!("storing the release key failed: {e}")))?;
        // 2. Envelope and payload to the update server, with the same client's token.
        let token = kr.access_token().await.map_err(remote)?;
        let us = update_server::client::UpdateServerClient::new(
            &cfg.update_server_url,
            cfg.update_server_ca.as_deref(),
            Some(token),
        )
        .map_err(remote)?;
        let bar = crate::release::byte_progress(rel.payload_size, "uploading", progress);
        let b2 = bar.clone();
        let started = std::time::Instant::now();
        let up = us
            .upload(
                envelope,
                &rel.payload,
                Arc::new(move |n| b2.set_position(n)),
            )
            .await;
        bar.finish_and_clear();
        let up = up.map_err(|e| CliError::Remote(format!("upload refused or failed: {e}")))?;
        Ok(PublishSummary {
            release_id: up.release.release_id.clone(),
            release_kid: rel.release_kid.clone(),
            signer_kid: rel.signer_kid.clone(),
            product: product.clone(),
            key_url: format!("{}/v1/keys/{}", cfg.key_repo_url, rel.release_kid),
            envelope_url: format!("{}{}", cfg.update_server_url, up.envelope_url),
            payload_url: format!("{}{}", cfg.update_server_url, up.payload_url),
            payload_size: up.release.payload.size,
            newly_published: up.created,
            upload_seconds: started.elapsed().as_secs_f64(),
            release: rel.clone(),
        })
    })
}
