//! Typed client for the update server, used by `publisher publish`, by mirrors and by the
//! dispatcher. rustls only; a private CA can be trusted instead of the web PKI.
//!
//! A source may be hostile (a compromised server or mirror, DESIGN.md §1): every body read
//! is capped (error bodies at 64 KiB, JSON at [`ClientLimits::max_json_bytes`]), every
//! request has a total deadline (a server dripping bytes cannot hold a caller), and
//! [`UpdateServerClient::list_all`] follows at most [`ClientLimits::max_pages`] pages that
//! must advance, holding at most [`ClientLimits::max_releases`] releases.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::model::{ENVELOPE_MEDIA_TYPE, ReleaseRecord};

/// Bounds of a client (the defaults suit a dispatcher polling a source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connect, total deadline of small requests, silence, error bodies.
    pub http: foundations::client::ClientLimits,
    /// Total deadline of a payload download or an upload.
    pub transfer_timeout: Duration,
    /// Largest JSON response (one page of the list).
    pub max_json_bytes: usize,
    /// Most pages [`UpdateServerClient::list_all`] follows.
    pub max_pages: usize,
    /// Most releases [`UpdateServerClient::list_all`] holds.
    pub max_releases: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            http: foundations::client::ClientLimits {
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
                read_timeout: Duration::from_secs(20),
                max_error_body: 64 * 1024,
            },
            transfer_timeout: Duration::from_secs(3600),
            max_json_bytes: 16 << 20,
            max_pages: 100,
            max_releases: 20_000,
        }
    }
}

/// Notification streams are long-lived: reconnected after this long.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(3600);

pub use foundations::client::ClientError;

/// Result of an upload.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Uploaded {
    /// `true` for 201 Created, `false` for 200 (already published).
    #[serde(skip)]
    pub created: bool,
    #[serde(flatten)]
    pub release: ReleaseRecord,
    pub envelope_url: String,
    pub payload_url: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReleaseList {
    pub releases: Vec<Uploaded>,
    pub next_after: Option<u64>,
}

#[derive(Clone)]
pub struct UpdateServerClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    limits: ClientLimits,
}

