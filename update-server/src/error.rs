//! Errors: [`Error`] for the library and CLI, [`ApiError`] for HTTP responses.
//!
//! [`ApiError`] is the one type every handler returns. It renders an RFC 9457 problem
//! details body whose `type` ends in, and whose `check` member is, the stable name of the
//! failed check (for envelope checks, [`suit::Error::code`]). Token failures say only that
//! the token was refused; the reason is logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use foundations::Problem;

/// Library and CLI errors: the foundations' (files, configuration, database, TLS, usage)
/// and the two of this service's own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("object store: {0}")]
    Store(String),
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Foundation(#[from] foundations::Error),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        foundations::Error::io(path, source).into()
    }

    pub(crate) fn usage(msg: impl Into<String>) -> Self {
        foundations::Error::Usage(msg.into()).into()
    }

    pub(crate) fn db(msg: impl Into<String>) -> Self {
        foundations::Error::Db(msg.into()).into()
    }

    /// True for a command line or configuration the operator must correct (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Foundation(foundations::Error::Usage(_) | foundations::Error::Config { .. })
        )
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        foundations::Error::from(e).into()
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// Why a request was refused. Each variant maps to one status and one check name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Missing or invalid access token; the reason is logged only.
    #[error("invalid token: {0}")]
    Unauthenticated(String),
    #[error("insufficient scope: needs one of {0}")]
    InsufficientScope(String),
    #[error("the token is not granted product {0}")]
    ProductNotGranted(String),
    /// An envelope or payload check of the `suit` crate failed.
    #[error("{0}")]
    Envelope(#[from] suit::Error),
    /// The manifest is verified but does not follow the profile (e.g. vendor-id not a UUID).
    #[error("{0}")]
    Profile(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BadUpload(String),
    #[error("upload incomplete: {0}")]
    Incomplete(String),
    #[error(
        "release {existing} already has sequence number {sequence} for {product} with different content"
    )]
    SequenceConflict {
        product: String,
        sequence: u64,
        existing: String,
    },
    #[error(
        "sequence number {offered} is not newer than {newest}, already published for {product}"
    )]
    Rollback {
        product: String,
        newest: u64,
        offered: u64,
    },
    #[error("not found")]
    NotFound,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("server busy")]
    Busy,
    #[error("request timed out")]
    Timeout,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<foundations::Error> for ApiError {
    fn from(e: foundations::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        ApiError::Internal(format!("object store: {e}"))
    }
}

/// Base of the problem type URIs.
pub use foundations::PROBLEM_BASE;

impl ApiError {
    /// Status, check name and short title.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthenticated(_) => (
                S::UNAUTHORIZED,
                "invalid-token",
                "Missing or invalid access token",
            ),
            ApiError::InsufficientScope(_) => (
                S::FORBIDDEN,
                "insufficient-scope",
                "The access token does not allow this operation",
            ),
            ApiError::ProductNotGranted(_) => (
                S::FORBIDDEN,
                "product-not-granted",
                "The access token is not granted this vendor and class",
            ),
            ApiError::Envelope(e) => {
                let status = match e {
                    suit::Error::Decode(_) => S::BAD_REQUEST,
                    _ => S::UNPROCESSABLE_ENTITY,
                };
                (status, e.code(), "The release failed a verification check")
            }
            ApiError::Profile(_) => (
                S::UNPROCESSABLE_ENTITY,
                "profile-violation",
                "The release does not follow the envelope profile",
            ),
            ApiError::TooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The upload is larger than this server accepts",
            ),
            ApiError::BadUpload(_) => (
                S::BAD_REQUEST,
                "bad-upload",
                "The upload is not a multipart envelope + payload",
            ),
            ApiError::Incomplete(_) => (
                S::BAD_REQUEST,
                "incomplete-upload",
                "The upload ended early; nothing was stored",
            ),
            ApiError::SequenceConflict { .. } => (
                S::CONFLICT,
                "sequence-conflict",
                "Another release has this sequence number",
            ),
            ApiError::Rollback { .. } => (
                S::CONFLICT,
                "rollback",
                "A newer release of this product is already published",
            ),
            ApiError::NotFound => (S::NOT_FOUND, "not-found", "No such release"),
            ApiError::RangeNotSatisfiable { .. } => (
                S::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "The range is outside the payload",
            ),
            ApiError::Busy => (
                S::SERVICE_UNAVAILABLE,
                "busy",
                "Too many requests in progress; retry later",
            ),
            ApiError::Timeout => (
                S::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took too long",
            ),
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad-request", "Invalid request"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The detail sent to the client: the check's own message for upload checks (it
    /// describes the uploader's own data), nothing for authentication and internal errors.
    fn public_detail(&self) -> Option<String> {
        match self {
            ApiError::Unauthenticated(_) | ApiError::Internal(_) => None,
            ApiError::NotFound | ApiError::Busy | ApiError::Timeout => None,
            other => Some(other.to_string()),
        }
    }
}

impl ApiError {
    /// The problem sent to the client: type and `check` name the failed check.
    pub fn problem(&self) -> Problem {
        let (status, check, title) = self.parts();
        let mut p = Problem::new(status.as_u16(), check, title).with_check(check);
        p.detail = self.public_detail();
        match self {
            ApiError::Unauthenticated(_) => {
                p = p.with_bearer_challenge("update-server", "invalid_token");
            }
            ApiError::InsufficientScope(_) | ApiError::ProductNotGranted(_) => {
                p = p.with_bearer_challenge("update-server", "insufficient_scope");
            }
            ApiError::RangeNotSatisfiable { size } => {
                p = p.with_header("content-range", format!("bytes */{size}"));
            }
            ApiError::Busy => p = p.with_header("retry-after", "5"),
            _ => {}
        }
        p
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, check, _) = self.parts();
        if status.is_server_error() && !matches!(self, ApiError::Busy | ApiError::Timeout) {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, check, status = status.as_u16(), "request refused");
        }
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_names_the_check_and_hides_token_detail() {
        let resp = ApiError::Envelope(suit::Error::CiphertextDigestMismatch).into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["check"], "ciphertext-digest-mismatch");
        assert_eq!(
            v["type"],
            format!("{PROBLEM_BASE}ciphertext-digest-mismatch")
        );

        let resp = ApiError::Unauthenticated("kid abc123 unknown".into()).into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .unwrap_or_default();
        assert!(!String::from_utf8_lossy(&body).contains("abc123"));
    }
}
