//! The resource-server side: which issuers are trusted, their keys (static, from a file, or
//! fetched from a JWKS URL and refreshed on an unknown `kid`), and a cache of verified tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::{Jwks, KeySet, Kind, SharedKeys, TimeRules, TokenError};
use crate::Error;

/// Largest JWKS document fetched.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// An unknown `kid` triggers a JWKS refresh at most this often per issuer.
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);
/// Time allowed for a JWKS fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Known keys (a built-in authorization server's own).
    Static(KeySet),
    /// A JWKS file, read once.
    JwksFile(PathBuf),
    /// A JWKS URL (https, or http on loopback), fetched at start and when a token names an
    /// unknown `kid` (at most every 30 s).
    JwksUrl(String),
}

/// A trusted external issuer as configured (`[[external_issuers]]` of the key repository,
/// `[[auth.issuers]]` of the update server).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` of its tokens.
    pub issuer: String,
    /// `aud` its tokens must carry for this service.
    pub audience: String,
    /// JWKS URL (https, or http on loopback only).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or a JWKS file (static keys).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Extra CA (PEM) to trust when fetching `jwks_url`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Claim listing the `VENDOR/CLASS` products granted (`""`: no product restriction,
    /// where the service allows that).
    #[serde(default = "default_products_claim")]
    pub products_claim: String,
}

fn default_products_claim() -> String {
    "products".into()
}

impl IssuerConfig {
    /// Makes the file paths absolute against `base`.
    pub fn resolve(&mut self, base: &std::path::Path) {
        for p in [self.jwks_file.as_mut(), self.ca_file.as_mut()]
            .into_iter()
            .flatten()
        {
            crate::config::resolve(base, p);
        }
    }

    /// Exactly one key source; a JWKS URL over https (http only to loopback: tests, a
    /// co-located identity provider).
    pub fn validate(&self) -> Result<(), String> {
        match (&self.jwks_url, &self.jwks_file) {
            (Some(u), None) => check_jwks_url(u),
            (None, Some(_)) => Ok(()),
            _ => Err(format!(
                "issuer {}: set exactly one of jwks_url, jwks_file",
                self.issuer
            )),
        }
    }

    /// What the verifier needs.
    pub fn spec(&self) -> IssuerSpec {
        let keys = match (&self.jwks_url, &self.jwks_file) {
            (Some(u), _) => KeySource::JwksUrl(u.clone()),
            (None, Some(p)) => KeySource::JwksFile(p.clone()),
            (None, None) => KeySource::Static(KeySet::default()),
        };
        IssuerSpec {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            keys,
            products_claim: Some(self.products_claim.clone()).filter(|c| !c.is_empty()),
        }
    }
}

/// JWKS must come over https; plain http is allowed only to a loopback address.
fn check_jwks_url(u: &str) -> Result<(), String> {
    if u.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = u.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(());
        }
    }
    Err(format!(
        "jwks_url {u:?} must be https (http only on loopback)"
    ))
}

/// One trusted issuer.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    /// Exact `iss` of its tokens.
    pub issuer: String,
    /// `aud` its tokens must carry for this service.
    pub audience: String,
    /// Its keys.
    pub keys: KeySource,
    /// Claim listing the `VENDOR/CLASS` products granted; `None`: no product restriction.
    pub products_claim: Option<String>,
}

/// The caller, after its token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Issuer of the token.
    pub issuer: String,
    /// `client_id` (or `sub`).
    pub client_id: String,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Products granted (normalised); `None` when the issuer has no products claim.
    pub products: Option<Vec<String>>,
    /// Expiry.
    pub exp: u64,
    /// Not before (or issued at).
    pub nbf: u64,
    /// Issued at: a service that can withdraw a client refuses its tokens issued before
    /// the withdrawal (the key repository's disabled clients).
    pub iat: u64,
}

impl Principal {
    /// Whether the token carries scope `s`.
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }

    /// Whether the token carries any of `wanted`.
    pub fn has_any_scope<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        wanted.iter().any(|w| self.has_scope(w.as_ref()))
    }

    /// Whether the token grants `product` (`*` grants all; no products claim: yes).
    pub fn grants_product(&self, product: &str) -> bool {
        match &self.products {
            None => true,
            Some(p) => p.iter().any(|x| x == product || x == "*"),
        }
    }
}