impl std::fmt::Debug for UpdateServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("UpdateServerClient")
            .field("base", &self.base)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl UpdateServerClient {
    /// `base_url`: `https://host:port`. `ca_pem`: trust only this CA. `token`: bearer token.
    pub fn new(
        base_url: &str,
        ca_pem: Option<&[u8]>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        Self::with_limits(base_url, ca_pem, token, ClientLimits::default())
    }

    /// As [`UpdateServerClient::new`], with other bounds.
    pub fn with_limits(
        base_url: &str,
        ca_pem: Option<&[u8]>,
        token: Option<String>,
        limits: ClientLimits,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let http = foundations::client::https_client(&base, ca_pem, &limits.http)?;
        Ok(UpdateServerClient {
            base,
            http,
            token,
            limits,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    fn req(&self, m: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(m, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        foundations::client::read_json(resp, self.limits.max_json_bytes)
            .await
            .map_err(|e| ClientError::decode(url, e))
    }

    /// Sends `rb`; a non-success status becomes [`ClientError::Problem`].
    async fn send(
        &self,
        url: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        foundations::client::send(rb, url, self.limits.http.max_error_body).await
    }

    /// Uploads an envelope and its payload file, streaming the file; `progress` is called
    /// with the number of payload bytes sent so far.
    pub async fn upload(
        &self,
        envelope: Vec<u8>,
        payload: &Path,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<Uploaded, ClientError> {
        let file = tokio::fs::File::open(payload)
            .await
            .map_err(|e| ClientError::File {
                path: payload.display().to_string(),
                reason: e.to_string(),
            })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| ClientError::File {
                path: payload.display().to_string(),
                reason: e.to_string(),
            })?
            .len();
        let mut sent = 0u64;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10).map(move |c| {
            if let Ok(b) = &c {
                sent += b.len() as u64;
                progress(sent);
            }
            c
        });
        self.upload_stream(envelope, stream, len).await
    }

    /// Uploads an envelope and a payload stream of `len` bytes.
    pub async fn upload_stream<S, E>(
        &self,
        envelope: Vec<u8>,
        payload: S,
        len: u64,
    ) -> Result<Uploaded, ClientError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let url = format!("{}/v1/releases", self.base);
        let form = reqwest::multipart::Form::new()
            .part(
                "envelope",
                reqwest::multipart::Part::bytes(envelope)
                    .mime_str(ENVELOPE_MEDIA_TYPE)
                    .map_err(|e| ClientError::Config(e.to_string()))?,
            )
            .part(
                "payload",
                reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::wrap_stream(payload),
                    len,
                )
                .mime_str("application/octet-stream")
                .map_err(|e| ClientError::Config(e.to_string()))?,
            );
        let rb = self
            .req(reqwest::Method::POST, &url)
            .timeout(self.limits.transfer_timeout)
            .multipart(form);
        let resp = self.send(&url, rb).await?;
        let status = resp.status();
        let mut u: Uploaded = self.json(&url, resp).await?;
        u.created = status == reqwest::StatusCode::CREATED;
        Ok(u)
    }

    /// One page of the release list. `query` is e.g. `vendor-id=…&min-sequence=3`.
    pub async fn list(&self, query: &str) -> Result<ReleaseList, ClientError> {
        let url = if query.is_empty() {
            format!("{}/v1/releases", self.base)
        } else {
            format!("{}/v1/releases?{query}", self.base)
        };
        let resp = self
            .send(&url, self.req(reqwest::Method::GET, &url))
            .await?;
        self.json(&url, resp).await
    }

    /// Every release, following `next_after`: at most [`ClientLimits::max_pages`] pages,
    /// each of which must advance, and at most [`ClientLimits::max_releases`] releases.
    pub async fn list_all(&self) -> Result<Vec<Uploaded>, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        for _ in 0..self.limits.max_pages {
            let q = after.map(|a| format!("after={a}")).unwrap_or_default();
            let page = self.list(&q).await?;
            if page.releases.is_empty() {
                return Ok(out);
            }
            if out.len() + page.releases.len() > self.limits.max_releases {
                return Err(self.bounded(format!(
                    "more than {} releases listed",
                    self.limits.max_releases
                )));
            }
            out.extend(page.releases);
            match page.next_after {
                None => return Ok(out),
                // A cursor that does not advance would be followed for ever.
                Some(n) if after.is_some_and(|a| n <= a) => {
                    return Err(self.bounded(format!("pagination went back to {n}")));
                }
                Some(n) => after = Some(n),
            }
        }
        Err(self.bounded(format!("more than {} pages listed", self.limits.max_pages)))
    }

    fn bounded(&self, reason: String) -> ClientError {
        ClientError::decode(&format!("{}/v1/releases", self.base), reason)
    }

    /// The envelope bytes (at most `limit`).
    pub async fn envelope(&self, release_id: &str, limit: usize) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/releases/{release_id}/envelope", self.base);
        let resp = self
            .send(&url, self.req(reqwest::Method::GET, &url))
            .await?;
        foundations::client::read_capped(resp, limit)
            .await
            .map_err(|e| ClientError::decode(&url, format!("envelope: {e}")))
    }

    /// The payload as a stream (optionally a `Range` header value), within
    /// [`ClientLimits::transfer_timeout`]; the caller caps what it reads.
    pub async fn payload(
        &self,
        release_id: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/v1/releases/{release_id}/payload", self.base);
        let mut r = self
            .req(reqwest::Method::GET, &url)
            .timeout(self.limits.transfer_timeout);
        if let Some(range) = range {
            r = r.header(reqwest::header::RANGE, range);
        }
        self.send(&url, r).await
    }

    /// The notification stream (`GET /v1/events`, server-sent events) as a byte stream.
    pub async fn events(&self) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/v1/events", self.base);
        let rb = self
            .req(reqwest::Method::GET, &url)
            .timeout(EVENTS_TIMEOUT)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send(&url, rb).await
    }
}
