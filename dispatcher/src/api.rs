//! The operator API (`/v1`, JSON over HTTPS, RFC 9457 problem details; described by
//! `/v1/openapi.json`). Every other `/v1` route needs a bearer token; the role it needs is
//! named at the route. Every decision is written to the hash-chained audit log with who and
//! why. The web console's page and assets (`/`, `/console/*`, no token: they hold no data)
//! are in [`crate::console`]; every response carries its security headers.
//!
//! Every route is guarded (`foundations::http::Guard`): the operator token and the role the
//! route needs are checked from the request head, and the declared body size against the
//! route's limit, before anything of the body is read. An anonymous client never makes the
//! dispatcher read its upload, and never learns whether its body was valid.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use foundations::http::{Gate, Guard, Public};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;
use crate::enrol::EnrolRequest;
use crate::operators::{Operator, OperatorRole};
use crate::service::{DecisionRequest, Dispatcher};

type St = State<Arc<Dispatcher>>;

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn auth(d: &Dispatcher, h: &HeaderMap, need: OperatorRole) -> Result<Operator, Error> {
    let r = d.authorize(bearer(h), need);
    if let Err(e) = &r {
        d.metrics
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(error = %e, "operator request refused");
    }
    r
}

/// The operator gate: a valid operator token with at least the route's role, checked from
/// the request head.
#[derive(Debug, Clone)]
struct OperatorGate {
    d: Arc<Dispatcher>,
    need: OperatorRole,
}

impl Gate for OperatorGate {
    async fn check(&self, head: &mut Parts) -> Result<(), Response> {
        let op = auth(&self.d, &head.headers, self.need).map_err(IntoResponse::into_response)?;
        head.extensions.insert(op);
        Ok(())
    }
}

/// The largest direct upload: a base64 blob of `max_blob_bytes`, the envelope and the key.
fn upload_limit(d: &Dispatcher) -> u64 {
    let blob = d.cfg().limits.max_blob_bytes;
    blob.saturating_mul(4) / 3 + (2 << 20)
}

/// The routes, each with its role and body limit; then timeout and security headers.
pub fn router(d: Arc<Dispatcher>) -> Router {
    let max_body = d.cfg().limits.max_body_bytes;
    let json = max_body as u64;
    let upload_max = upload_limit(&d);
    let role =
        |need: OperatorRole, limit: u64| Guard::new(OperatorGate { d: d.clone(), need }, limit);
    use OperatorRole::{Admin, Operator, Viewer};
    Router::new()
        .route(
            "/v1/releases",
            get(releases).route_layer(role(Viewer, 0)).merge(
                post(upload)
                    .route_layer(role(Operator, upload_max))
                    .layer(DefaultBodyLimit::max(
                        usize::try_from(upload_max).unwrap_or(usize::MAX),
                    )),
            ),
        )
        .route(
            "/v1/releases/{id}",
            get(release).route_layer(role(Viewer, 0)),
        )
        .route(
            "/v1/releases/{id}/approve",
            post(approve).route_layer(role(Operator, json)),
        )
        .route(
            "/v1/releases/{id}/reject",
            post(reject).route_layer(role(Operator, json)),
        )
        .route("/v1/queue", get(queue).route_layer(role(Viewer, 0)))
        .route("/v1/rollouts", get(rollouts).route_layer(role(Viewer, 0)))
        .route(
            "/v1/rollouts/{id}",
            get(rollout).route_layer(role(Viewer, 0)),
        )
        .route(
            "/v1/rollouts/{id}/timeline",
            get(timeline).route_layer(role(Viewer, 0)),
        )
        .route(
            "/v1/rollouts/{id}/{action}",
            post(control).route_layer(role(Operator, json)),
        )
        .route(
            "/v1/devices",
            get(devices)
                .route_layer(role(Viewer, 0))
                .merge(post(enrol).route_layer(role(Admin, json))),
        )
        .route("/v1/devices/{id}", get(device).route_layer(role(Viewer, 0)))
        .route(
            "/v1/devices/{id}/reports",
            get(device_reports).route_layer(role(Viewer, 0)),
        )
        .route("/v1/audit", get(audit).route_layer(role(Viewer, 0)))
        .route(
            "/v1/audit/verify",
            get(audit_verify).route_layer(role(Viewer, 0)),
        )
        .route("/v1/policy", get(policy).route_layer(role(Viewer, 0)))
        .route(
            "/v1/policy/reload",
            post(reload_policy).route_layer(role(Admin, json)),
        )
        .route(
            "/v1/trust/reload",
            post(reload_trust).route_layer(role(Admin, json)),
        )
        .route("/v1/sync", post(sync).route_layer(role(Operator, json)))
        .route("/v1/clock", put(set_clock).route_layer(role(Admin, json)))
        .route("/v1/status", get(status).route_layer(role(Viewer, 0)))
        .route(
            "/v1/openapi.json",
            get(openapi).route_layer(Guard::new(Public, 0)),
        )
        .route("/metrics", get(metrics).route_layer(role(Viewer, 0)))
        .route(
            "/healthz",
            get(|| async { "ok" }).route_layer(Guard::new(Public, 0)),
        )
        .merge(crate::console::routes().route_layer(Guard::new(Public, 0)))
        .fallback(|| async { Error::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { Error::BadRequest("method not allowed".into()) })
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(60),
            foundations::http::timeout,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(
            crate::console::security_headers,
        ))
        .with_state(d)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn status(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Viewer)?;
    Ok(Json(serde_json::json!({
        "operator": op.name,
        "role": op.role,
        "now": d.clock.now(),
        "releases": d.store().releases()?.len(),
        "pending": d.store().releases()?.iter().filter(|r| r.pending()).count(),
        "devices": d.store().devices()?.len(),
        "rollouts": d.with_rollouts(|all| all.count()),
        "checkin_interval_secs": d.cfg().limits.checkin_interval_secs,
    })))
}

