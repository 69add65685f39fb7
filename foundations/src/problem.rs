//! RFC 9457 problem details: the one error body every service sends.
//!
//! Each service keeps its own error enum and maps it into a [`Problem`] in one place; the
//! problem carries a stable `type` (and, where the service has one, a `check` extension
//! member naming the failed check), a short fixed title and, only where it describes the
//! caller's own data, a detail. Server-side detail is logged, never sent.

use serde::{Deserialize, Serialize};

/// Base of the problem type URIs (RFC 9457 §3.1.1).
pub const PROBLEM_BASE: &str = "https://ics-suit.invalid/problems/";

/// Media type of a problem body (RFC 9457 §3).
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// A problem details object (RFC 9457 §3.1) with this project's extension members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// URI naming the problem type: [`PROBLEM_BASE`] + a stable slug.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// Short, fixed, human-readable summary.
    #[serde(default)]
    pub title: String,
    /// HTTP status code.
    #[serde(default)]
    pub status: u16,
    /// Occurrence-specific explanation, only when it is safe to tell the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension member: the stable name of the failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Extension member: an RFC 6749 §5.2 error code (token endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Response headers to add (`WWW-Authenticate`, `Retry-After`, ...); not serialised.
    #[serde(skip)]
    pub headers: Vec<(&'static str, String)>,
}

fn about_blank() -> String {
    "about:blank".into()
}

impl Problem {
    /// A problem of type [`PROBLEM_BASE`]`slug`.
    pub fn new(status: u16, slug: &str, title: &str) -> Problem {
        Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_string(),
            status,
            detail: None,
            check: None,
            error: None,
            headers: Vec::new(),
        }
    }

    /// With a detail the caller may see.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    /// With the `check` member.
    pub fn with_check(mut self, check: impl Into<String>) -> Problem {
        self.check = Some(check.into());
        self
    }

    /// With a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Problem {
        self.headers.push((name, value.into()));
        self
    }

    /// With an RFC 6750 §3 `WWW-Authenticate` Bearer challenge: `realm` names the service,
    /// `error` is the RFC 6750 §3.1 code (`invalid_token`, `insufficient_scope`).
    pub fn with_bearer_challenge(self, realm: &str, error: &str) -> Problem {
        self.with_header(
            "www-authenticate",
            format!(r#"Bearer realm="{realm}", error="{error}""#),
        )
    }

    /// The slug of the type URI (`invalid-token` for `.../problems/invalid-token`).
    pub fn slug(&self) -> &str {
        self.kind.strip_prefix(PROBLEM_BASE).unwrap_or(&self.kind)
    }

    /// 401: no usable access token. `realm` names the service in `WWW-Authenticate`.
    pub fn invalid_token(realm: &str) -> Problem {
        Problem::new(401, "invalid-token", "Missing or invalid access token")
            .with_bearer_challenge(realm, "invalid_token")
    }

    /// 413: the declared or streamed body is larger than the route accepts.
    pub fn too_large(limit: u64) -> Problem {
        Problem::new(413, "payload-too-large", "Request body too large")
            .with_detail(format!("this route accepts at most {limit} bytes"))
    }

    /// 503: the server has no room for this request now.
    pub fn busy() -> Problem {
        Problem::new(503, "busy", "Too many requests in progress; retry later")
            .with_header("retry-after", "5")
    }

    /// 503: the request took longer than the server allows.
    pub fn timeout() -> Problem {
        Problem::new(503, "timeout", "The request took too long")
    }
}

#[cfg(feature = "server")]
impl axum::response::IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderName, HeaderValue, StatusCode, header};
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_MEDIA_TYPE),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.insert(n, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serialises_as_rfc9457_and_parses_back() {
        let p = Problem::new(422, "rollback", "A newer release exists")
            .with_check("rollback")
            .with_detail("sequence 3 is not newer than 4");
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "https://ics-suit.invalid/problems/rollback");
        assert_eq!(v["status"], 422);
        assert!(v.get("error").is_none());
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back.slug(), "rollback");
        // A foreign body without our members still parses.
        let other: Problem = serde_json::from_str(r#"{"title":"x"}"#).unwrap();
        assert_eq!(other.kind, "about:blank");
    }

    #[cfg(feature = "server")]
    #[tokio::test]
    async fn response_has_media_type_and_headers() {
        use axum::response::IntoResponse as _;
        let r = Problem::invalid_token("svc").into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["content-type"], PROBLEM_MEDIA_TYPE);
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="svc", error="invalid_token""#
        );
        let r = Problem::too_large(10).into_response();
        assert_eq!(r.status(), 413);
    }
}
