//! HTTP API: the built-in authorization server and the keys resource server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Json, Router};
use foundations::audit::AuditEvent;
use foundations::http::{Gate, Guard, Public, bearer};
use foundations::now_unix;
use foundations::token::{Jwks, TokenSigner};
use serde::Deserialize;

use crate::auth::{Authenticator, Principal};
use crate::clients::Registry;
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{self, KeyBody};
use crate::ratelimit::RateLimiter;
use crate::store::{PutOutcome, RevokeOutcome, Store};

/// Remote address of the connection, inserted by the serve loop.
pub use foundations::serve::PeerAddr;

/// Shared state of the service.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: Config,
    store: Store,
    auth: Authenticator,
    signer: TokenSigner,
    clients: Arc<Registry>,
    by_client: RateLimiter<String>,
    by_addr: RateLimiter<std::net::IpAddr>,
    replay: crate::auth::ReplayCache,
}

impl AppState {
    pub fn new(
        cfg: Config,
        store: Store,
        signer: TokenSigner,
        clients: Registry,
    ) -> Result<AppState, crate::Error> {
        let auth = Authenticator::new(&cfg, &signer)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            store.start_background();
        }
        let l = &cfg.limits;
        let by_client = RateLimiter::new(l.token_burst_per_client, l.token_per_sec_per_client);
        let by_addr = RateLimiter::new(l.token_burst_per_addr, l.token_per_sec_per_addr);
        Ok(AppState {
            inner: Arc::new(Inner {
                cfg,
                store,
                auth,
                signer,
                clients: Arc::new(clients),
                by_client,
                by_addr,
                replay: Default::default(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }
}

/// The service's routes. Every route has a gate and a body limit, decided from the request
/// head before its body is read (`foundations::http::Guard`): the key and audit routes verify
/// the bearer token there (a refusal is audited), the others are public; then timeout and
/// concurrency limit.
pub fn router(state: AppState) -> Router {
    let limits = state.inner.cfg.limits.clone();
    let timeout = Duration::from_secs(limits.request_timeout_secs.max(1));
    let body_max = limits.max_body_bytes as u64;
    let public = |limit: u64| Guard::new(Public, limit);
    let bearer = |action: Action, limit: u64| {
        Guard::new(
            BearerGate {
                st: state.clone(),
                action,
            },
            limit,
        )
    };
    let route = |m: MethodRouter<AppState>, g: Guard<Public>| m.route_layer(g);
    Router::new()
        .route("/oauth/token", route(post(token), public(body_max)))
        .route(
            "/.well-known/oauth-authorization-server",
            route(get(as_metadata), public(0)),
        )
        .route("/.well-known/jwks.json", route(get(jwks), public(0)))
        .route(
            "/v1/keys/{kid}",
            get(get_key)
                .route_layer(bearer(Action::Read, 0))
                .merge(put(put_key).route_layer(bearer(Action::Create, body_max))),
        )
        .route(
            "/v1/keys/{kid}/meta",
            get(get_meta).route_layer(bearer(Action::Meta, 0)),
        )
        .route(
            "/v1/keys/{kid}/revoke",
            post(revoke).route_layer(bearer(Action::Revoke, 0)),
        )
        .route(
            "/v1/audit",
            get(audit).route_layer(bearer(Action::Audit, 0)),
        )
        .route("/v1/openapi.json", route(get(openapi), public(0)))
        .route("/healthz", route(get(|| async { "ok" }), public(0)))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::BadRequest("method not allowed".into()) })
        .layer(axum::middleware::from_fn(move |req, next| {
            request_timeout(req, next, timeout)
        }))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// The bearer-token gate of the key and audit routes: the token is verified from the head;
/// a refusal is audited (with the action and kid of the route) and answered 401.
#[derive(Debug, Clone)]
struct BearerGate {
    st: AppState,
    action: Action,
}

impl Gate for BearerGate {
    async fn check(&self, head: &mut Parts) -> Result<(), Response> {
        let peer = head.extensions.get::<PeerAddr>().map(|p| p.0);
        // `/v1/keys/{kid}[/...]`: the kid, for the audit record, if it is one.
        let kid = head
            .uri
            .path()
            .strip_prefix("/v1/keys/")
            .and_then(|rest| rest.split('/').next())
            .filter(|k| crate::util::valid_kid(k));
        let verdict = match bearer(&head.headers) {
            None => Err("no bearer token".to_string()),
            Some(t) => self
                .st
                .inner
                .auth
                .authenticate(t, now_unix())
                .await
                .map_err(|e| e.to_string()),
        };
        match verdict {
            Ok(p) => {
                head.extensions.insert(p);
                Ok(())
            }
            Err(reason) => {
                let mut cx = Ctx::new(&self.st, peer, self.action, kid);
                Err(cx.deny(ApiError::Unauthenticated(reason)).into_response())
            }
        }
    }
}

/// Applies the request timeout and writes one structured log line per request (at debug
/// level: method, path, status, duration; never headers or bodies, which carry secrets).
async fn request_timeout(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    timeout: Duration,
) -> Response {
    let log = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        (
            std::time::Instant::now(),
            req.method().clone(),
            req.uri().path().to_owned(),
        )
    });
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout.into_response(),
    };
    let Some((started, method, path)) = log else {
        return resp;
    };
    tracing::debug!(
        %method,
        path = %path.escape_debug(),
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

fn json_no_store<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    let mut r = (status, Json(v)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn peer_addr(peer: &Option<Extension<PeerAddr>>) -> Option<SocketAddr> {
    peer.as_ref().map(|p| p.0.0)
}

// ---------------------------------------------------------------------------------------
// Authorization server

/// Reads `Authorization: Basic` client credentials (RFC 6749 §2.3.1: form-encoded, then
/// base64).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || b64.len() > 1024 {
        return None;
    }
    let raw = foundations::b64_decode(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        crate::util::form_decode(id)?,
        crate::util::form_decode(secret)?,
    ))
}

