//! HTTP API (`/v1`): upload, list, envelope and payload download, notification stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use foundations::http::{Gate, Guard, Public};
use futures_util::{Stream, StreamExt as _};

use crate::auth::Principal;
use crate::config::DownloadAccess;
use crate::error::ApiError;
use crate::index::{Filter, ReleaseRecord};
use crate::ingest::{self, Outcome};
use crate::state::AppState;

pub use crate::model::ENVELOPE_MEDIA_TYPE;
/// Headroom for multipart framing on top of the envelope and payload limits.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The service's routes, with limits and timeouts; no socket involved. Every route has a
/// gate and a body limit decided from the request head, before the body is read
/// (`foundations::http::Guard`): uploads need a token with an upload scope, downloads one
/// with a download scope unless downloads are public.
pub fn router(st: AppState) -> Router {
    let upload_limit = st.cfg().limits.max_envelope_bytes as u64
        + st.cfg().limits.max_blob_bytes
        + MULTIPART_OVERHEAD;
    let upload = Guard::new(TokenGate::upload(&st), upload_limit);
    let download = || Guard::new(TokenGate::download(&st), 0);
    let public = Guard::new(Public, 0);
    Router::new()
        .route(
            "/v1/releases",
            post(upload_release)
                .route_layer(upload)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(upload_limit).unwrap_or(usize::MAX),
                ))
                .merge(get(list).route_layer(download())),
        )
        .route("/v1/releases/{id}", get(release).route_layer(download()))
        .route(
            "/v1/releases/{id}/envelope",
            get(envelope).route_layer(download()),
        )
        .route(
            "/v1/releases/{id}/payload",
            get(payload).route_layer(download()),
        )
        .route("/v1/events", get(events).route_layer(download()))
        .route("/v1/openapi.json", get(openapi).route_layer(public.clone()))
        .route("/healthz", get(|| async { "ok" }).route_layer(public))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::from_fn_with_state(st.clone(), limits))
        .with_state(st)
}

/// The token gate: verifies the bearer token and its scope from the request head; the
/// caller goes into the request's extensions. Public downloads pass without a token.
#[derive(Debug, Clone)]
struct TokenGate {
    st: AppState,
    /// Any one of these scopes is needed; `None`: no token needed.
    scopes: Option<Vec<String>>,
}

impl TokenGate {
    fn upload(st: &AppState) -> TokenGate {
        TokenGate {
            st: st.clone(),
            scopes: Some(st.cfg().auth.upload_scopes.clone()),
        }
    }

    fn download(st: &AppState) -> TokenGate {
        let scopes = match st.cfg().auth.download {
            DownloadAccess::Public => None,
            DownloadAccess::Token => Some(st.cfg().auth.download_scopes.clone()),
        };
        TokenGate {
            st: st.clone(),
            scopes,
        }
    }
}

impl Gate for TokenGate {
    async fn check(&self, head: &mut Parts) -> Result<(), Response> {
        let Some(scopes) = &self.scopes else {
            return Ok(());
        };
        let p = principal(&self.st, &head.headers)
            .await
            .map_err(IntoResponse::into_response)?;
        if !p.has_any_scope(scopes) {
            return Err(ApiError::InsufficientScope(scopes.join(" ")).into_response());
        }
        head.extensions.insert(p);
        Ok(())
    }
}

/// Bounded concurrency and timeouts, answered with problem details.
async fn limits(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = st.in_flight().clone().try_acquire_owned() else {
        return ApiError::Busy.into_response();
    };
    let l = &st.cfg().limits;
    let secs = if req.method() == axum::http::Method::POST {
        l.upload_timeout_secs
    } else {
        l.request_timeout_secs
    };
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn principal(st: &AppState, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
    let token = foundations::http::bearer(headers)
        .ok_or_else(|| ApiError::Unauthenticated("no Bearer token".into()))?;
    st.auth()
        .authenticate(token, foundations::now_unix())
        .await
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))
}

