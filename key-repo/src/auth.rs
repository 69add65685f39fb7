//! Access-token validation (resource server side) and issuance (built-in authorization
//! server).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::clients::ClientRecord;
use crate::config::{Config, ExternalIssuer};
use crate::jwt::{self, Audience, Claims, JwtError, KeySet, TokenSigner};
use crate::model::TokenResponse;

/// Largest JWKS document fetched from an external issuer.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Unknown `kid`s trigger a JWKS refresh at most this often (per issuer).
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);

/// Who is calling, after the token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub products: Vec<String>,
    pub exp: u64,
    nbf: u64,
}

impl Principal {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }

    pub fn grants_product(&self, p: &str) -> bool {
        self.products.iter().any(|x| x == p || x == "*")
    }
}

#[derive(Debug)]
struct External {
    cfg: ExternalIssuer,
    keys: RwLock<KeySet>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Validates bearer tokens and remembers verified ones until they expire.
#[derive(Debug)]
pub struct Authenticator {
    issuer: String,
    audience: String,
    builtin: KeySet,
    external: Vec<External>,
    leeway: u64,
    max_lifetime: u64,
    cache_cap: usize,
    cache: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    http: reqwest::Client,
}

impl Authenticator {
    pub fn new(cfg: &Config, signer: &TokenSigner) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        let mut external = Vec::new();
        for e in &cfg.external_issuers {
            if let Some(ca) = &e.ca_file {
                let pem = std::fs::read(ca).map_err(|err| Error::io(ca, err))?;
                let cert = reqwest::Certificate::from_pem(&pem).map_err(|_| Error::Config {
                    path: ca.display().to_string(),
                    reason: "not a PEM certificate".into(),
                })?;
                builder = builder.add_root_certificate(cert);
            }
            let keys = match &e.jwks_file {
                Some(p) => {
                    let b = std::fs::read(p).map_err(|err| Error::io(p, err))?;
                    let jwks: jwt::Jwks =
                        serde_json::from_slice(&b).map_err(|err| Error::Config {
                            path: p.display().to_string(),
                            reason: err.to_string(),
                        })?;
                    KeySet::from_jwks(&jwks)
                }
                None => KeySet::default(),
            };
            external.push(External {
                cfg: e.clone(),
                keys: RwLock::new(keys),
                last_fetch: tokio::sync::Mutex::new(None),
            });
        }
        Ok(Authenticator {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            builtin: signer.key_set(),
            external,
            leeway: cfg.tokens.leeway_secs,
            max_lifetime: cfg.tokens.max_lifetime_secs,
            cache_cap: cfg.tokens.cache_entries,
            cache: RwLock::new(HashMap::new()),
            http: builder.build().map_err(|e| Error::Tls(e.to_string()))?,
        })
    }

    /// Fetches the JWKS of every external issuer that has a URL (best effort, at start-up).
    pub async fn prefetch(&self) {
        for e in &self.external {
            if let Err(err) = self.refresh(e, true).await {
                tracing::warn!(issuer = %e.cfg.issuer, error = %err, "JWKS fetch failed; will retry on demand");
            }
        }
    }

    async fn refresh(&self, e: &External, force: bool) -> Result<(), String> {
        let Some(url) = &e.cfg.jwks_url else {
            return Ok(());
        };
        let mut last = e.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|err| err.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS at {url} larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let jwks: jwt::Jwks =
            serde_json::from_slice(&body).map_err(|err| format!("JWKS at {url}: {err}"))?;
        let set = KeySet::from_jwks(&jwks);
        if set.is_empty() {
            return Err(format!("JWKS at {url} has no ES256 P-256 keys"));
        }
        if let Ok(mut k) = e.keys.write() {
            *k = set;
        }
        Ok(())
    }

    fn cache_key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Validates a bearer token (RFC 6750) and returns the caller.
    pub async fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Principal>, JwtError> {
        let ck = Self::cache_key(token);
        if let Some(p) = self.cache.read().ok().and_then(|c| c.get(&ck).cloned()) {
            // The cached entry passed every check below; only time can invalidate it.
            if now < p.exp.saturating_add(self.leeway) && p.nbf <= now.saturating_add(self.leeway) {
                return Ok(p);
            }
        }
        let principal = Arc::new(self.verify_uncached(token, now).await?);
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= self.cache_cap {
                let leeway = self.leeway;
                c.retain(|_, p| now < p.exp.saturating_add(leeway));
                if c.len() >= self.cache_cap {
                    c.clear();
                }
            }
            c.insert(ck, principal.clone());
        }
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<Principal, JwtError> {
        let unverified = jwt::parse(token)?;
        let iss = unverified.claims.iss.clone();
        let (claims, audience, products_claim) = if iss == self.issuer {
            let c = unverified.verify_signature(&self.builtin)?;
            (c, self.audience.as_str(), "products")
        } else if let Some(e) = self.external.iter().find(|e| e.cfg.issuer == iss) {
            let kid = unverified.header.kid.clone();
            let known = e
                .keys
                .read()
                .map(|k| k.has_kid(kid.as_deref()))
                .unwrap_or(false);
            if !known && let Err(err) = self.refresh(e, false).await {
                tracing::warn!(issuer = %iss, error = %err, "JWKS refresh failed");
            }
            let keys = e.keys.read().map(|k| k.clone()).unwrap_or_default();
            let c = unverified.verify_signature(&keys)?;
            (c, e.cfg.audience.as_str(), e.cfg.products_claim.as_str())
        } else {
            return Err(JwtError::UnknownIssuer(iss));
        };
        jwt::check_claims(&claims, audience, now, self.leeway, self.max_lifetime)?;
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
        let products = match claims.extra.get(products_claim) {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .take(256)
                .filter_map(|v| v.as_str())
                .filter_map(|s| {
                    if s == "*" {
                        Some(s.to_string())
                    } else {
                        crate::util::normalize_product(s)
                    }
                })
                .collect(),
            Some(_) => return Err(JwtError::Malformed("products claim")),
        };
        Ok(Principal {
            issuer: claims.iss,
            client_id,
            scopes,
            products,
            exp: claims.exp,
            nbf: claims.nbf.unwrap_or(claims.iat),
        })
    }
}

