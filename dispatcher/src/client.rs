//! A typed client of the operator API (used by the `dispatcher` CLI, the demo and tests).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What went wrong talking to the dispatcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Bad client configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Transport failure.
    #[error("{url}: {reason}")]
    Http {
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The dispatcher answered with a problem.
    #[error("{status} {title}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Title.
        title: String,
        /// Detail.
        detail: String,
    },
}

impl ClientError {
    /// HTTP status of a problem response.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

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
        if !base.starts_with("https://") {
            return Err(ClientError::Config(format!("{base}: must be https://")));
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("CA PEM: {e}")))?;
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(DispatcherClient {
            base,
            http: b.build().map_err(|e| ClientError::Config(e.to_string()))?,
            token: token.to_owned(),
        })
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
        let resp = rb
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Http {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(ClientError::Problem {
                status: status.as_u16(),
                title: v["title"].as_str().unwrap_or("error").to_owned(),
                detail: v["detail"].as_str().unwrap_or("").to_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Http {
            url: url.to_owned(),
            reason: format!("response: {e}"),
        })
    }

    /// GET a JSON resource (`path` starts with `/`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    /// GET text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(ClientError::Problem {
                status: status.as_u16(),
                title: "error".into(),
                detail: text,
            });
        }
        Ok(text)
    }

    /// POST JSON.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &url).await
    }

    /// PUT JSON.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.put(&url).json(body), &url).await
    }
}
