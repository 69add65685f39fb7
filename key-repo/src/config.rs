//! Service configuration (`key-repo.toml`). Relative paths are resolved against the
//! directory of the configuration file. Secrets live in files named here (or by the
//! `KEY_REPO_MASTER_KEY_FILE` / `KEY_REPO_TOKEN_SIGNING_KEY_FILE` environment variables),
//! never in the TOML itself.

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
    /// Issuer identifier of the built-in authorization server (`iss` of its tokens).
    pub issuer: String,
    /// Audience the resource server requires in every access token (`aud`).
    pub audience: String,
    /// sled database directory.
    pub data_dir: PathBuf,
    /// Registered OAuth clients (argon2 hashes only); edited by `key-repo clients`.
    pub clients_file: PathBuf,
    /// 32-byte at-rest master key, hex, mode 0600.
    pub master_key_file: PathBuf,
    /// ES256 token-signing key, PKCS#8 PEM, mode 0600.
    pub token_signing_key_file: PathBuf,
    pub tls: TlsConfig,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Connection budget and timeouts of the TLS listener (`foundations::serve`).
    #[serde(default)]
    pub serve: ServeLimits,
    /// How refusals nobody authenticated answers for are audited.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Issuers other than the built-in one whose access tokens are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_issuers: Vec<ExternalIssuer>,
}

/// The `[tls]` table: certificate chain, key, and the CA for clients.
pub use foundations::tls::TlsConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Lifetime of tokens issued by the built-in server.
    pub lifetime_secs: u64,
    /// Clock skew tolerated on exp/nbf/iat.
    pub leeway_secs: u64,
    /// Tokens whose exp - iat exceeds this are rejected (bounds the damage of a leak).
    pub max_lifetime_secs: u64,
    /// Verified tokens remembered (by SHA-256 of the token) until they expire.
    pub cache_entries: usize,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            lifetime_secs: 300,
            leeway_secs: 30,
            max_lifetime_secs: 3600,
            cache_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    /// Simultaneous TLS connections. Older configuration files have it here; it overrides
    /// `serve.max_connections` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Requests processed at once across all connections.
    pub max_in_flight: usize,
    /// Token endpoint: bucket size and refill rate per client id.
    pub token_burst_per_client: u32,
    pub token_per_sec_per_client: f64,
    /// Token endpoint: bucket size and refill rate per remote address.
    pub token_burst_per_addr: u32,
    pub token_per_sec_per_addr: f64,
    /// Largest page of `GET /v1/audit`.
    pub audit_page_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024,
            request_timeout_secs: 10,
            max_connections: None,
            max_in_flight: 256,
            token_burst_per_client: 10,
            token_per_sec_per_client: 1.0,
            token_burst_per_addr: 30,
            token_per_sec_per_addr: 5.0,
            audit_page_max: 1000,
        }
    }
}

/// The `[audit]` table. Refusals of requests that no authenticated caller answers for (no
/// token or an invalid one, a withdrawn client's token, failed client authentication at the
/// token endpoint) are grouped per source address (IPv6: per /64) and actor, in windows of
/// `refusal_window_secs` from each group's first refusal: that one is recorded as it is, the
/// others are counted into one summary record at the end of the window. At most
/// `refusal_max_sources` groups are tracked; further sources share one overflow group. So
/// such refusals add at most `2 × (refusal_max_sources + 1)` records per window, whatever
/// the traffic. Authenticated requests are audited one by one, always.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub refusal_window_secs: u64,
    pub refusal_max_sources: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        let d = foundations::audit::RefusalLimits::default();
        AuditConfig {
            refusal_window_secs: d.window_secs,
            refusal_max_sources: d.max_sources,
        }
    }
}

impl AuditConfig {
    pub fn refusal_limits(&self) -> foundations::audit::RefusalLimits {
        foundations::audit::RefusalLimits {
            window_secs: self.refusal_window_secs,
            max_sources: self.refusal_max_sources,
        }
    }
}

/// An external OAuth 2.0 authorization server (a plant's identity provider): exact `iss`,
/// required `aud`, its JWKS (URL or file), an extra CA for the URL, and the claim listing
/// the products it grants (here it must name one).
pub type ExternalIssuer = foundations::token::IssuerConfig;

impl foundations::config::ServiceConfig for Config {
    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| foundations::config::resolve(base, p);
        abs(&mut self.data_dir);
        abs(&mut self.clients_file);
        abs(&mut self.master_key_file);
        abs(&mut self.token_signing_key_file);
        self.tls.resolve(base);
        for ext in &mut self.external_issuers {
            ext.resolve(base);
        }
        foundations::config::env_path("KEY_REPO_MASTER_KEY_FILE", &mut self.master_key_file);
        foundations::config::env_path(
            "KEY_REPO_TOKEN_SIGNING_KEY_FILE",
            &mut self.token_signing_key_file,
        );
    }

    fn check(&mut self) -> Result<(), String> {
        if let Some(n) = self.limits.max_connections {
            self.serve.max_connections = n;
        }
        self.validate()
    }
}

impl Config {
    /// Reads and validates the TOML file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        foundations::config::load_service(path)
    }

    fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err("issuer and audience must not be empty".into());
        }
        let t = &self.tokens;
        if t.lifetime_secs == 0 || t.lifetime_secs > t.max_lifetime_secs {
            return Err("tokens.lifetime_secs must be in 1..=max_lifetime_secs".into());
        }
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_in_flight == 0 || l.request_timeout_secs == 0 {
            return Err("limits must be positive".into());
        }
        self.serve.validate()?;
        self.audit.refusal_limits().validate()?;
        if !(l.token_per_sec_per_client > 0.0 && l.token_per_sec_per_addr > 0.0) {
            return Err("token rate limits must be positive".into());
        }
        for e in &self.external_issuers {
            if e.issuer == self.issuer {
                return Err(format!(
                    "external issuer {} is the built-in issuer",
                    e.issuer
                ));
            }
            e.validate()?;
            if e.products_claim.is_empty() {
                // An issuer here always grants products by a claim (none would mean all).
                return Err(format!(
                    "external issuer {}: products_claim must name a claim",
                    e.issuer
                ));
            }
        }
        Ok(())
    }
}
