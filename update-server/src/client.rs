//! Typed client for the update server, used by `publisher publish`, by mirrors and (later)
//! by the dispatcher. rustls only; a private CA can be trusted instead of the web PKI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::index::ReleaseRecord;

const MAX_JSON: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("client configuration: {0}")]
    Config(String),
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The server refused with a problem-details body; `check` names the failed check.
    #[error("{url}: {status} {check}: {detail}")]
    Problem {
        url: String,
        status: u16,
        check: String,
        detail: String,
    },
    #[error("unexpected response from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
}

impl ClientError {
    pub fn check(&self) -> Option<&str> {
        match self {
            ClientError::Problem { check, .. } => Some(check),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct UpdateServerClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl UpdateServerClient {
    /// `base_url`: `https://host:port`. `ca_pem`: trust only this CA. `token`: bearer token.
    pub fn new(
        base_url: &str,
        ca_pem: Option<&[u8]>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ClientError::Config(format!("{base}: must be https://")));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("CA PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("CA PEM holds no certificate".into()));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(UpdateServerClient {
            base,
            http: b
                .build()
                .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?,
            token,
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

    async fn problem(url: &str, resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        ClientError::Problem {
            url: url.to_string(),
            status,
            check: p["check"].as_str().unwrap_or("unknown").to_string(),
            detail: p["detail"]
                .as_str()
                .or(p["title"].as_str())
                .unwrap_or("")
                .to_string(),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        url: &str,
        mut resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let mut out = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| ClientError::Http {
            url: url.to_string(),
            reason: e.to_string(),
        })? {
            if out.len() + c.len() > MAX_JSON {
                return Err(ClientError::Decode {
                    url: url.to_string(),
                    reason: "response too large".into(),
                });
            }
            out.extend_from_slice(&c);
        }
        serde_json::from_slice(&out).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        })
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
                    .mime_str(crate::api::ENVELOPE_MEDIA_TYPE)
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
        let resp = self
            .req(reqwest::Method::POST, &url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::problem(&url, resp).await);
        }
        let mut u: Uploaded = Self::json(&url, resp).await?;
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
            .req(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !resp.status().is_success() {
            return Err(Self::problem(&url, resp).await);
        }
        Self::json(&url, resp).await
    }

    /// Every release, following `next_after`.
    pub async fn list_all(&self) -> Result<Vec<Uploaded>, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let q = after.map(|a| format!("after={a}")).unwrap_or_default();
            let page = self.list(&q).await?;
            if page.releases.is_empty() {
                return Ok(out);
            }
            after = page.next_after;
            out.extend(page.releases);
            if after.is_none() {
                return Ok(out);
            }
        }
    }

    /// The envelope bytes (at most `limit`).
    pub async fn envelope(&self, release_id: &str, limit: usize) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/releases/{release_id}/envelope", self.base);
        let mut resp = self
            .req(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !resp.status().is_success() {
            return Err(Self::problem(&url, resp).await);
        }
        let mut out = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| ClientError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })? {
            if out.len() + c.len() > limit {
                return Err(ClientError::Decode {
                    url,
                    reason: format!("envelope larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// The payload as a stream (optionally a `Range` header value).
    pub async fn payload(
        &self,
        release_id: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/v1/releases/{release_id}/payload", self.base);
        let mut r = self.req(reqwest::Method::GET, &url);
        if let Some(range) = range {
            r = r.header(reqwest::header::RANGE, range);
        }
        let resp = r.send().await.map_err(|e| ClientError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if !resp.status().is_success() {
            return Err(Self::problem(&url, resp).await);
        }
        Ok(resp)
    }

    /// The notification stream (`GET /v1/events`, server-sent events) as a byte stream.
    pub async fn events(&self) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/v1/events", self.base);
        let resp = self
            .req(reqwest::Method::GET, &url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !resp.status().is_success() {
            return Err(Self::problem(&url, resp).await);
        }
        Ok(resp)
    }
}