#[derive(Debug)]
struct Issuer {
    spec: IssuerSpec,
    keys: RwLock<SharedKeys>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Validates bearer tokens (RFC 6750) from the configured issuers and remembers verified
/// ones (by SHA-256) until they expire.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<Issuer>,
    rules: TimeRules,
    cache_cap: usize,
    cache: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    http: reqwest::Client,
}

impl Verifier {
    /// Reads JWKS files and prepares the JWKS client (trusting the web PKI plus `extra_ca`
    /// PEM bundles).
    pub fn new(
        issuers: Vec<IssuerSpec>,
        rules: TimeRules,
        cache_entries: usize,
        extra_ca: &[PathBuf],
    ) -> Result<Verifier, Error> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        for ca in extra_ca {
            let pem = crate::fs::read_bounded(ca, 1 << 20)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                path: ca.display().to_string(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let mut out = Vec::new();
        for spec in issuers {
            let keys = match &spec.keys {
                KeySource::Static(k) => k.clone(),
                KeySource::JwksFile(p) => {
                    let bytes = crate::fs::read_bounded(p, MAX_JWKS_BYTES as u64)?;
                    let jwks: Jwks = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    KeySet::from_jwks(&jwks)
                }
                KeySource::JwksUrl(_) => KeySet::default(),
            };
            out.push(Issuer {
                spec,
                keys: RwLock::new(Arc::new(keys)),
                last_fetch: tokio::sync::Mutex::new(None),
            });
        }
        Ok(Verifier {
            issuers: out,
            rules,
            cache_cap: cache_entries.max(1),
            cache: RwLock::new(HashMap::new()),
            http: b.build().map_err(|e| Error::Tls(e.to_string()))?,
        })
    }

    /// Fetches the JWKS of every issuer that has a URL (best effort, at start-up).
    pub async fn prefetch(&self) {
        for i in &self.issuers {
            if let Err(e) = self.refresh(i, true).await {
                tracing::warn!(issuer = %i.spec.issuer, error = %e, "JWKS fetch failed; will retry on demand");
            }
        }
    }

    async fn refresh(&self, i: &Issuer, force: bool) -> Result<(), String> {
        let KeySource::JwksUrl(url) = &i.spec.keys else {
            return Ok(());
        };
        let mut last = i.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let body = crate::client::read_capped(resp, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("JWKS at {url}: {e}"))?;
        let jwks: Jwks =
            serde_json::from_slice(&body).map_err(|e| format!("JWKS at {url}: {e}"))?;
        let set = KeySet::from_jwks(&jwks);
        if set.is_empty() {
            return Err(format!("JWKS at {url} has no ES256 P-256 keys"));
        }
        if let Ok(mut k) = i.keys.write() {
            *k = Arc::new(set);
        }
        Ok(())
    }

    /// Validates a bearer token at `now` and returns the caller.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Principal>, TokenError> {
        let ck: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let leeway = self.rules.leeway;
        if let Some(p) = self.cache.read().ok().and_then(|c| c.get(&ck).cloned())
            // The cached entry passed every check; only time can invalidate it.
            && now < p.exp.saturating_add(leeway)
            && p.nbf <= now.saturating_add(leeway)
        {
            return Ok(p);
        }
        let principal = Arc::new(self.verify_uncached(token, now).await?);
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= self.cache_cap {
                c.retain(|_, p| now < p.exp.saturating_add(leeway));
                if c.len() >= self.cache_cap {
                    c.clear();
                }
            }
            c.insert(ck, principal.clone());
        }
        Ok(principal)
    }

    /// Drops a token from the cache of verified tokens (its client was withdrawn: the next
    /// use verifies it again, and the service's own checks refuse it again).
    pub fn forget(&self, token: &str) {
        let ck: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(mut c) = self.cache.write() {
            c.remove(&ck);
        }
    }

    /// Tokens in the cache of verified tokens.
    pub fn cached(&self) -> usize {
        self.cache.read().map(|c| c.len()).unwrap_or(0)
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<Principal, TokenError> {
        let u = super::peek(token, Kind::AccessToken)?;
        let i = self
            .issuers
            .iter()
            .find(|i| i.spec.issuer == u.iss)
            .ok_or(TokenError::UnknownIssuer(u.iss))?;
        let known = i
            .keys
            .read()
            .map(|k| k.has_kid(u.kid.as_deref()))
            .unwrap_or(false);
        if !known && let Err(e) = self.refresh(i, false).await {
            tracing::warn!(issuer = %i.spec.issuer, error = %e, "JWKS refresh failed");
        }
        let keys = i.keys.read().map(|k| k.clone()).unwrap_or_default();
        let claims = super::verify(
            token,
            Kind::AccessToken,
            &keys,
            &i.spec.audience,
            now,
            self.rules,
        )?;
        let client_id = claims
            .client_id
            .clone()
            .or_else(|| claims.sub.clone())
            .ok_or(TokenError::MissingClaim("client_id"))?;
        let scopes = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .take(32)
            .map(str::to_string)
            .collect();
        let products = match &i.spec.products_claim {
            None => None,
            Some(name) => Some(products(claims.extra.get(name))?),
        };
        Ok(Principal {
            issuer: claims.iss,
            client_id,
            scopes,
            products,
            exp: claims.exp,
            nbf: claims.nbf.unwrap_or(claims.iat),
            iat: claims.iat,
        })
    }
}