/// A release with the state of its approval signature.
fn release_view(d: &Dispatcher, r: crate::store::ReleaseRecord) -> crate::views::ReleaseView {
    let approval_signature = d.store().release_dir(&r.id).join("approved.suit").exists();
    crate::views::ReleaseView {
        record: r,
        approval_signature,
    }
}

async fn releases(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let v: Vec<_> = d
        .store()
        .releases()?
        .into_iter()
        .map(|r| release_view(&d, r))
        .collect();
    Ok(Json(serde_json::json!({ "releases": v })))
}

async fn release(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let r = d
        .store()
        .release(&id)?
        .ok_or_else(|| Error::NotFound(format!("release {id}")))?;
    Ok(Json(
        serde_json::to_value(release_view(&d, r)).map_err(|e| Error::Other(e.to_string()))?,
    ))
}

async fn queue(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let q: Vec<_> = d
        .store()
        .releases()?
        .into_iter()
        .filter(|r| r.pending())
        .map(|r| release_view(&d, r))
        .collect();
    Ok(Json(serde_json::json!({ "queue": q })))
}

/// A direct upload by an internal publisher (A1): only T1 releases signed by an internal key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    envelope_b64: String,
    blob_b64: String,
    /// The release key (COSE_Key), since internal publishers have no key repository.
    key_b64: String,
}

async fn upload(
    State(d): St,
    h: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Error> {
    let op = auth(&d, &h, OperatorRole::Operator)?;
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(e.body_text())
        } else {
            Error::BadRequest(e.body_text())
        }
    })?;
    let u: Upload =
        serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("body: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = b64
        .decode(u.envelope_b64.as_bytes())
        .map_err(|_| Error::BadRequest("envelope_b64 is not base64".into()))?;
    let blob = b64
        .decode(u.blob_b64.as_bytes())
        .map_err(|_| Error::BadRequest("blob_b64 is not base64".into()))?;
    let key = Zeroizing::new(
        b64.decode(u.key_b64.as_bytes())
            .map_err(|_| Error::BadRequest("key_b64 is not base64".into()))?,
    );
    if envelope.len() > d.cfg().limits.max_envelope_bytes {
        return Err(Error::BadRequest("envelope too large".into()));
    }
    let source = format!("upload:{}", op.name);
    let r = d
        .intake(&envelope, &blob, Some(key), &source, &op.name)
        .await?;
    let status = if r.result == "created" {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(r)).into_response())
}

