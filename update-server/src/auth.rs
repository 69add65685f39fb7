//! Bearer-token validation (RFC 6750) for ES256 JWT access tokens (RFC 9068) from the
//! configured issuers: a key repository's built-in authorization server or any external
//! issuer with a JWKS. The JWT checks themselves are `key_repo::jwt` (algorithm pinned to
//! ES256, `typ` at+jwt, no `crit`, then audience, expiry, not-before, issued-at, lifetime).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use key_repo::jwt::{self, JwtError, KeySet};
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::config::{AuthConfig, IssuerConfig};

const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Unknown `kid`s trigger a JWKS refresh at most this often per issuer.
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);
const CACHE_CAP: usize = 10_000;

/// The caller, after its token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `VENDOR/CLASS` products granted; `None` when the issuer has no products claim.
    pub products: Option<Vec<String>>,
    pub exp: u64,
}

impl Principal {
    pub fn has_any_scope(&self, wanted: &[String]) -> bool {
        self.scopes.iter().any(|s| wanted.contains(s))
    }

    /// Whether the token allows vendor/class (no products claim configured: yes).
    pub fn grants_product(&self, product: &str) -> bool {
        match &self.products {
            None => true,
            Some(p) => p.iter().any(|x| x == product || x == "*"),
        }
    }
}

#[derive(Debug)]
struct Issuer {
    cfg: IssuerConfig,
    keys: RwLock<KeySet>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    leeway: u64,
    max_lifetime: u64,
    cache: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    http: reqwest::Client,
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
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        let mut issuers = Vec::new();
        for i in &cfg.issuers {
            if let Some(ca) = &i.ca_file {
                let pem = std::fs::read(ca).map_err(|e| Error::io(ca, e))?;
                for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })? {
                    b = b.add_root_certificate(c);
                }
            }
            if let Some(u) = &i.jwks_url
                && !u.starts_with("https://")
                && !loopback_http(u)
            {
                return Err(Error::Config {
                    path: "auth.issuers".into(),
                    reason: format!("jwks_url {u} must be https (http only on loopback)"),
                });
            }
            let keys = match &i.jwks_file {
                Some(p) => {
                    let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                    let jwks: jwt::Jwks =
                        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                            path: p.display().to_string(),
                            reason: e.to_string(),
                        })?;
                    KeySet::from_jwks(&jwks)
                }
                None => KeySet::default(),
            };
            issuers.push(Issuer {
                cfg: i.clone(),
                keys: RwLock::new(keys),
                last_fetch: tokio::sync::Mutex::new(None),
            });
        }
        Ok(Authenticator {
            issuers,
            leeway: cfg.leeway_secs,
            max_lifetime: cfg.max_lifetime_secs,
            cache: RwLock::new(HashMap::new()),
            http: b.build().map_err(|e| Error::Tls(e.to_string()))?,
        })
    }

    /// Fetches every issuer's JWKS (best effort, at start-up).
    pub async fn prefetch(&self) {
        for i in &self.issuers {
            if let Err(e) = self.refresh(i, true).await {
                tracing::warn!(issuer = %i.cfg.issuer, error = %e, "JWKS fetch failed; will retry on demand");
            }
        }
    }

    async fn refresh(&self, i: &Issuer, force: bool) -> Result<(), String> {
        let Some(url) = &i.cfg.jwks_url else {
            return Ok(());
        };
        let mut last = i.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + c.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS at {url} too large"));
            }
            body.extend_from_slice(&c);
        }
        let jwks: jwt::Jwks = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        let set = KeySet::from_jwks(&jwks);
        if set.is_empty() {
            return Err(format!("JWKS at {url} has no ES256 P-256 key"));
        }
        if let Ok(mut k) = i.keys.write() {
            *k = set;
        }
        Ok(())
    }

    /// Validates a bearer token and returns the caller.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Principal>, JwtError> {
        let ck: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = self.cache.read().ok().and_then(|c| c.get(&ck).cloned())
            && now < p.exp.saturating_add(self.leeway)
        {
            return Ok(p);
        }
        let p = Arc::new(self.verify(token, now).await?);
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_CAP {
                let leeway = self.leeway;
                c.retain(|_, p| now < p.exp.saturating_add(leeway));
                if c.len() >= CACHE_CAP {
                    c.clear();
                }
            }
            c.insert(ck, p.clone());
        }
        Ok(p)
    }

    async fn verify(&self, token: &str, now: u64) -> Result<Principal, JwtError> {
        let unverified = jwt::parse(token)?;
        let iss = unverified.claims.iss.clone();
        let i = self
            .issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or(JwtError::UnknownIssuer(iss))?;
        let kid = unverified.header.kid.clone();
        let known = i
            .keys
            .read()
            .map(|k| k.has_kid(kid.as_deref()))
            .unwrap_or(false);
        if !known && let Err(e) = self.refresh(i, false).await {
            tracing::warn!(issuer = %i.cfg.issuer, error = %e, "JWKS refresh failed");
        }
        let keys = i.keys.read().map(|k| k.clone()).unwrap_or_default();
        let claims = unverified.verify_signature(&keys)?;
        jwt::check_claims(
            &claims,
            &i.cfg.audience,
            now,
            self.leeway,
            self.max_lifetime,
        )?;
        let client_id = claims
            .client_id
            .clone()
            .or_else(|| claims.sub.clone())
            .ok_or(JwtError::MissingClaim("client_id"))?;
        let scopes = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .take(32)
            .map(str::to_string)
            .collect();
        let products = if i.cfg.products_claim.is_empty() {
            None
        } else {
            match claims.extra.get(&i.cfg.products_claim) {
                None => Some(Vec::new()),
                Some(serde_json::Value::Array(a)) => Some(
                    a.iter()
                        .take(256)
                        .filter_map(|v| v.as_str())
                        .filter_map(|s| {
                            if s == "*" {
                                Some(s.to_string())
                            } else {
                                key_repo::util::normalize_product(s)
                            }
                        })
                        .collect(),
                ),
                Some(_) => return Err(JwtError::Malformed("products claim")),
            }
        };
        Ok(Principal {
            issuer: claims.iss,
            client_id,
            scopes,
            products,
            exp: claims.exp,
        })
    }
}
