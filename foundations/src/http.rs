//! Request gates: authentication and the body limit are decided from the request head,
//! before anything of the body is polled.
//!
//! A route is wrapped in a [`Guard`] (`.route_layer(Guard::new(gate, limit))`): the
//! [`Gate`] looks at the method, URI and headers (for example verifies the bearer token) and
//! either refuses with its own response or lets the request through, usually with the caller
//! in the request's extensions; then a declared `Content-Length` above the route's limit is
//! answered `413` with a problem body; then the handler runs with the body capped at the
//! limit (a chunked body that grows past it fails the handler's read, which axum reports as
//! `413` too). So an anonymous client never makes the server read its body, and never
//! learns whether its body would have been valid.
//!
//! A refused request's body is not dropped at once: that would reset an HTTP/2 stream
//! (`CANCEL`) or close an HTTP/1.1 connection under the client's upload (the kernel answers
//! the unread data with a TCP reset), and the client would see a transport error instead of
//! the problem. It is drained in the background while the response is sent, discarding
//! everything (memory stays flat):
//!
//! * HTTP/2: at most [`DRAIN_MAX_BYTES`], then the stream is reset with `NO_ERROR` after the
//!   response (RFC 9113 §8.1); flow control stops the client there;
//! * HTTP/1.1 (a "lingering close", RFC 9112 §9.6): until the body ends or for at most
//!   [`DRAIN_MAX_TIME`], then the connection is closed; a client that stops sending once it
//!   has the response (RFC 9112 §9.5) is released at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse as _, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;

use crate::problem::Problem;

/// HTTP/2: most bytes of a refused body read (and discarded) before its stream is reset.
pub const DRAIN_MAX_BYTES: u64 = 4 << 20;
/// Longest time a refused body is drained before it is dropped (HTTP/1.1: the connection is
/// then closed).
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// Decides from the request head whether a request may go on to its handler.
pub trait Gate: Clone + Send + Sync + 'static {
    /// `Ok` lets the request through (the gate may add extensions to `head`, e.g. the
    /// authenticated caller); `Err` is the response sent instead. The body is not available
    /// here, by design.
    fn check(&self, head: &mut Parts) -> impl Future<Output = Result<(), Response>> + Send;
}

/// A gate that lets every request through (public routes still get the body limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Public;

impl Gate for Public {
    async fn check(&self, _head: &mut Parts) -> Result<(), Response> {
        Ok(())
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1; the scheme is
/// case-insensitive), if there is exactly that.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of a `Content-Length` header, if present and a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Layer: `gate`, then the body limit, then the route.
#[derive(Debug, Clone)]
pub struct Guard<G> {
    gate: G,
    limit: u64,
}

impl<G: Gate> Guard<G> {
    /// Requests to the wrapped routes pass `gate` and carry at most `limit` body bytes.
    pub fn new(gate: G, limit: u64) -> Guard<G> {
        Guard { gate, limit }
    }
}

impl<S, G: Clone> tower::Layer<S> for Guard<G> {
    type Service = GuardService<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            gate: self.gate.clone(),
            limit: self.limit,
        }
    }
}

/// The service made by [`Guard`].
#[derive(Debug, Clone)]
pub struct GuardService<S, G> {
    inner: S,
    gate: G,
    limit: u64,
}

impl<S, G> tower::Service<Request> for GuardService<S, G>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    G: Gate,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready handles this request (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let limit = self.limit;
        Box::pin(async move {
            let (mut head, body) = req.into_parts();
            let version = head.version;
            if let Err(refusal) = gate.check(&mut head).await {
                drain_in_background(body, version);
                return Ok(refusal);
            }
            if content_length(&head.headers).is_some_and(|n| n > limit) {
                drain_in_background(body, version);
                return Ok(Problem::too_large(limit).into_response());
            }
            let body = Body::new(http_body_util::Limited::new(
                Drained {
                    inner: Some(body),
                    version,
                },
                usize::try_from(limit).unwrap_or(usize::MAX),
            ));
            inner.call(Request::from_parts(head, body)).await
        })
    }
}

