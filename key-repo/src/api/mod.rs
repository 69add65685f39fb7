//! HTTP API: the built-in authorization server ([`oauth`]) and the keys resource server
//! ([`keys`]), behind gates that authenticate from the request head.

mod keys;
mod oauth;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Json, Router};
use foundations::audit::{AuditEvent, RefusalAggregator};
use foundations::http::{Gate, Guard, Public, bearer};
use foundations::now_unix;
use foundations::token::TokenSigner;

use crate::auth::{Authenticator, Refusal};
use crate::clients::Registry;
use crate::config::Config;
use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

use keys::Action;

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
    /// Refusals no authenticated caller answers for, audited at a bounded rate.
    refusals: RefusalAggregator,
}

impl AppState {
    pub fn new(
        cfg: Config,
        store: Store,
        signer: TokenSigner,
        clients: Registry,
    ) -> Result<AppState, crate::Error> {
        let auth = Authenticator::new(&cfg, &signer)?;
        let l = &cfg.limits;
        let by_client = RateLimiter::new(l.token_burst_per_client, l.token_per_sec_per_client);
        let by_addr = RateLimiter::new(l.token_burst_per_addr, l.token_per_sec_per_addr);
        let refusals = RefusalAggregator::new(cfg.audit.refusal_limits());
        let st = AppState {
            inner: Arc::new(Inner {
                cfg,
                store,
                auth,
                signer,
                clients: Arc::new(clients),
                by_client,
                by_addr,
                replay: Default::default(),
                refusals,
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            st.inner.store.start_background();
            st.start_refusal_summaries();
        }
        Ok(st)
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

    /// Records the summaries of refusal windows that ended, every second, while the state
    /// lives.
    fn start_refusal_summaries(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                for ev in inner.refusals.due(now_unix()) {
                    if let Err(e) = inner.store.audit().record(ev) {
                        tracing::error!(error = %e, "audit of refusals failed");
                    }
                }
            }
        });
    }

    /// Records the summaries of every open refusal window (before the audit trail is read,
    /// and at shutdown), so the trail counts every refusal so far.
    pub fn flush_refusals(&self) -> Result<(), crate::Error> {
        for ev in self.inner.refusals.flush(now_unix()) {
            self.inner.store.audit().record(ev)?;
        }
        Ok(())
    }

    /// Audits a refusal that no authenticated caller answers for: the first of its source's
    /// window as it is, the others counted (`foundations::audit::RefusalAggregator`).
    fn audit_refusal(&self, peer: Option<SocketAddr>, event: AuditEvent) -> Result<(), ApiError> {
        let source = peer.map_or_else(
            || "unknown".to_string(),
            |p| foundations::audit::source_of(p.ip()),
        );
        for ev in self.inner.refusals.refused(&source, event) {
            self.inner
                .store
                .audit()
                .record(ev)
                .map_err(|e| ApiError::Internal(format!("audit append failed: {e}")))?;
        }
        Ok(())
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
        .route("/oauth/token", route(post(oauth::token), public(body_max)))
        .route(
            "/.well-known/oauth-authorization-server",
            route(get(oauth::as_metadata), public(0)),
        )
        .route("/.well-known/jwks.json", route(get(oauth::jwks), public(0)))
        .route(
            "/v1/keys/{kid}",
            get(keys::get_key)
                .route_layer(bearer(Action::Read, 0))
                .merge(put(keys::put_key).route_layer(bearer(Action::Create, body_max))),
        )
        .route(
            "/v1/keys/{kid}/meta",
            get(keys::get_meta).route_layer(bearer(Action::Meta, 0)),
        )
        .route(
            "/v1/keys/{kid}/revoke",
            post(keys::revoke).route_layer(bearer(Action::Revoke, 0)),
        )
        .route(
            "/v1/audit",
            get(keys::audit).route_layer(bearer(Action::Audit, 0)),
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

/// The bearer-token gate of the key and audit routes: the token is verified from the head
/// (and, for the built-in issuer, its client checked against the clients file); a refusal
/// is audited at a bounded rate per source and answered 401.
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
            None => Err(Refusal::Token(foundations::token::TokenError::Malformed(
                "no bearer token",
            ))),
            Some(t) => {
                let s = &self.st.inner;
                s.auth.authenticate(t, now_unix(), &s.clients).await
            }
        };
        match verdict {
            Ok(p) => {
                head.extensions.insert(p);
                Ok(())
            }
            Err(refusal) => {
                let mut event = keys::event(peer, self.action, kid);
                event.result = "denied:invalid_token".into();
                if let Refusal::ClientWithdrawn { client_id, why } = &refusal {
                    // The token is genuine: who it was is known, and worth recording.
                    event.actor = client_id.clone();
                    event.issuer = Some(self.st.inner.cfg.issuer.clone());
                    event.reason = Some((*why).to_string());
                }
                if let Err(e) = self.st.audit_refusal(peer, event) {
                    return Err(e.into_response());
                }
                Err(ApiError::Unauthenticated(refusal.to_string()).into_response())
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

async fn openapi() -> Response {
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

/// OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");
