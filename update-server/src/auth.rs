//! Bearer-token validation (RFC 6750) for ES256 JWT access tokens (RFC 9068) from the
//! configured issuers: a key repository's built-in authorization server or any external
//! issuer with a JWKS. The checks are `foundations::token` (on `jsonwebtoken`): algorithm
//! pinned to ES256, `typ` at+jwt, no `crit`, audience, expiry, not-before, issued-at and the
//! longest lifetime.

use std::sync::Arc;

use foundations::token::{TimeRules, TokenError, Verifier};

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

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, Error> {
        // (Configurations are validated when loaded: one key source, https JWKS URLs.)
        let issuers = cfg.issuers.iter().map(|i| i.spec()).collect();
        let cas: Vec<_> = cfg
            .issuers
            .iter()
            .filter_map(|i| i.ca_file.clone())
            .collect();
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