/// Reads and discards a refused body for a bounded time (and, over HTTP/2, size), so the
/// refusal reaches the client as a response rather than as a reset (see the module
/// documentation).
pub fn drain_in_background(body: Body, version: axum::http::Version) {
    if body.is_end_stream() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let max_bytes = if version == axum::http::Version::HTTP_2 {
        DRAIN_MAX_BYTES
    } else {
        u64::MAX
    };
    rt.spawn(async move {
        let mut body = body;
        let mut seen = 0u64;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    seen = seen.saturating_add(d.len() as u64);
                    if seen >= max_bytes {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    });
}

/// A request body that, when dropped before its end (a handler gave up on it), is handed to
/// [`drain_in_background`] instead of being dropped under the client's feet.
struct Drained {
    inner: Option<Body>,
    version: axum::http::Version,
}

impl Drop for Drained {
    fn drop(&mut self) {
        if let Some(b) = self.inner.take() {
            drain_in_background(b, self.version);
        }
    }
}

impl http_body::Body for Drained {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

/// Middleware (`axum::middleware::from_fn_with_state(duration, foundations::http::timeout)`):
/// a request that has no response headers after `limit` is answered with a `503` problem.
pub async fn timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Problem::timeout().into_response(),
    }
}

/// Middleware: bounded concurrency per router; beyond `permits` requests at once, `503 busy`.
pub async fn concurrency(
    axum::extract::State(permits): axum::extract::State<Arc<tokio::sync::Semaphore>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = permits.try_acquire_owned() else {
        return Problem::busy().into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt as _;

    /// Lets through requests carrying `Bearer good`; counts refusals.
    #[derive(Clone, Default)]
    struct TokenGate(Arc<AtomicUsize>);

    impl Gate for TokenGate {
        async fn check(&self, head: &mut Parts) -> Result<(), Response> {
            if bearer(&head.headers) == Some("good") {
                head.extensions.insert("caller");
                Ok(())
            } else {
                self.0.fetch_add(1, Ordering::Relaxed);
                Err(Problem::invalid_token("test").into_response())
            }
        }
    }

    fn app(gate: TokenGate) -> Router {
        Router::new().route(
            "/upload",
            post(
                |axum::Extension(who): axum::Extension<&'static str>, body: axum::body::Bytes| async move {
                    format!("{who} sent {}", body.len())
                },
            )
            .route_layer(Guard::new(gate, 10)),
        )
    }

    async fn send(app: &Router, token: Option<&str>, body: Body, len: Option<u64>) -> Response {
        let mut r = axum::http::Request::post("/upload");
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(n) = len {
            r = r.header(header::CONTENT_LENGTH, n);
        }
        app.clone().oneshot(r.body(body).unwrap()).await.unwrap()
    }

    /// A body that records whether it was polled.
    #[derive(Clone, Default)]
    struct Watched(Arc<std::sync::atomic::AtomicBool>);
    impl http_body::Body for Watched {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            self.0.store(true, Ordering::SeqCst);
            Poll::Ready(None)
        }
    }

    // current_thread runtime: the background drain cannot run before the test looks.
    #[tokio::test(flavor = "current_thread")]
    async fn gate_refuses_before_the_body_and_limit_applies_after() {
        let gate = TokenGate::default();
        let app = app(gate.clone());
        // Anonymous with a huge declared body: 401 (not 413, not a handler error), and the
        // body was not polled to decide.
        let body = Watched::default();
        let r = send(&app, None, Body::new(body.clone()), Some(1 << 30)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            !body.0.load(Ordering::SeqCst),
            "body read before the gate decided"
        );
        assert_eq!(gate.0.load(Ordering::Relaxed), 1);
        // Authenticated but declared too large: 413 problem, body not polled.
        let body = Watched::default();
        let r = send(&app, Some("good"), Body::new(body.clone()), Some(11)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], crate::PROBLEM_MEDIA_TYPE);
        assert!(!body.0.load(Ordering::SeqCst));
        // Chunked (no length) and too large: the handler's read fails with 413.
        let stream = futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"xxxx"))),
        );
        let r = send(&app, Some("good"), Body::from_stream(stream), None).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // Within the limit: through, with the caller.
        let r = send(&app, Some("good"), Body::from("12345"), Some(5)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = axum::body::to_bytes(r.into_body(), 100).await.unwrap();
        assert_eq!(&text[..], b"caller sent 5");
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
