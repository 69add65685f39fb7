//! Typed client for the key repository, used by the publisher and the dispatcher.
//!
//! Tokens come from the repository's token endpoint via the `oauth2` crate (client
//! credentials, `client_secret_basic`) and are cached until shortly before they expire.
//! TLS is rustls; a private CA (PEM) can be trusted, in which case *only* that CA is trusted.
//! Every response body is capped (token responses included) and every request has a total
//! deadline (`foundations::client`).

use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse as _, TokenUrl};
use serde::de::DeserializeOwned;

use crate::model::{KeyBody, KeyMeta};

/// Refresh a token this long before it expires (or at 80 % of its lifetime if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Largest response body accepted.
const MAX_RESPONSE: usize = 1024 * 1024;
/// Bounds of every request: 5 s to connect, 15 s in all.
const LIMITS: foundations::client::ClientLimits = foundations::client::ClientLimits {
    connect_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(15),
    read_timeout: Duration::from_secs(15),
    max_error_body: 64 * 1024,
};

pub use foundations::client::ClientError;

/// How to reach and authenticate to a key repository.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://host:port` (no trailing path).
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// PEM CA certificate(s) to trust instead of the public web PKI.
    pub ca_pem: Option<Vec<u8>>,
    /// Scopes to request; empty asks for every scope of the client's role.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A key as read back from the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub product: String,
    /// COSE_Key bytes.
    pub cose_key: Vec<u8>,
}

struct CachedToken {
    secret: String,
    refresh_at: Instant,
}

pub struct KeyRepoClient {
    cfg: ClientConfig,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KeyRepoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRepoClient")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl KeyRepoClient {
    pub fn new(mut cfg: ClientConfig) -> Result<Self, ClientError> {
        cfg.base_url = cfg.base_url.trim_end_matches('/').to_string();
        // RFC 6749 §4.4 token responses and our API never redirect; following one could leak
        // credentials: the client follows none.
        let http =
            foundations::client::https_client(&cfg.base_url, cfg.ca_pem.as_deref(), &LIMITS)?;
        Ok(KeyRepoClient {
            cfg,
            http,
            token: tokio::sync::Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Number of tokens fetched from the token endpoint so far (for tests and metrics).
    pub fn token_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid access token, from the cache or the token endpoint.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.secret.clone());
        }
        let url = format!("{}/oauth/token", self.cfg.base_url);
        let terr = |reason: String| ClientError::Token {
            url: url.clone(),
            reason,
        };
        let oauth = BasicClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.cfg.client_secret.clone()))
            .set_auth_type(AuthType::BasicAuth)
            .set_token_uri(TokenUrl::new(url.clone()).map_err(|e| terr(e.to_string()))?);
        let mut req = oauth.exchange_client_credentials();
        for s in &self.cfg.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let started = Instant::now();
        let http = self.http.clone();
        // oauth2 reads the token response whole: give it a capped body.
        let capped = move |r: oauth2::HttpRequest| capped_call(http.clone(), r);
        let resp = req
            .request_async(&capped)
            .await
            .map_err(|e| terr(describe_token_error(&e)))?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lifetime = resp.expires_in().unwrap_or(Duration::from_secs(60));
        let margin = REFRESH_MARGIN.min(lifetime / 5);
        let secret = resp.access_token().secret().clone();
        *slot = Some(CachedToken {
            secret: secret.clone(),
            refresh_at: started + lifetime.saturating_sub(margin),
        });
        Ok(secret)
    }

    /// Forgets the cached token (after a 401).
    pub async fn clear_token(&self) {
        *self.token.lock().await = None;
    }

    fn key_url(&self, kid: &str, suffix: &str) -> Result<String, ClientError> {
        if !crate::util::valid_kid(kid) {
            return Err(ClientError::Config(format!("invalid kid {kid:?}")));
        }
        Ok(format!("{}/v1/keys/{kid}{suffix}", self.cfg.base_url))
    }

    /// Sends a request with the bearer token; on 401 refreshes the token and retries once.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ClientError::transport(url, &e))?;
            let status = resp.status();
            if status.is_success() {
                return foundations::client::read_json(resp, MAX_RESPONSE)
                    .await
                    .map_err(|e| ClientError::decode(url, e));
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.clear_token().await;
                continue;
            }
            return Err(ClientError::refused(url, resp, LIMITS.max_error_body).await);
        }
        Err(ClientError::Http {
            url: url.to_string(),
            reason: "unauthorised after token refresh".into(),
        })
    }

    /// Stores a release key (publisher). Idempotent for identical material.
    pub async fn put_key(
        &self,
        kid: &str,
        product: &str,
        cose_key: &[u8],
    ) -> Result<KeyMeta, ClientError> {
        let url = self.key_url(kid, "")?;
        let body = serde_json::to_value(KeyBody {
            product: product.to_string(),
            cose_key: foundations::b64(cose_key),
        })
        .map_err(|e| ClientError::Config(e.to_string()))?;
        self.call(reqwest::Method::PUT, &url, Some(&body)).await
    }

    /// Reads a release key (dispatcher).
    pub async fn get_key(&self, kid: &str) -> Result<Key, ClientError> {
        let url = self.key_url(kid, "")?;
        let b: KeyBody = self.call(reqwest::Method::GET, &url, None).await?;
        let cose_key = foundations::b64_decode(&b.cose_key)
            .ok_or_else(|| ClientError::decode(&url, "cose_key is not base64"))?;
        Ok(Key {
            product: b.product,
            cose_key,
        })
    }

    pub async fn key_meta(&self, kid: &str) -> Result<KeyMeta, ClientError> {
        let url = self.key_url(kid, "/meta")?;
        self.call(reqwest::Method::GET, &url, None).await
    }

    pub async fn revoke(&self, kid: &str) -> Result<KeyMeta, ClientError> {
        let url = self.key_url(kid, "/revoke")?;
        self.call(reqwest::Method::POST, &url, None).await
    }

    /// One page of the audit trail (auditor).
    pub async fn audit(&self, from: u64, limit: usize) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/v1/audit?from={from}&limit={limit}", self.cfg.base_url);
        self.call(reqwest::Method::GET, &url, None).await
    }
}

fn describe_token_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => format!("server refused: {}", r.error()),
        oauth2::RequestTokenError::Request(r) => format!("request: {r}"),
        oauth2::RequestTokenError::Parse(p, _) => format!("parse: {p}"),
        oauth2::RequestTokenError::Other(o) => o.clone(),
    }
}

/// Sends an oauth2 request with the client's deadlines and a capped response body.
async fn capped_call(
    http: reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, CappedCallError> {
    let req = reqwest::Request::try_from(req).map_err(|e| CappedCallError(e.to_string()))?;
    let resp = http
        .execute(req)
        .await
        .map_err(|e| CappedCallError(foundations::client::describe(&e)))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = foundations::client::read_capped(resp, MAX_RESPONSE)
        .await
        .map_err(|e| CappedCallError(e.to_string()))?;
    let mut out = oauth2::HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A failed token request (transport, deadline or size).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CappedCallError(String);