/// Issues an access token for an authenticated client (RFC 6749 §4.4, RFC 9068).
/// `requested` is the `scope` parameter; `None` grants every scope of the client's role.
pub fn issue_token(
    cfg: &Config,
    signer: &TokenSigner,
    client: &ClientRecord,
    requested: Option<&str>,
    now: u64,
) -> Result<Result<TokenResponse, &'static str>, Error> {
    let allowed = client.role.scopes();
    let scopes: Vec<&str> = match requested {
        None => allowed.to_vec(),
        Some(r) => {
            let mut v = Vec::new();
            for s in r.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.contains(&s) {
                    return Ok(Err("invalid_scope"));
                }
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            if v.is_empty() { allowed.to_vec() } else { v }
        }
    };
    let scope = scopes.join(" ");
    let mut extra = serde_json::Map::new();
    extra.insert("products".into(), serde_json::json!(client.products));
    extra.insert("role".into(), serde_json::json!(client.role));
    let claims = Claims {
        iss: cfg.issuer.clone(),
        sub: Some(client.client_id.clone()),
        aud: Audience::One(cfg.audience.clone()),
        exp: now + cfg.tokens.lifetime_secs,
        iat: now,
        nbf: Some(now),
        jti: Some(hex::encode(crate::util::random_bytes::<16>()?)),
        client_id: Some(client.client_id.clone()),
        scope: Some(scope.clone()),
        extra,
    };
    Ok(Ok(TokenResponse {
        access_token: signer.sign(&claims)?,
        token_type: "Bearer".into(),
        expires_in: cfg.tokens.lifetime_secs,
        scope,
    }))
}

/// `client_assertion_type` for JWT client authentication (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest lifetime accepted for a client assertion.
const MAX_ASSERTION_LIFETIME: u64 = 300;
/// Most remembered assertion ids; when full of unexpired ids, assertions are refused.
const MAX_REPLAY_ENTRIES: usize = 100_000;

/// Remembers the `jti` of accepted client assertions until they expire (replay defence,
/// RFC 7523 §3 item 7).
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: std::sync::Mutex<HashMap<String, u64>>,
}

impl ReplayCache {
    fn insert(&self, key: String, exp: u64, now: u64) -> Result<(), &'static str> {
        let mut m = self.seen.lock().map_err(|_| "replay cache poisoned")?;
        if m.len() >= MAX_REPLAY_ENTRIES {
            m.retain(|_, e| *e >= now);
            if m.len() >= MAX_REPLAY_ENTRIES {
                return Err("replay cache full");
            }
        }
        if m.get(&key).is_some_and(|e| *e >= now) {
            return Err("assertion replayed");
        }
        m.insert(key, exp);
        Ok(())
    }
}

/// Authenticates a client by a `private_key_jwt` assertion (RFC 7523 §2.2 and §3; OpenID
/// Connect Core §9): ES256 with the key registered for the client, `iss` = `sub` = client id,
/// `aud` the token endpoint (or the issuer), short-lived, `jti` never seen before.
pub fn verify_client_assertion(
    cfg: &Config,
    clients: &crate::clients::Registry,
    replay: &ReplayCache,
    assertion: &str,
    client_id_param: Option<&str>,
    now: u64,
) -> Result<ClientRecord, String> {
    let u = jwt::parse_kind(assertion, jwt::Kind::ClientAssertion).map_err(|e| e.to_string())?;
    let sub = u.claims.sub.clone().ok_or("assertion without sub")?;
    if u.claims.iss != sub {
        return Err("assertion iss differs from sub".into());
    }
    if client_id_param.is_some_and(|c| c != sub) {
        return Err("client_id differs from assertion sub".into());
    }
    let client = clients
        .get(&sub)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("unknown client {sub:?}"))?;
    let mut jwk = client
        .jwk
        .clone()
        .ok_or_else(|| format!("client {sub:?} has no registered key"))?;
    // The client has exactly one key: match it whatever kid the assertion names.
    jwk.kid = u.header.kid.clone();
    let claims = u
        .verify_signature(&KeySet::from_jwks(&jwt::Jwks { keys: vec![jwk] }))
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{}/oauth/token", cfg.issuer);
    let aud = if claims.aud.contains(&endpoint) {
        endpoint
    } else {
        cfg.issuer.clone()
    };
    jwt::check_claims(
        &claims,
        &aud,
        now,
        cfg.tokens.leeway_secs,
        MAX_ASSERTION_LIFETIME,
    )
    .map_err(|e| e.to_string())?;
    let jti = claims.jti.ok_or("assertion without jti")?;
    if jti.is_empty() || jti.len() > 256 {
        return Err("assertion jti length".into());
    }
    replay.insert(
        format!("{sub}\0{jti}"),
        claims.exp.saturating_add(cfg.tokens.leeway_secs),
        now,
    )?;
    Ok(client)
}