async fn approve(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<DecisionRequest>,
) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Operator)?;
    let r = d.approve(&id, &op, &req).await?;
    Ok(Json(
        serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

async fn reject(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<Reason>,
) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Operator)?;
    let r = d.reject(&id, &op, &req.reason).await?;
    Ok(Json(
        serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?,
    ))
}

#[derive(Debug, Serialize)]
struct RolloutView {
    id: String,
    release_id: String,
    status: crate::rollout::Status,
    progress: crate::rollout::Progress,
    window: Option<String>,
    decision: crate::store::Decision,
    alert: Option<String>,
    not_before: chrono::DateTime<chrono::Utc>,
    devices: std::collections::BTreeMap<String, crate::rollout::DeviceProgress>,
}

fn view(r: &crate::store::RolloutRecord, with_devices: bool) -> RolloutView {
    RolloutView {
        id: r.rollout.id.clone(),
        release_id: r.rollout.release_id.clone(),
        status: r.rollout.status.clone(),
        progress: r.rollout.progress(),
        window: r.window.clone(),
        decision: r.decision.clone(),
        alert: r.alert.clone(),
        not_before: r.rollout.not_before,
        devices: if with_devices {
            r.rollout.devices().clone()
        } else {
            Default::default()
        },
    }
}

async fn rollouts(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let v: Vec<RolloutView> = d.with_rollouts(|all| all.map(|r| view(r, false)).collect());
    Ok(Json(serde_json::json!({ "rollouts": v })))
}

async fn rollout(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    d.with_rollout(&id, |r| Json(view(r, true)))
        .ok_or_else(|| Error::NotFound(format!("rollout {id}")))
}

async fn timeline(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<crate::views::Timeline>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let r = d.rollout(&id)?;
    Ok(Json(crate::views::timeline(&r, |device| {
        d.store().reports(device)
    })?))
}

async fn control(
    State(d): St,
    h: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Json(req): Json<Reason>,
) -> Result<Json<RolloutView>, Error> {
    let op = auth(&d, &h, OperatorRole::Operator)?;
    if !matches!(action.as_str(), "pause" | "resume" | "abort") {
        return Err(Error::NotFound(format!(
            "no action {action}: pause, resume or abort"
        )));
    }
    Ok(Json(view(
        &d.control(&id, &op, &action, &req.reason)?,
        false,
    )))
}

async fn devices(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    Ok(Json(serde_json::json!({ "devices": d.store().devices()? })))
}

/// Reports on one device page, by default and at most (`GET /v1/devices/{id}/reports`).
const REPORTS_PAGE_DEFAULT: usize = 20;
/// See [`REPORTS_PAGE_DEFAULT`].
const REPORTS_PAGE_MAX: usize = 100;
/// Bytes of reports on one page: a page is bounded whatever the devices sent (a report is
/// at most 8 KiB on the wire, its message at most 2 KiB).
const REPORTS_PAGE_BYTES: usize = 128 << 10;
/// Rollouts shown on a device page, the newest (`rollouts_total` counts them all).
const DEVICE_PAGE_ROLLOUTS: usize = 20;

/// `?before=SEQ&limit=N` of a report listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportsQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// A page of a device's reports, newest first, and the cursor of the next.
fn reports_page(d: &Dispatcher, id: &str, q: &ReportsQuery) -> Result<serde_json::Value, Error> {
    let limit = q
        .limit
        .unwrap_or(REPORTS_PAGE_DEFAULT)
        .clamp(1, REPORTS_PAGE_MAX);
    let (reports, next) = d
        .store()
        .reports_page(id, q.before, limit, REPORTS_PAGE_BYTES)?;
    Ok(serde_json::json!({ "reports": reports, "next_before": next }))
}

