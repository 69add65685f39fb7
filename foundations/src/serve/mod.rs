//! The TLS serve loop every service shares: the listener is passed in, rustls (ring) with
//! HTTP/2 and HTTP/1.1, a bounded connection budget that idle connections cannot exhaust,
//! timeouts at every stage, HSTS on every response, graceful drain on shutdown.
//!
//! Stages and their bounds ([`ServeLimits`]):
//!
//! | stage | bound |
//! |---|---|
//! | accepted, TLS handshake | `handshake_timeout_secs` |
//! | handshake done, request headers | `header_read_timeout_secs` (HTTP/1.1), `idle_timeout_secs` |
//! | between requests (keep-alive), or nothing sent at all | `idle_timeout_secs` |
//! | request headers to response headers | `request_timeout_secs` |
//! | connections at once | `max_connections`, `max_connections_per_ip` |
//!
//! A connection is *idle* while no request is in flight on it. When a new connection finds
//! the budget (or its address's share) spent, the longest-idle connection is closed to make
//! room ([`conns`]); so a thousand connections that complete their handshake and then send
//! nothing cannot keep a legitimate client out, and each is closed after the idle timeout
//! anyway.

mod conns;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::problem::Problem;
use conns::{Registry, RequestGuard};

/// Bounds of the serve loop. Every field has a safe default; services read overrides from
/// the `[serve]` table of their configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeLimits {
    /// Connections held at once (all peers).
    pub max_connections: usize,
    /// Connections held at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Time allowed for the headers of an HTTP/1.1 request once they start.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed: one that completed
    /// its handshake and sent nothing, or sits idle between requests.
    pub idle_timeout_secs: u64,
    /// Time from a request's headers to its response headers (a route may set a shorter
    /// one); the response body may then stream.
    pub request_timeout_secs: u64,
    /// On shutdown, time allowed for requests in flight to finish.
    pub drain_timeout_secs: u64,
    /// `Strict-Transport-Security: max-age` sent on every response (RFC 6797).
    pub hsts_max_age_secs: u64,
    /// HTTP/2 streams at once per connection.
    pub max_concurrent_streams: u32,
    /// Largest request header block.
    pub max_header_bytes: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 512,
            max_connections_per_ip: 64,
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 30,
            request_timeout_secs: 60,
            drain_timeout_secs: 10,
            hsts_max_age_secs: 31_536_000,
            max_concurrent_streams: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ServeLimits {
    /// Checks that the limits can work (non-zero budgets and timeouts).
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            ("max_header_bytes", u64::from(self.max_header_bytes)),
        ];
        match zero.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(format!("serve.{name} must be positive")),
            None => Ok(()),
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with the bound address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), crate::Error> {
    let io = |e| crate::Error::io(addr.to_string(), e);
    let listener = TcpListener::bind(addr).await.map_err(io)?;
    let bound = listener.local_addr().map_err(io)?;
    Ok((listener, bound))
}

