//! HTTPS clients for the typed service clients: rustls, HTTPS only, no redirects, a pinned
//! CA if one is given (then only that CA), and bounds on everything a hostile or broken
//! server could make unbounded: connect time, silence between bytes, the total time of a
//! request (body included), and the size of every body read ([`read_capped`],
//! [`read_problem`]).

use std::time::Duration;

use crate::problem::Problem;

/// Bounds of a client. The defaults suit JSON APIs; a download sets a longer total deadline
/// on its own request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Time allowed to connect (TCP and TLS).
    pub connect_timeout: Duration,
    /// Total deadline of one request, from sending to the last byte of the response body.
    pub request_timeout: Duration,
    /// Longest silence while reading (a server dripping bytes trips the total deadline).
    pub read_timeout: Duration,
    /// Largest error body read (the rest is not read).
    pub max_error_body: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(20),
            max_error_body: 64 * 1024,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The base URL is not `https://`.
    #[error("{0}: must be https://")]
    NotHttps(String),
    /// The CA bundle is unusable.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// reqwest refused the configuration.
    #[error("HTTP client: {0}")]
    Build(String),
}

/// What went wrong talking to one of our services: the typed clients of the update server,
/// the key repository and the dispatcher all return it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client cannot be built or the call is malformed (e.g. an invalid key id).
    #[error("client configuration: {0}")]
    Config(String),
    /// The request did not complete (connect, TLS, deadline, transfer).
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// Why, with the cause chain.
        reason: String,
    },
    /// No access token could be obtained from the token endpoint.
    #[error("token request to {url} failed: {reason}")]
    Token {
        /// The token endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused with a problem-details body.
    #[error("{url}: {status} {check}: {detail}")]
    Problem {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The stable name of the failed check (`check` member, else the type's last
        /// segment, else `error`).
        check: String,
        /// The problem's title.
        title: String,
        /// The problem's detail (its title if it has none).
        detail: String,
    },
    /// The response is not what the API promises (too large, not JSON, wrong shape).
    #[error("unexpected response from {url}: {reason}")]
    Decode {
        /// The URL requested.
        url: String,
        /// Why.
        reason: String,
    },
    /// A local file to send could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// HTTP status of a problem response, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The failed check of a problem response, if that is what this is.
    pub fn check(&self) -> Option<&str> {
        match self {
            ClientError::Problem { check, .. } => Some(check),
            _ => None,
        }
    }

    /// A request to `url` that did not complete.
    pub fn transport(url: &str, e: &reqwest::Error) -> Self {
        ClientError::Http {
            url: url.to_owned(),
            reason: describe(e),
        }
    }

    /// A response from `url` that is not what the API promises.
    pub fn decode(url: &str, reason: impl std::fmt::Display) -> Self {
        ClientError::Decode {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The problem of an error response from `url`, reading at most `cap` bytes of it.
    pub async fn refused(url: &str, resp: reqwest::Response, cap: usize) -> Self {
        let p = read_problem(resp, cap).await;
        let check = p
            .check
            .clone()
            .unwrap_or_else(|| match p.kind.rsplit('/').next() {
                Some(s) if !s.is_empty() && p.kind != "about:blank" => s.to_owned(),
                _ => "error".to_owned(),
            });
        ClientError::Problem {
            url: url.to_owned(),
            status: p.status,
            check,
            detail: p.detail.unwrap_or_else(|| p.title.clone()),
            title: p.title,
        }
    }
}

/// Sends `rb` (a request to `url`): a transfer that fails is [`ClientError::Http`], a
/// non-success status the server's problem ([`ClientError::refused`], at most `error_cap`
/// bytes of it read).
pub async fn send(
    rb: reqwest::RequestBuilder,
    url: &str,
    error_cap: usize,
) -> Result<reqwest::Response, ClientError> {
    let resp = rb
        .send()
        .await
        .map_err(|e| ClientError::transport(url, &e))?;
    if !resp.status().is_success() {
        return Err(ClientError::refused(url, resp, error_cap).await);
    }
    Ok(resp)
}

impl From<SetupError> for ClientError {
    fn from(e: SetupError) -> Self {
        ClientError::Config(e.to_string())
    }
}

/// An HTTPS client for `base_url`: rustls, HTTPS only, no redirects (following one could
/// leak a bearer token); with `ca_pem`, only that CA (PEM bundle) is trusted.
pub fn https_client(
    base_url: &str,
    ca_pem: Option<&[u8]>,
    limits: &ClientLimits,
) -> Result<reqwest::Client, SetupError> {
    if !base_url.starts_with("https://") {
        return Err(SetupError::NotHttps(base_url.to_string()));
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .read_timeout(limits.read_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| SetupError::Ca(e.to_string()))?;
        if certs.is_empty() {
            return Err(SetupError::Ca("the PEM holds no certificate".into()));
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| SetupError::Build(e.to_string()))
}

/// Why a body was not read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Declared or sent larger than the cap; the rest was not read.
    #[error("response larger than {cap} bytes")]
    TooLarge {
        /// The cap.
        cap: usize,
    },
    /// The transfer failed or its deadline passed.
    #[error("{0}")]
    Transport(String),
}

/// Reads a response body of at most `cap` bytes. A declared `Content-Length` above the cap is
/// refused before anything is read; a body that grows past it is abandoned (the connection
/// is dropped, not drained). The request's deadline bounds the time.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge { cap });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?
    {
        if out.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge { cap });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a JSON body of at most `cap` bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    cap: usize,
) -> Result<T, ReadError> {
    let bytes = read_capped(resp, cap).await?;
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Transport(format!("JSON: {e}")))
}

/// The problem details of an error response, reading at most `cap` bytes of it. A body that
/// is not a problem (or too large) yields an `about:blank` problem with the status.
pub async fn read_problem(resp: reqwest::Response, cap: usize) -> Problem {
    let status = resp.status().as_u16();
    let mut p = match read_capped(resp, cap).await {
        Ok(body) => serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
            title: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ..blank()
        }),
        Err(e) => Problem {
            detail: Some(format!("error body not read: {e}")),
            ..blank()
        },
    };
    p.status = status;
    p
}

fn blank() -> Problem {
    Problem {
        kind: "about:blank".into(),
        title: String::new(),
        status: 0,
        detail: None,
        check: None,
        error: None,
        headers: Vec::new(),
    }
}

/// A transport error with its cause chain (reqwest's own message is often just "error
/// sending request").
pub fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if e.is_timeout() && !s.contains("timed out") {
        s.push_str(" (deadline passed)");
    }
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