/// One device: its record (with the counts of every report it sent), the first page of its
/// reports (newest first; the rest through `/v1/devices/{id}/reports?before=`), and where
/// it stands in the newest rollouts that include it. Bounded whatever the device sent.
async fn device(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let dev = d
        .store()
        .device(&id)?
        .ok_or_else(|| Error::NotFound(format!("device {id}")))?;
    let page = reports_page(
        &d,
        &id,
        &ReportsQuery {
            before: None,
            limit: None,
        },
    )?;
    // Where the device stands in every rollout that includes it, newest first.
    let mine: Vec<serde_json::Value> = d.with_rollouts(|all| {
        all.rev()
            .filter_map(|r| {
                r.rollout.device(&id).map(|p| {
                    serde_json::json!({
                        "rollout": r.rollout.id,
                        "release_id": r.rollout.release_id,
                        "rollout_status": r.rollout.status,
                        "progress": p,
                    })
                })
            })
            .collect()
    });
    let rollouts: Vec<&serde_json::Value> = mine.iter().take(DEVICE_PAGE_ROLLOUTS).collect();
    Ok(Json(serde_json::json!({
        "device": dev,
        "reports": page["reports"],
        "reports_next_before": page["next_before"],
        "rollouts": rollouts,
        "rollouts_total": mine.len(),
    })))
}

/// `GET /v1/devices/{id}/reports?before=SEQ&limit=N`: a device's stored reports, newest
/// first, at most `limit` (default 20, at most 100) and 128 KiB; `next_before` is the
/// cursor of the next page (`null`: none).
async fn device_reports(
    State(d): St,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReportsQuery>,
) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    if d.store().device(&id)?.is_none() {
        return Err(Error::NotFound(format!("device {id}")));
    }
    Ok(Json(reports_page(&d, &id, &q)?))
}

async fn enrol(
    State(d): St,
    h: HeaderMap,
    Json(req): Json<EnrolRequest>,
) -> Result<Response, Error> {
    let op = auth(&d, &h, OperatorRole::Admin)?;
    let bundle = d.enrol(&op, &req)?;
    // The bundle holds the device's OSCORE master secrets: never cache it.
    Ok((
        axum::http::StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(bundle),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn audit(
    State(d): St,
    h: HeaderMap,
    Query(p): Query<Page>,
) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let records = d.audit_log().page(p.from, p.limit.min(1000))?;
    Ok(Json(serde_json::json!({ "records": records })))
}

/// Verifies the audit chain as it stands (every record up to the head the running log
/// knows), while the dispatcher goes on writing.
async fn audit_verify(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let log = d.audit_log().clone();
    let r = tokio::task::spawn_blocking(move || log.verify())
        .await
        .map_err(|e| Error::Other(format!("audit verification: {e}")))?;
    Ok(Json(match r {
        Ok(rep) => serde_json::json!({
            "intact": true,
            "records": rep.records,
            "head_mac": rep.head_mac,
        }),
        Err(e) => {
            tracing::error!(error = %e, "ALERT: the audit chain does not verify");
            serde_json::json!({
                "intact": false,
                "records": d.audit_log().head()?.next_seq,
                "error": e.to_string(),
            })
        }
    }))
}

async fn policy(State(d): St, h: HeaderMap) -> Result<Json<crate::views::PolicyView>, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    Ok(Json(crate::views::policy(&d.policy(), d.clock.now())))
}

async fn reload_policy(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Admin)?;
    d.reload_policy(&op.name)?;
    Ok(Json(serde_json::json!({ "result": "reloaded" })))
}

async fn reload_trust(State(d): St, h: HeaderMap) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Admin)?;
    d.reload_trust(&op.name)?;
    Ok(Json(serde_json::json!({ "result": "reloaded" })))
}

async fn sync(State(d): St, h: HeaderMap) -> Result<Json<crate::poll::PollReport>, Error> {
    auth(&d, &h, OperatorRole::Operator)?;
    Ok(Json(crate::poll::poll_once(&d).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockReq {
    now: Option<chrono::DateTime<chrono::Utc>>,
}

async fn set_clock(
    State(d): St,
    h: HeaderMap,
    Json(c): Json<ClockReq>,
) -> Result<Json<serde_json::Value>, Error> {
    let op = auth(&d, &h, OperatorRole::Admin)?;
    if d.clock.injectable() {
        d.audit(
            &op.name,
            "clock.set",
            None,
            "ok",
            c.now.map(|t| t.to_rfc3339()).as_deref(),
        )?;
    }
    d.clock.set(c.now)?;
    d.wake.notify_one();
    Ok(Json(serde_json::json!({ "now": d.clock.now() })))
}

async fn metrics(State(d): St, h: HeaderMap) -> Result<Response, Error> {
    auth(&d, &h, OperatorRole::Viewer)?;
    let text = d.metrics.render(&d);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
