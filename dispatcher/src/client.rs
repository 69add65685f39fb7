//! A typed client of the operator API (used by the `dispatcher` CLI, the demo and tests).
//! Bounded like every client of ours (`foundations::client`): pinned CA, total deadline,
//! capped bodies.

use std::time::Duration;

/// Largest response read (a device list of a large plant is a few MiB).
const MAX_RESPONSE: usize = 64 << 20;
/// Bounds of every request.
const LIMITS: foundations::client::ClientLimits = foundations::client::ClientLimits {
    connect_timeout: Duration::from_secs(10),
    request_timeout: Duration::from_secs(120),
    read_timeout: Duration::from_secs(60),
    max_error_body: 64 * 1024,
};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use foundations::client::ClientError;

/// The client.
#[derive(Clone)]
pub struct DispatcherClient {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl std::fmt::Debug for DispatcherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DispatcherClient {
    /// `base_url`: `https://host:port`; `ca_pem`: trust only this CA; `token`: operator token.
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>, token: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let http = foundations::client::https_client(&base, ca_pem, &LIMITS)?;
        Ok(DispatcherClient {
            base,
            http,
            token: token.to_owned(),
        })
    }

    async fn fetch(&self, rb: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, ClientError> {
        let resp =
            foundations::client::send(rb.bearer_auth(&self.token), url, LIMITS.max_error_body)
                .await?;
        foundations::client::read_capped(resp, MAX_RESPONSE)
            .await
            .map_err(|e| ClientError::decode(url, e))
    }

    /// Base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let bytes = self.fetch(rb, url).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode(url, e))
    }

    /// GET a JSON resource (`path` starts with `/`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    /// GET text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let bytes = self.fetch(self.http.get(&url), &url).await?;
        String::from_utf8(bytes).map_err(|_| ClientError::decode(&url, "response is not UTF-8"))
    }

    /// POST JSON.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// PUT JSON.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.request(method, &url).json(body), &url)
            .await
    }
}
