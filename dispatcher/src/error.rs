//! The dispatcher's error type. Each variant maps to one HTTP status and a stable problem
//! type in ONE place ([`Error::parts`]); the detail is logged, the response carries a short
//! safe message (RFC 9457 problem details).

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the dispatcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A configuration file is invalid.
    #[error("{path}: {reason}")]
    Config {
        /// Which file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// Stored state does not parse.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// A release failed a check at intake (`check` is the stable `suit` error code).
    #[error("release refused ({check}): {detail}")]
    Refused {
        /// Stable code of the failed check.
        check: String,
        /// Detail.
        detail: String,
    },
    /// No valid operator token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The token's role does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Unknown release, device or rollout.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. approving a rejected release).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Bad request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A request body larger than the route accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A remote service (update server, key repository, device) failed.
    #[error("remote: {0}")]
    Remote(String),
    /// The audit record of an operation could not be written (and flushed), so the
    /// operation was not performed (fail closed). The detail (which write failed) is logged.
    #[error("cannot audit: {0}")]
    CannotAudit(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// I/O error on a path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A release failing a `suit` check: refused with the check's stable code.
    pub fn refused(e: suit::Error) -> Error {
        Error::Refused {
            check: e.code().into(),
            detail: e.to_string(),
        }
    }

    /// Status, problem type slug and title.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Error::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Missing or invalid operator token",
            ),
            Error::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Your role does not allow this",
            ),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflicts with state"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Error::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Error::Refused { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "release-refused",
                "Release refused",
            ),
            Error::Remote(_) => (StatusCode::BAD_GATEWAY, "remote", "A remote service failed"),
            Error::CannotAudit(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot-audit",
                "Cannot audit: nothing was changed",
            ),
            Error::Io { .. }
            | Error::Config { .. }
            | Error::Db(_)
            | Error::Corrupt(_)
            | Error::Other(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The client-safe detail (internal errors are not echoed).
    pub fn safe_detail(&self) -> String {
        match self {
            Error::Io { .. }
            | Error::Config { .. }
            | Error::Db(_)
            | Error::Corrupt(_)
            | Error::Other(_) => "see the dispatcher log".into(),
            Error::CannotAudit(_) => "cannot audit: the audit record of this operation could \
                                      not be written, so it was not performed and nothing \
                                      changed; see the dispatcher log"
                .into(),
            e => e.to_string(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Db(e.to_string())
    }
}

impl From<foundations::Error> for Error {
    fn from(e: foundations::Error) -> Self {
        match e {
            foundations::Error::Io { path, source } => Error::Io { path, source },
            foundations::Error::Config { path, reason } => Error::Config { path, reason },
            foundations::Error::Db(d) => Error::Db(d),
            foundations::Error::Corrupt(c) => Error::Corrupt(c),
            other => Error::Other(other.to_string()),
        }
    }
}

impl Error {
    /// The problem sent to the client (RFC 9457): a stable type, the safe detail, and for a
    /// refused release the `check` that failed.
    pub fn problem(&self) -> foundations::Problem {
        let (status, slug, title) = self.parts();
        let mut p =
            foundations::Problem::new(status.as_u16(), slug, title).with_detail(self.safe_detail());
        match self {
            Error::Refused { check, .. } => p = p.with_check(check.clone()),
            Error::Unauthenticated(_) => {
                p = p.with_bearer_challenge("dispatcher", "invalid_token");
            }
            _ => {}
        }
        p
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        self.problem().into_response()
    }
}