fn oauth_err(code: &'static str, status: StatusCode, detail: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        code,
        status,
        detail: detail.into(),
    }
}

async fn token(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = &st.inner;
    if let Some(Extension(PeerAddr(addr))) = &peer
        && !s.by_addr.check(&addr.ip())
    {
        return Err(ApiError::RateLimited);
    }
    // Read only now, after the rate limit (the route's guard capped its size).
    let body = axum::body::to_bytes(body, s.cfg.limits.max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(oauth_err(
            "invalid_request",
            StatusCode::BAD_REQUEST,
            "content type",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| oauth_err("invalid_request", StatusCode::BAD_REQUEST, "utf-8"))?;
    let form = crate::util::parse_form(text)
        .ok_or_else(|| oauth_err("invalid_request", StatusCode::BAD_REQUEST, "malformed form"))?;
    let param = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let basic = basic_credentials(&headers);
    if form.iter().any(|(k, _)| k == "client_secret") {
        // RFC 6749 §2.3: one authentication method per request.
        return Err(oauth_err(
            "invalid_request",
            StatusCode::BAD_REQUEST,
            "credentials in body",
        ));
    }
    if param("grant_type") != Some("client_credentials") {
        return Err(oauth_err(
            "unsupported_grant_type",
            StatusCode::BAD_REQUEST,
            "grant_type",
        ));
    }
    let mut event = AuditEvent {
        time: now_unix(),
        actor: "anonymous".into(),
        peer: peer_addr(&peer).map(|p| p.to_string()),
        action: "token.issue".into(),
        ..Default::default()
    };
    let authenticated = match (basic, param("client_assertion_type")) {
        (Some(_), Some(_)) => {
            return Err(oauth_err(
                "invalid_request",
                StatusCode::BAD_REQUEST,
                "two client authentication methods",
            ));
        }
        // client_secret_basic (RFC 6749 §2.3.1).
        (Some((client_id, secret)), None) => s
            .clients
            .authenticate(&client_id, &secret)
            .await?
            .ok_or_else(|| format!("client_secret_basic failed for {client_id:?}")),
        // private_key_jwt (RFC 7523 §2.2).
        (None, Some(t)) if t == crate::auth::JWT_BEARER => match param("client_assertion") {
            Some(a) => crate::auth::verify_client_assertion(
                &s.cfg,
                &s.clients,
                &s.replay,
                a,
                param("client_id"),
                now_unix(),
            ),
            None => Err("client_assertion missing".into()),
        },
        (None, _) => Err("no supported client authentication".into()),
    };
    let client = match authenticated {
        Ok(c) => c,
        Err(detail) => {
            event.result = "denied:invalid_client".into();
            s.store.audit().record(event)?;
            return Err(oauth_err(
                "invalid_client",
                StatusCode::UNAUTHORIZED,
                detail,
            ));
        }
    };
    event.actor = client.client_id.clone();
    // Per-client limit after authentication: client ids are not secret, so counting
    // unauthenticated attempts against them would let anyone lock a client out. Failed
    // attempts are bounded by the per-address limit above (secrets are 256-bit random).
    if !s.by_client.check(&client.client_id) {
        event.result = "denied:rate_limited".into();
        s.store.audit().record(event)?;
        return Err(ApiError::RateLimited);
    }
    let resp = crate::auth::issue_token(&s.cfg, &s.signer, &client, param("scope"), now_unix())?;
    match resp {
        Ok(t) => {
            event.result = "ok".into();
            s.store.audit().record(event)?;
            Ok(json_no_store(StatusCode::OK, &t))
        }
        Err(code) => {
            event.result = format!("denied:{code}");
            s.store.audit().record(event)?;
            Err(oauth_err(
                code,
                StatusCode::BAD_REQUEST,
                "scope not allowed",
            ))
        }
    }
}

async fn as_metadata(State(st): State<AppState>) -> Response {
    let iss = &st.inner.cfg.issuer;
    // RFC 8414 §2. response_types_supported is REQUIRED but this server has no
    // authorization endpoint, so the list is empty.
    json_no_store(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/oauth/token"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "response_types_supported": [],
            "scopes_supported": [model::SCOPE_WRITE, model::SCOPE_READ, model::SCOPE_REVOKE,
                                 model::SCOPE_ADMIN, model::SCOPE_AUDIT,
                                 model::SCOPE_RELEASES_WRITE, model::SCOPE_RELEASES_READ],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        }),
    )
}

