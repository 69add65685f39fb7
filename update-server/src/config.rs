//! Service configuration (`update-server.toml`). Relative paths are relative to the
//! directory of the configuration file. Secrets (S3 credentials) come from the environment
//! or from files named here, never from the TOML itself or the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use foundations::serve::ServeLimits;
use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (overridden by `serve --listen`).
    pub listen: SocketAddr,
    /// sled database directory (the release index).
    pub data_dir: PathBuf,
    /// Registered publisher keys (the trust-store TOML of docs/trust-store.md), edited by
    /// `update-server publishers`.
    pub publishers_file: PathBuf,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Connection budget and timeouts of the TLS listener (`foundations::serve`).
    #[serde(default)]
    pub serve: ServeLimits,
    #[serde(default)]
    pub policy: Policy,
    /// Other update servers to replicate from while serving (`update-server mirror` runs
    /// the same replication once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorConfig>,
}

/// A source this server replicates from, verifying each release as an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Base URL of the source (https://host:port).
    pub from: String,
    /// CA certificate (PEM) to trust for the source instead of the web PKI.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Environment variable holding a bearer token for the source, if it needs one.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds between replication rounds.
    #[serde(default = "default_mirror_interval")]
    pub interval_secs: u64,
}

fn default_mirror_interval() -> u64 {
    300
}

/// The `[tls]` table: certificate chain, key, and the CA for clients.
pub use foundations::tls::TlsConfig;

/// Where blobs and envelopes live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// A local directory.
    Local { path: PathBuf },
    /// Any S3-compatible store. Credentials: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// from the environment, or `access_key_id` + `secret_access_key_file`.
    S3 {
        bucket: String,
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default = "default_region")]
        region: String,
        /// Allow `http://` endpoints (test peers on loopback only).
        #[serde(default)]
        allow_http: bool,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key_file: Option<PathBuf>,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: Option<String>,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Who may upload and download.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `public`: anyone may list and download; `token`: a token with a download scope.
    pub download: DownloadAccess,
    /// Any one of these scopes allows uploads.
    pub upload_scopes: Vec<String>,
    /// Any one of these scopes allows downloads when `download = "token"`.
    pub download_scopes: Vec<String>,
    pub leeway_secs: u64,
    pub max_lifetime_secs: u64,
    /// Issuers whose ES256 JWT access tokens (RFC 9068) are accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<IssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            download: DownloadAccess::Public,
            upload_scopes: vec!["releases:write".into()],
            download_scopes: vec!["releases:read".into()],
            leeway_secs: 30,
            max_lifetime_secs: 3600,
            issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadAccess {
    Public,
    Token,
}

/// An issuer whose tokens are accepted (`[[auth.issuers]]`): exact `iss`, required `aud`,
/// its JWKS (URL or file), an extra CA for the URL, and the claim listing the products it
/// grants (`""` disables the product check for this issuer).
pub use foundations::token::IssuerConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest envelope accepted.
    pub max_envelope_bytes: usize,
    /// Largest payload (ciphertext) accepted.
    pub max_blob_bytes: u64,
    /// Time allowed for any request except uploads (to produce response headers).
    pub request_timeout_secs: u64,
    /// Time allowed for one upload, body included.
    pub upload_timeout_secs: u64,
    /// Simultaneous TLS connections. Older configuration files have it here; it overrides
    /// `serve.max_connections` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Requests processed at once (beyond: 503 busy).
    pub max_in_flight: usize,
    /// Uploads processed at once (beyond: 503 busy).
    pub max_concurrent_uploads: usize,
    /// Largest page of `GET /v1/releases`.
    pub list_page_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: 1 << 20,
            max_blob_bytes: 4 << 30,
            request_timeout_secs: 30,
            upload_timeout_secs: 3600,
            max_connections: None,
            max_in_flight: 512,
            max_concurrent_uploads: 8,
            list_page_max: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Refuse a release whose sequence number is not greater than the newest one already
    /// published for the same vendor and class (a replayed older release).
    pub reject_older: bool,
    /// Refuse T3 releases without an author signature that verifies under an author key
    /// of the publishers file (default: check it when the author key is known).
    pub require_author_signature: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            reject_older: true,
            require_author_signature: false,
        }
    }
}

impl foundations::config::ServiceConfig for Config {
    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| foundations::config::resolve(base, p);
        abs(&mut self.data_dir);
        abs(&mut self.publishers_file);
        self.tls.resolve(base);
        match &mut self.storage {
            StorageConfig::Local { path } => abs(path),
            StorageConfig::S3 {
                secret_access_key_file: Some(p),
                ..
            } => abs(p),
            StorageConfig::S3 { .. } => {}
        }
        for m in &mut self.mirrors {
            if let Some(p) = m.ca_file.as_mut() {
                abs(p);
            }
        }
        for i in &mut self.auth.issuers {
            i.resolve(base);
        }
    }

    fn check(&mut self) -> Result<(), String> {
        for i in &self.auth.issuers {
            i.validate()?;
        }
        if self.auth.upload_scopes.is_empty() {
            return Err("auth.upload_scopes is empty".into());
        }
        if let Some(n) = self.limits.max_connections {
            self.serve.max_connections = n;
        }
        // The serve loop's request timeout bounds every request; uploads need theirs.
        self.serve.request_timeout_secs = self
            .serve
            .request_timeout_secs
            .max(self.limits.upload_timeout_secs);
        self.serve.validate()
    }
}

impl Config {
    /// Reads the file; resolves relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Ok(foundations::config::load_service(path)?)
    }
}
