//! Bearer-token validation (RFC 6750) for ES256 JWT access tokens (RFC 9068) from the
//! configured issuers: a key repository's built-in authorization server or any external
//! issuer with a JWKS. The checks are `foundations::token` (on `jsonwebtoken`): algorithm
//! pinned to ES256, `typ` at+jwt, no `crit`, audience, expiry, not-before, issued-at and the
//! longest lifetime.

use std::sync::Arc;

use foundations::token::{IssuerSpec, KeySource, TimeRules, TokenError, Verifier};

use crate::Error;
use crate::config::AuthConfig;

pub use foundations::token::Principal;

/// Verified tokens are remembered (by SHA-256) until they expire, up to this many.
const CACHE_CAP: usize = 10_000;

/// The issuers of the configuration and their keys.
#[derive(Debug)]
pub struct Authenticator {
    verifier: Verifier,
}

fn loopback_http(url: &str) -> bool {
    [
        "http://127.",
        "http://localhost:",
        "http://localhost/",
        "http://[::1]",
    ]
    .iter()
    .any(|p| url.starts_with(p))
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, Error> {
        let mut issuers = Vec::new();
        let mut cas = Vec::new();
        for i in &cfg.issuers {
            cas.extend(i.ca_file.clone());
            let keys = match (&i.jwks_url, &i.jwks_file) {
                (Some(u), _) => {
                    if !u.starts_with("https://") && !loopback_http(u) {
                        return Err(Error::Config {
                            path: "auth.issuers".into(),
                            reason: format!("jwks_url {u} must be https (http only on loopback)"),
                        });
                    }
                    KeySource::JwksUrl(u.clone())
                }
                (None, Some(p)) => KeySource::JwksFile(p.clone()),
                (None, None) => KeySource::Static(Default::default()),
            };
            issuers.push(IssuerSpec {
                issuer: i.issuer.clone(),
                audience: i.audience.clone(),
                keys,
                // "" disables the product check for this issuer.
                products_claim: Some(i.products_claim.clone()).filter(|c| !c.is_empty()),
            });
        }
        let rules = TimeRules {
            leeway: cfg.leeway_secs,
            max_lifetime: cfg.max_lifetime_secs,
        };
        Ok(Authenticator {
            verifier: Verifier::new(issuers, rules, CACHE_CAP, &cas)?,
        })
    }

    /// Fetches every issuer's JWKS (best effort, at start-up).
    pub async fn prefetch(&self) {
        self.verifier.prefetch().await;
    }

    /// Validates a bearer token and returns the caller.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Principal>, TokenError> {
        self.verifier.authenticate(token, now).await
    }
}
