//! `dispatcher.toml`: where the dispatcher listens, where its files are, which update servers
//! and key repositories it uses. Secrets are never in this file: it names the files that
//! hold them (mode 0600). Relative paths are resolved against the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use foundations::serve::ServeLimits;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Operator API (HTTPS).
    pub listen: SocketAddr,
    /// Device uplink (CoAP over UDP, every request OSCORE-protected).
    pub coap_listen: SocketAddr,
    /// The CoAP URI devices are told to use (written into provisioning bundles).
    pub coap_uri: String,
    /// sled database and release files.
    pub data_dir: PathBuf,
    /// Operator policy (TOML, `policies` crate). Re-read on `POST /v1/policy/reload`; a
    /// broken file is refused and the last good policy stays in force.
    pub policy_file: PathBuf,
    /// Trusted keys: the project's trust-store TOML (`docs/trust-store.md`).
    pub trust_file: PathBuf,
    /// Refuse T3 releases without an author signature that verifies under an author key of
    /// the trust file (`author-signature-missing`/`-invalid`). Turning it off records the
    /// outcome on the release instead (`docs/acceptance.md`).
    #[serde(default = "yes")]
    pub require_author_signature: bool,
    /// Operator tokens (SHA-256 hashes and roles), edited by `dispatcher add-operator`.
    pub operators_file: PathBuf,
    /// The dispatcher's P-256 approval key (PKCS#8 PEM, 0600).
    pub approval_key_file: PathBuf,
    /// kid of the approval signature.
    pub approval_kid: String,
    /// 32-byte key (hex, 0600) that MACs the audit chain.
    pub audit_key_file: PathBuf,
    /// TLS of the operator API.
    pub tls: TlsConfig,
    /// Update servers to poll, in order of preference; the first that answers is used
    /// (mirrors fail over).
    #[serde(default, rename = "update_server")]
    pub update_servers: Vec<UpdateServerConfig>,
    /// Key repositories (one per publisher, usually).
    #[serde(default, rename = "key_repo")]
    pub key_repos: Vec<KeyRepoConfig>,
    /// Intake and distribution parameters.
    #[serde(default)]
    pub limits: Limits,
    /// Connection budget and timeouts of the operator API (`foundations::serve`).
    #[serde(default)]
    pub serve: ServeLimits,
}

fn yes() -> bool {
    true
}

/// TLS files of the operator API (`[tls]`).
pub use foundations::tls::TlsConfig;

/// One update server (and its mirrors).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerConfig {
    /// `https://host:port`, then its mirrors, tried in order.
    pub urls: Vec<String>,
    /// CA to trust for these URLs (else the web PKI).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// File holding a bearer token for downloads, if the server requires one.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// One key repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRepoConfig {
    /// `https://host:port`.
    pub url: String,
    /// CA to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// OAuth client id of this dispatcher.
    pub client_id: String,
    /// File holding the client secret.
    pub client_secret_file: PathBuf,
    /// kids of the publisher keys whose release keys live here (empty: any).
    #[serde(default)]
    pub publishers: Vec<String>,
}

/// The most install reports a device may be configured to keep
/// (`limits.reports_per_device`): 10,000 reports of at most 8 KiB each stay below 100 MB per
/// device.
pub const MAX_REPORTS_PER_DEVICE: usize = 10_000;

/// Bounds and intervals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds between polls of the update servers (the notification stream triggers a
    /// poll at once).
    pub poll_interval_secs: u64,
    /// Largest envelope accepted.
    pub max_envelope_bytes: usize,
    /// Largest encrypted blob accepted.
    pub max_blob_bytes: u64,
    /// Devices updated at once, over all rollouts.
    pub max_concurrent_pushes: usize,
    /// Seconds a push to one device may take before it counts as a transient failure. A
    /// safety net: an unreachable device fails sooner, when CoAP gives up retransmitting
    /// (about 45 s); a slow or lossy link can need minutes for a large blob.
    pub push_timeout_secs: u64,
    /// Largest operator API request body (uploads excepted).
    pub max_body_bytes: usize,
    /// Longest time one poll of one update server (and its mirrors) may take; the other
    /// servers are polled at the same time, so a slow one delays only itself.
    pub source_timeout_secs: u64,
    /// Seconds devices wait between check-ins.
    pub checkin_interval_secs: u32,
    /// Install reports kept per device, the newest (older ones are dropped; the device's
    /// record keeps counts of every report received and dropped).
    pub reports_per_device: usize,
    /// Reports one device may send over the uplink at once (a token bucket per uplink
    /// context); beyond it, `report_interval_secs` between reports. Reports above the rate
    /// are answered 4.29 (RFC 8516) with Max-Age and neither decoded nor stored.
    pub report_burst: u32,
    /// Seconds per report a device earns back after its burst.
    pub report_interval_secs: u64,
    /// Free space (MiB) the file system of `data_dir` must keep for the audit log: below
    /// it, operations that must be audited are refused (`500 cannot-audit`), as when an
    /// audit append fails. 0 turns the check off (append failures still refuse).
    pub audit_min_free_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            poll_interval_secs: 30,
            max_envelope_bytes: 1 << 20,
            max_blob_bytes: 256 << 20,
            max_concurrent_pushes: 64,
            push_timeout_secs: 900,
            max_body_bytes: 4 << 20,
            source_timeout_secs: 600,
            checkin_interval_secs: 60,
            reports_per_device: 100,
            report_burst: 10,
            report_interval_secs: 10,
            audit_min_free_mib: 64,
        }
    }
}

impl foundations::config::ServiceConfig for Config {
    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| foundations::config::resolve(base, p);
        abs(&mut self.data_dir);
        abs(&mut self.policy_file);
        abs(&mut self.trust_file);
        abs(&mut self.operators_file);
        abs(&mut self.approval_key_file);
        abs(&mut self.audit_key_file);
        self.tls.resolve(base);
        for u in &mut self.update_servers {
            for p in [u.ca_file.as_mut(), u.token_file.as_mut()]
                .into_iter()
                .flatten()
            {
                abs(p);
            }
        }
        for k in &mut self.key_repos {
            if let Some(p) = k.ca_file.as_mut() {
                abs(p);
            }
            abs(&mut k.client_secret_file);
        }
    }

    fn check(&mut self) -> Result<(), String> {
        if self.update_servers.iter().any(|u| u.urls.is_empty()) {
            return Err("update_server.urls must name at least one URL".into());
        }
        if !self.coap_uri.starts_with("coap://") {
            return Err("coap_uri must be a coap:// URI".into());
        }
        if self.limits.source_timeout_secs == 0 {
            return Err("limits.source_timeout_secs must be positive".into());
        }
        if !(1..=MAX_REPORTS_PER_DEVICE).contains(&self.limits.reports_per_device) {
            return Err(format!(
                "limits.reports_per_device must be 1 to {MAX_REPORTS_PER_DEVICE}"
            ));
        }
        if self.limits.report_burst == 0 || self.limits.report_interval_secs == 0 {
            return Err(
                "limits.report_burst and limits.report_interval_secs must be positive".into(),
            );
        }
        self.serve.validate()
    }
}

impl Config {
    /// Reads and validates the TOML file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Ok(foundations::config::load_service(path)?)
    }

    /// Writes the configuration (used by `init` and the demo).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        Ok(foundations::config::save_toml(path, "", self, 0o644)?)
    }
}