/// The products claim: an array of `VENDOR/CLASS` (normalised) or `*`; absent: none.
fn products(v: Option<&serde_json::Value>) -> Result<Vec<String>, TokenError> {
    match v {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(a)) => Ok(a
            .iter()
            .take(256)
            .filter_map(|v| v.as_str())
            .filter_map(|s| {
                if s == "*" {
                    Some(s.to_string())
                } else {
                    crate::normalize_product(s)
                }
            })
            .collect()),
        Some(_) => Err(TokenError::Malformed("products claim")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Audience, Claims, TokenSigner};
    use super::*;

    #[test]
    fn jwks_url_policy() {
        assert!(check_jwks_url("https://idp.example/jwks").is_ok());
        assert!(check_jwks_url("http://127.0.0.1:3000/jwks").is_ok());
        assert!(check_jwks_url("http://idp.example/jwks").is_err());
        assert!(check_jwks_url("http://127.0.0.1.evil.example/jwks").is_err());
    }

    #[tokio::test]
    async fn issuers_products_and_cache() {
        let s = TokenSigner::generate().unwrap();
        let v = Verifier::new(
            vec![IssuerSpec {
                issuer: "https://as".into(),
                audience: "https://rs".into(),
                keys: KeySource::Static(s.key_set()),
                products_claim: Some("products".into()),
            }],
            TimeRules {
                leeway: 30,
                max_lifetime: 3600,
            },
            2,
            &[],
        )
        .unwrap();
        let now = 1_700_000_000;
        let mut c = Claims {
            iss: "https://as".into(),
            sub: Some("c".into()),
            aud: Audience::One("https://rs".into()),
            exp: now + 60,
            iat: now,
            nbf: None,
            jti: None,
            client_id: None,
            scope: Some("a b".into()),
            extra: Default::default(),
        };
        c.extra.insert(
            "products".into(),
            serde_json::json!([
                "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE/1492af14-2569-5e48-bf42-9b2d51f2ab45",
                "junk"
            ]),
        );
        let tok = s.sign(&c).unwrap();
        let p = v.authenticate(&tok, now).await.unwrap();
        assert_eq!(p.client_id, "c");
        assert!(p.has_scope("b") && !p.has_scope("c"));
        assert_eq!(p.products.as_ref().unwrap().len(), 1);
        assert!(p.grants_product(
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
        ));
        // From the cache while valid; refused once expired, cached or not.
        assert!(v.authenticate(&tok, now + 10).await.is_ok());
        assert_eq!((p.iat, v.cached()), (now, 1));
        v.forget(&tok);
        assert_eq!(v.cached(), 0);
        assert!(v.authenticate(&tok, now + 10).await.is_ok());
        assert_eq!(
            v.authenticate(&tok, now + 90).await.unwrap_err(),
            TokenError::Expired
        );
        c.iss = "https://other".into();
        let tok = s.sign(&c).unwrap();
        assert!(matches!(
            v.authenticate(&tok, now).await,
            Err(TokenError::UnknownIssuer(_))
        ));
    }
}