async fn jwks(State(st): State<AppState>) -> Response {
    Json(Jwks {
        keys: vec![st.inner.signer.jwk().clone()],
    })
    .into_response()
}

// ---------------------------------------------------------------------------------------
// Resource server

/// The operation being authorised, for scopes and the audit record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Create,
    Read,
    Meta,
    Revoke,
    Audit,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Create => "key.create",
            Action::Read => "key.read",
            Action::Meta => "key.meta",
            Action::Revoke => "key.revoke",
            Action::Audit => "audit.read",
        }
    }
}

/// A request in progress: who (once known) and the audit record being built.
struct Ctx<'a> {
    st: &'a AppState,
    event: AuditEvent,
}

impl<'a> Ctx<'a> {
    fn new(st: &'a AppState, peer: Option<SocketAddr>, action: Action, kid: Option<&str>) -> Self {
        Ctx {
            st,
            event: AuditEvent {
                time: now_unix(),
                actor: "anonymous".into(),
                peer: peer.map(|p| p.to_string()),
                action: action.name().into(),
                kid: kid.map(str::to_string),
                ..Default::default()
            },
        }
    }

    /// Records a refusal in the audit log and returns the error.
    fn deny(&mut self, err: ApiError) -> ApiError {
        let reason = match &err {
            ApiError::Unauthenticated(_) => "denied:invalid_token",
            ApiError::InsufficientScope(_) => "denied:insufficient_scope",
            ApiError::ProductNotGranted(_) => "denied:product_not_granted",
            ApiError::NotFound => "not_found",
            ApiError::Gone => "gone",
            ApiError::Conflict(_) => "conflict",
            _ => "denied:bad_request",
        };
        self.event.result = reason.into();
        if let Err(e) = self
            .st
            .inner
            .store
            .audit()
            .record(std::mem::take(&mut self.event))
        {
            return ApiError::Internal(format!("audit append failed: {e}"));
        }
        err
    }

    fn ok(&mut self, result: &str) -> Result<(), ApiError> {
        self.event.result = result.into();
        self.st
            .inner
            .store
            .audit()
            .record(std::mem::take(&mut self.event))?;
        Ok(())
    }