/// Remote address of the connection, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `app` over TLS on `listener` until `shutdown` completes; then stops accepting,
/// asks every connection to finish (HTTP/2 GOAWAY, HTTP/1.1 close after the response in
/// flight), waits up to `drain_timeout_secs` and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: &ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), crate::Error> {
    limits.validate().map_err(|reason| crate::Error::Config {
        path: "serve".into(),
        reason,
    })?;
    let registry = Registry::new(limits.max_connections, limits.max_connections_per_ip);
    let ctx = Arc::new(ConnCtx {
        acceptor: TlsAcceptor::from(tls),
        builder: builder(limits),
        app,
        limits: limits.clone(),
        hsts: axum::http::HeaderValue::from_str(&format!("max-age={}", limits.hsts_max_age_secs))
            .map_err(|e| crate::Error::Tls(e.to_string()))?,
        stopping: CancellationToken::new(),
    });
    tokio::pin!(shutdown);
    loop {
        // Back-pressure only while every slot is busy with requests (bounded by their
        // timeouts): an idle slot is always given to a newcomer.
        tokio::select! {
            () = registry.room() => {}
            () = &mut shutdown => break,
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match registry.admit(peer.ip()) {
            Ok(ticket) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(ctx.clone().connection(tcp, peer, ticket));
            }
            Err(why) => {
                tracing::debug!(%peer, ?why, "connection refused: no room");
                drop(tcp);
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = registry.len(),
        evicted = registry.evictions(),
        "shutting down: draining connections"
    );
    ctx.stopping.cancel();
    tokio::select! {
        () = registry.empty() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(secs(limits.drain_timeout_secs)) => tracing::warn!("drain timed out"),
    }
    Ok(())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn builder(l: &ServeLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(secs(l.header_read_timeout_secs))
        .max_buf_size(256 * 1024);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.max_concurrent_streams)
        .max_header_list_size(l.max_header_bytes)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    b
}

/// What every connection task shares.
struct ConnCtx {
    acceptor: TlsAcceptor,
    builder: Builder<TokioExecutor>,
    app: Router,
    limits: ServeLimits,
    hsts: axum::http::HeaderValue,
    stopping: CancellationToken,
}

/// How long an evicted or idle connection may take to close before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl ConnCtx {
    async fn connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        ticket: conns::Ticket,
    ) {
        let conn = ticket.0.clone();
        let tls = tokio::select! {
            r = tokio::time::timeout(secs(self.limits.handshake_timeout_secs), self.acceptor.accept(tcp)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            () = conn.evicted.cancelled() => return,
            () = self.stopping.cancelled() => return,
        };
        let svc = {
            let ctx = self.clone();
            let conn = conn.clone();
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                ctx.clone().request(req, peer, conn.begin_request())
            })
        };
        let served = self.builder.serve_connection(TokioIo::new(tls), svc);
        tokio::pin!(served);
        let idle = secs(self.limits.idle_timeout_secs);
        // Some(deadline) once the connection was asked to close.
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if closing.is_none() && conn.idle_for(idle) {
                tracing::debug!(%peer, "idle connection closed");
                served.as_mut().graceful_shutdown();
                closing = Some(now + CLOSE_GRACE);
            }
            // Busy (a request in flight): look again after a whole idle period.
            let idle_at = Some(conn.idle_deadline(idle))
                .filter(|t| *t > now)
                .unwrap_or(now + idle);
            let close_by = closing.unwrap_or(now);
            tokio::select! {
                r = served.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                    break;
                }
                () = conn.evicted.cancelled(), if closing.is_none() => {
                    served.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                () = self.stopping.cancelled(), if closing.is_none() => {
                    served.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + secs(self.limits.drain_timeout_secs));
                }
                () = tokio::time::sleep_until(idle_at), if closing.is_none() => {}
                () = tokio::time::sleep_until(close_by), if closing.is_some() => break,
            }
        }
        drop(ticket);
    }

    /// One request: peer address in, request timeout, HSTS and in-flight tracking out.
    async fn request(
        self: Arc<Self>,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
        guard: RequestGuard,
    ) -> Result<hyper::Response<Body>, Infallible> {
        req.extensions_mut().insert(PeerAddr(peer));
        let fut = self.app.clone().oneshot(req.map(Body::new));
        let resp = match tokio::time::timeout(secs(self.limits.request_timeout_secs), fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(never)) => match never {},
            Err(_) => Problem::timeout().into_response(),
        };
        let (mut parts, body) = resp.into_parts();
        parts.headers.insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            self.hsts.clone(),
        );
        // The response body keeps its connection busy (holds the guard) until it is sent
        // or dropped.
        let tracked = body.map_frame(move |frame| {
            let _busy = &guard;
            frame
        });
        Ok(hyper::Response::from_parts(parts, Body::new(tracked)))
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
