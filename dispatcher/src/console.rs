//! The operator web console at `/`: one page of plain HTML, CSS and JavaScript compiled into
//! the binary (nothing is fetched from elsewhere at run time), drawn from the same `/v1` API
//! the CLI uses.
//!
//! Security (`docs/operator-guide.md`, "Web console"):
//! * XSS: the script builds every element with `createElement`/`textContent`, never HTML
//!   from data; the Content-Security-Policy below allows scripts and styles from this origin
//!   only (no inline script or style, no `eval`), no framing, no form posts.
//! * CSRF: the API authenticates by the `Authorization: Bearer` header alone (no cookies),
//!   which a page of another origin can neither send in a form nor read back; the API sends
//!   no CORS headers, so a cross-origin script's preflight fails.
//! * The token lives in `sessionStorage` (gone with the tab; sign-out clears it).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The console's policy: everything from this origin only, nothing inline.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The policy of API responses (JSON is never a document to render or frame).
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// The console's routes (no token needed: the page holds no data until the operator signs in).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONSOLE_CSP),
        ],
        body,
    )
        .into_response()
}

/// Adds the security headers every response carries (the console's own CSP is kept).
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(API_CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