    /// Records who the gate authenticated and checks the scope.
    fn authorize(&mut self, p: &Principal, scopes: &[&'static str]) -> Result<(), ApiError> {
        self.event.actor = p.client_id.clone();
        self.event.issuer = Some(p.issuer.clone());
        if !scopes.iter().any(|s| p.has_scope(s)) {
            return Err(self.deny(ApiError::InsufficientScope(scopes[0])));
        }
        Ok(())
    }

    fn check_product(&mut self, p: &Principal, product: &str) -> Result<(), ApiError> {
        self.event.product = Some(product.to_string());
        if p.grants_product(product) {
            Ok(())
        } else {
            Err(self.deny(ApiError::ProductNotGranted(product.to_string())))
        }
    }
}

/// The `{kid}` path segment, validated (1 to 128 URL-safe characters).
fn check_kid(
    kid: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    match kid {
        Ok(Path(kid)) if crate::util::valid_kid(&kid) => Ok(kid),
        _ => Err(ApiError::BadRequest("kid".into())),
    }
}

async fn put_key(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    kid: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let kid = check_kid(kid)?;
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Create, Some(&kid));
    cx.authorize(&p, &[model::SCOPE_WRITE])?;
    let body = body.map_err(|_| cx.deny(ApiError::TooLarge))?;
    let req: KeyBody = serde_json::from_slice(&body)
        .map_err(|e| cx.deny(ApiError::BadRequest(format!("body: {e}"))))?;
    let product = foundations::normalize_product(&req.product)
        .ok_or_else(|| cx.deny(ApiError::BadRequest("product".into())))?;
    cx.check_product(&p, &product)?;
    let cose_key = zeroize::Zeroizing::new(
        foundations::b64_decode(&req.cose_key)
            .ok_or_else(|| cx.deny(ApiError::BadRequest("cose_key encoding".into())))?,
    );
    model::validate_cose_key(&cose_key).map_err(|e| cx.deny(ApiError::BadRequest(e.into())))?;
    let outcome = st
        .inner
        .store
        .put_key(&kid, &product, &cose_key, cx.event.clone())
        .await?;
    match outcome {
        PutOutcome::Created(m) => Ok(json_no_store(StatusCode::CREATED, &m)),
        PutOutcome::Unchanged(m) => Ok(json_no_store(StatusCode::OK, &m)),
        PutOutcome::Revoked => Err(ApiError::Gone),
        _ => Err(ApiError::Conflict("different material")),
    }
}

/// Looks up the key's metadata and applies the product and revocation checks shared by
/// reads, meta and revoke.
fn load_meta(
    cx: &mut Ctx<'_>,
    p: &Principal,
    kid: &str,
    admin_ok: bool,
) -> Result<model::KeyMeta, ApiError> {
    let Some(meta) = cx.st.inner.store.meta(kid)? else {
        return Err(cx.deny(ApiError::NotFound));
    };
    if !(admin_ok && p.has_scope(model::SCOPE_ADMIN)) {
        cx.check_product(p, &meta.product)?;
    }
    cx.event.product = Some(meta.product.clone());
    if meta.state != "active" {
        return Err(cx.deny(ApiError::Gone));
    }
    Ok(meta)
}

async fn get_key(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    kid: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let kid = check_kid(kid)?;
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Read, Some(&kid));
    cx.authorize(&p, &[model::SCOPE_READ])?;
    // One read of the record; the checks below apply to exactly what is decrypted.
    let Some((meta, sealed)) = st.inner.store.load(&kid)? else {
        return Err(cx.deny(ApiError::NotFound));
    };
    cx.check_product(&p, &meta.product)?;
    if meta.state != "active" {
        return Err(cx.deny(ApiError::Gone));
    }
    let key = st.inner.store.open_sealed(&meta, &sealed)?;
    cx.ok("ok")?;
    Ok(json_no_store(
        StatusCode::OK,
        &KeyBody {
            product: meta.product,
            cose_key: foundations::b64(&key),
        },
    ))
}

async fn get_meta(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    kid: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let kid = check_kid(kid)?;
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Meta, Some(&kid));
    cx.authorize(
        &p,
        &[model::SCOPE_READ, model::SCOPE_WRITE, model::SCOPE_ADMIN],
    )?;
    let meta = load_meta(&mut cx, &p, &kid, true)?;
    cx.ok("ok")?;
    Ok(json_no_store(StatusCode::OK, &meta))
}