/// The JSON form of a release, with its URLs.
pub fn release_json(r: &ReleaseRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "envelope_url".into(),
            format!("/v1/releases/{}/envelope", r.release_id).into(),
        );
        o.insert(
            "payload_url".into(),
            format!("/v1/releases/{}/payload", r.release_id).into(),
        );
    }
    v
}

fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(e.body_text())
    } else {
        ApiError::Incomplete(e.body_text())
    }
}

/// `POST /v1/releases`: multipart/form-data with the parts `envelope` then `payload`. The
/// token, its scope and the declared size were checked by the route's gate before any of
/// the body was read.
async fn upload_release(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let l = &st.cfg().limits;
    let mut multipart = multipart.map_err(|e| ApiError::BadUpload(e.body_text()))?;
    let Ok(_upload) = st.uploads().clone().try_acquire_owned() else {
        return Err(ApiError::Busy);
    };

    let mut field = multipart
        .next_field()
        .await
        .map_err(multipart_error)?
        .ok_or_else(|| ApiError::BadUpload("no parts".into()))?;
    if field.name() != Some("envelope") {
        return Err(ApiError::BadUpload(
            "the first part must be named \"envelope\"".into(),
        ));
    }
    let mut env = Vec::new();
    while let Some(c) = field.chunk().await.map_err(multipart_error)? {
        if env.len() + c.len() > l.max_envelope_bytes {
            return Err(ApiError::TooLarge(format!(
                "envelope exceeds {} bytes",
                l.max_envelope_bytes
            )));
        }
        env.extend_from_slice(&c);
    }
    drop(field);
    let checked = ingest::check_envelope(&st, &env, &p.client_id)?;
    let product = checked.record.product();
    if !p.grants_product(&product) {
        return Err(ApiError::ProductNotGranted(product));
    }
    let exists = ingest::check_slot(&st, &checked.record)?;
    let field = multipart
        .next_field()
        .await
        .map_err(multipart_error)?
        .ok_or_else(|| ApiError::Incomplete("no payload part".into()))?;
    if field.name() != Some("payload") {
        return Err(ApiError::BadUpload(
            "the second part must be named \"payload\"".into(),
        ));
    }
    let stream = futures_util::stream::unfold(Some(field), |f| async move {
        let mut f = f?;
        match f.chunk().await {
            Ok(Some(b)) => Some((Ok(b), Some(f))),
            Ok(None) => None,
            Err(e) => Some((Err(multipart_error(e)), None)),
        }
    });
    let (outcome, rec) = ingest::store(&st, checked, exists, Box::pin(stream)).await?;
    let status = match outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Unchanged => StatusCode::OK,
    };
    let mut resp = (status, axum::Json(release_json(&rec))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/releases/{}", rec.release_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /v1/releases?vendor-id=&class-id=&min-sequence=&after=&limit=`.
async fn list(
    State(st): State<AppState>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let max = st.cfg().limits.list_page_max;
    let limit = f.limit.unwrap_or(max).clamp(1, max);
    let rs = st.index().list(&f, limit)?;
    let next = rs.last().map(|r| r.order);
    let body = serde_json::json!({
        "releases": rs.iter().map(release_json).collect::<Vec<_>>(),
        "next_after": next,
    });
    Ok(([(header::CACHE_CONTROL, "no-cache")], axum::Json(body)).into_response())
}

async fn get_record(st: &AppState, id: &str) -> Result<ReleaseRecord, ApiError> {
    if !valid_id(id) {
        return Err(ApiError::NotFound);
    }
    st.index().get(id)?.ok_or(ApiError::NotFound)
}

async fn release(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let r = get_record(&st, &id).await?;
    Ok(axum::Json(release_json(&r)).into_response())
}

fn cache_control(st: &AppState) -> &'static str {
    match st.cfg().auth.download {
        DownloadAccess::Public => "public, max-age=31536000, immutable",
        DownloadAccess::Token => "private, max-age=31536000, immutable",
    }
}

