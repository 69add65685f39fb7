//! Errors: [`Error`] (the foundations' error) for the library and CLI, [`ApiError`] for HTTP
//! responses.
//!
//! [`ApiError`] is the single type every handler returns. It maps, in [`ApiError::problem`],
//! to an RFC 9457 problem (`foundations::Problem`) with a short, fixed message; the detail
//! (which may name a file, a claim or a database error) is logged with `tracing` and never
//! sent to the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use foundations::Problem;

/// Library and CLI errors: the foundations' error type (files, configuration, randomness,
/// database, corrupt data, TLS, usage).
pub use foundations::Error;

/// Why a request was refused or failed. Each variant maps to one status and one fixed title.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No usable access token (missing, malformed, bad signature, expired, wrong issuer...).
    /// The reason is logged and audited, not returned.
    #[error("invalid token: {0}")]
    Unauthenticated(String),
    /// The token is valid but lacks the scope for this operation.
    #[error("insufficient scope: needs {0}")]
    InsufficientScope(&'static str),
    /// The token is valid but not granted the key's product.
    #[error("product not granted: {0}")]
    ProductNotGranted(String),
    /// The token may revoke keys of the product, but this key was stored by another
    /// client (only its owner or an administrator may revoke it).
    #[error("not the owner of the key")]
    NotOwner,
    #[error("not found")]
    NotFound,
    #[error("key revoked")]
    Gone,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("payload too large")]
    TooLarge,
    #[error("rate limited")]
    RateLimited,
    #[error("request timed out")]
    Timeout,
    /// OAuth 2.0 token endpoint error (RFC 6749 §5.2), e.g. `invalid_client`.
    #[error("token endpoint: {code}: {detail}")]
    OAuth {
        code: &'static str,
        status: StatusCode,
        detail: String,
    },
    /// The audit record of the operation could not be made durable, so the operation was
    /// not done (fail closed); worth retrying later.
    #[error("audit unavailable: {0}")]
    AuditUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<foundations::Error> for ApiError {
    fn from(e: foundations::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    /// Status code, problem type suffix and the short public title.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Missing or invalid access token",
            ),
            ApiError::InsufficientScope(_) => (
                StatusCode::FORBIDDEN,
                "insufficient-scope",
                "The access token does not allow this operation",
            ),
            ApiError::ProductNotGranted(_) => (
                StatusCode::FORBIDDEN,
                "product-not-granted",
                "The access token is not granted this product",
            ),
            ApiError::NotOwner => (
                StatusCode::FORBIDDEN,
                "not-owner",
                "Only the client that stored this key, or an administrator, may revoke it",
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "No such key"),
            ApiError::Gone => (StatusCode::GONE, "revoked", "The key has been revoked"),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "A different key, or another client's, is already stored under this kid",
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Invalid request"),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            ),
            ApiError::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took too long",
            ),
            ApiError::OAuth { status, code, .. } => (*status, code, "Token request refused"),
            ApiError::AuditUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "audit-unavailable",
                "The operation cannot be audited now",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

impl ApiError {
    /// The problem sent to the client (no detail: it may name claims, files or keys).
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        let mut p = Problem::new(status.as_u16(), kind, title);
        match self {
            // RFC 6750 §3: tell the client which scheme and why, without details.
            ApiError::Unauthenticated(_) => {
                p = p.with_bearer_challenge("key-repo", "invalid_token");
            }
            ApiError::InsufficientScope(_) | ApiError::ProductNotGranted(_) => {
                p = p.with_bearer_challenge("key-repo", "insufficient_scope");
            }
            ApiError::OAuth { code, .. } => {
                // RFC 6749 §5.2 error code, as an RFC 9457 extension member.
                p.error = Some((*code).to_string());
                if *code == "invalid_client" {
                    // RFC 6749 §5.2: 401 for a failed client_secret_basic authentication.
                    p = p.with_header("www-authenticate", r#"Basic realm="key-repo""#);
                }
            }
            _ => {}
        }
        p
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        } else {
            // Debug formatting escapes attacker-controlled text (no forged log lines).
            tracing::info!(error = ?self, status = status.as_u16(), "request refused");
        }
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_body_hides_detail() {
        let resp =
            ApiError::Unauthenticated("signature of kid abc did not verify".into()).into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers()[axum::http::header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("abc"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], 401);
    }
}