async fn revoke(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    kid: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let kid = check_kid(kid)?;
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Revoke, Some(&kid));
    cx.authorize(&p, &[model::SCOPE_REVOKE, model::SCOPE_ADMIN])?;
    load_meta(&mut cx, &p, &kid, true)?;
    match st.inner.store.revoke(&kid, cx.event.clone()).await? {
        RevokeOutcome::Revoked(m) => Ok(json_no_store(StatusCode::OK, &m)),
        RevokeOutcome::AlreadyRevoked => Err(ApiError::Gone),
        _ => Err(ApiError::NotFound),
    }
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Audit, None);
    cx.authorize(&p, &[model::SCOPE_AUDIT])?;
    let Query(q) = q.map_err(|e| cx.deny(ApiError::BadRequest(e.to_string())))?;
    let max = st.inner.cfg.limits.audit_page_max;
    let limit = q.limit.unwrap_or(max).clamp(1, max);
    let log = st.inner.store.audit();
    // Everything recorded before this request is visible to it (drained under the lock).
    let (records, head) = {
        let mut head = log.lock()?;
        log.drain_locked(&mut head)?;
        (log.page(q.from, limit)?, *head)
    };
    cx.ok("ok")?;
    Ok(json_no_store(
        StatusCode::OK,
        &serde_json::json!({
            "records": records,
            "head": { "next_seq": head.next_seq, "mac": hex::encode(head.last_mac) },
        }),
    ))
}

async fn openapi() -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        crate::api::OPENAPI,
    )
        .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

/// OpenAPI 3.1 description of this API (kept in sync by `tests/openapi.rs`).
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Limits, TlsConfig, TokenConfig};
    use axum::body::Body;

    fn state(dir: &std::path::Path) -> (AppState, TokenSigner) {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            issuer: "https://kr.test".into(),
            audience: "https://kr.test/v1".into(),
            data_dir: dir.join("data"),
            clients_file: dir.join("clients.json"),
            master_key_file: dir.join("unused"),
            token_signing_key_file: dir.join("unused"),
            tls: TlsConfig {
                cert_file: dir.join("unused"),
                key_file: dir.join("unused"),
                ca_file: None,
            },
            tokens: TokenConfig::default(),
            limits: Limits::default(),
            serve: Default::default(),
            external_issuers: vec![],
        };
        let signer = TokenSigner::generate().unwrap();
        let store =
            Store::open(&cfg.data_dir, crate::crypto::MasterKey::generate().unwrap()).unwrap();
        let reg = Registry::open(&cfg.clients_file).unwrap();
        let copy = TokenSigner::load(&{
            let p = dir.join("signer.pem");
            signer.save(&p).unwrap();
            p
        })
        .unwrap();
        (AppState::new(cfg, store, signer, reg).unwrap(), copy)
    }

    async fn call(app: &Router, req: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    use tower::ServiceExt as _;

    #[tokio::test]
    async fn router_without_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (st, signer) = state(dir.path());
        let app = router(st);
        let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();

        let (s, v) = call(&app, get("/v1/keys/k1")).await;
        assert_eq!(
            (s, v["status"].as_u64()),
            (StatusCode::UNAUTHORIZED, Some(401))
        );
        let (s, v) = call(&app, get("/nope")).await;
        assert_eq!(
            (s, v["status"].as_u64()),
            (StatusCode::NOT_FOUND, Some(404))
        );
        let (s, v) = call(&app, get("/v1/openapi.json")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["openapi"], "3.1.0");

        // A token from the built-in signer with product and scope: write then read.
        let now = now_unix();
        let claims = foundations::token::Claims {
            iss: "https://kr.test".into(),
            sub: None,
            aud: foundations::token::Audience::One("https://kr.test/v1".into()),
            exp: now + 60,
            iat: now,
            nbf: None,
            jti: None,
            client_id: Some("c".into()),
            scope: Some("keys:write keys:read".into()),
            extra: serde_json::Map::from_iter([(
                "products".to_string(),
                serde_json::json!([
                    "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
                ]),
            )]),
        };
        let tok = signer.sign(&claims).unwrap();
        let key = foundations::b64(b"\xa2\x01\x04\x20\x50aaaaaaaaaaaaaaaa");
        let body = serde_json::json!({
            "product": "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE/1492af14-2569-5e48-bf42-9b2d51f2ab45",
            "cose_key": key,
        });
        let put = axum::http::Request::put("/v1/keys/k1")
            .header("authorization", format!("Bearer {tok}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (s, v) = call(&app, put).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let req = axum::http::Request::get("/v1/keys/k1")
            .header("authorization", format!("Bearer {tok}"))
            .body(Body::empty())
            .unwrap();
        let (s, v) = call(&app, req).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["cose_key"], key.as_str());
        let bad = axum::http::Request::get("/v1/keys/a%2Fb")
            .header("authorization", format!("Bearer {tok}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, bad).await.0, StatusCode::BAD_REQUEST);
    }
}