fn etag_listed(h: &HeaderValue, etag: &str) -> bool {
    h.to_str()
        .map(|v| {
            v.trim() == "*"
                || v.split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == etag)
        })
        .unwrap_or(false)
}

fn not_modified(etag: &str, cc: &'static str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    r
}

async fn envelope(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = get_record(&st, &id).await?;
    let etag = format!("\"{}\"", r.release_id);
    let cc = cache_control(&st);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|h| etag_listed(h, &etag))
    {
        return Ok(not_modified(&etag, cc));
    }
    let bytes = st
        .storage()
        .get_all(
            &crate::storage::envelope_path(&r.release_id),
            st.cfg().limits.max_envelope_bytes as u64,
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, ENVELOPE_MEDIA_TYPE.to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cc.to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// A parsed `Range` header (RFC 9110 §14.1.2), single byte range only.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// No usable range: serve everything (also for syntax we ignore, e.g. multiple ranges).
    Full,
    /// `start..end` (end exclusive).
    Part(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        // RFC 9110 §14.2: a server MAY ignore the Range header; multipart/byteranges is
        // not offered.
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last n bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Full;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(size.saturating_sub(n), size);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Full;
    };
    let end_incl = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeSpec::Full,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end_incl.saturating_add(1).min(size))
}

/// `GET /v1/releases/{id}/payload`: Range, strong ETag (the ciphertext SHA-256), immutable.
async fn payload(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = get_record(&st, &id).await?;
    let size = r.payload.size;
    let etag = format!("\"{}\"", r.payload.sha256);
    let cc = cache_control(&st);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|h| etag_listed(h, &etag))
    {
        return Ok(not_modified(&etag, cc));
    }
    let mut range = None;
    if let Some(rv) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        // RFC 9110 §13.1.5: If-Range with a strong validator that does not match → full.
        let if_range_ok = headers
            .get(header::IF_RANGE)
            .is_none_or(|v| v.to_str().map(|s| s.trim() == etag).unwrap_or(false));
        if if_range_ok {
            match parse_range(rv, size) {
                RangeSpec::Full => {}
                RangeSpec::Part(a, b) => range = Some((a, b)),
                RangeSpec::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { size }),
            }
        }
    }
    let (status, start, end) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
        None => (StatusCode::OK, 0, size),
    };
    let stream = st
        .storage()
        .get_range(&crate::storage::blob_path(&r.payload.sha256), start..end)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", start, end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

/// `GET /v1/events`: Server-Sent Events, one `release` event per newly published release
/// (id = publication number). `Last-Event-ID` replays what was missed. Filters as for the
/// list. The stream ends when the server shuts down or the client falls too far behind
/// (it then reconnects with `Last-Event-ID`).
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<Filter>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(mut f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let rx = st.subscribe();
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let backlog = match last {
        Some(l) => {
            f.after = Some(l);
            st.index().list(&f, st.cfg().limits.list_page_max)?
        }
        None => Vec::new(),
    };
    f.after = None;
    let mut sent = last.unwrap_or(0);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(r) => Some((r, rx)),
            Err(_) => None,
        }
    });
    let stream = futures_util::stream::iter(backlog.into_iter().map(Arc::new))
        .chain(live)
        .filter(move |r| {
            let keep = r.order > sent && f.matches(r);
            if keep {
                sent = r.order;
            }
            std::future::ready(keep)
        })
        .filter_map(|r| {
            std::future::ready(
                Event::default()
                    .event("release")
                    .id(r.order.to_string())
                    .json_data(release_json(&r))
                    .ok()
                    .map(Ok),
            )
        })
        .take_until(st.shutdown_token().clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Part(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), RangeSpec::Part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Part(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), RangeSpec::Part(0, 100));
        assert_eq!(parse_range("bytes=50-1000", 100), RangeSpec::Part(50, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), RangeSpec::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Full);
        assert_eq!(parse_range("bytes=x-1", 100), RangeSpec::Full);
    }
}
