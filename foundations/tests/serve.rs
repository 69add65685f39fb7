//! The serve loop on a real socket: idle connections, the connection budget, HSTS, and
//! refusals that reach the client as problems (HTTP/2 and HTTP/1.1).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use foundations::http::{Gate, Guard, Public, bearer};
use foundations::serve::{ServeLimits, serve};
use foundations::{Problem, tls};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Clone)]
struct Token;

impl Gate for Token {
    async fn check(&self, head: &mut Parts) -> Result<(), Response> {
        match bearer(&head.headers) {
            Some("good") => Ok(()),
            _ => Err(Problem::invalid_token("test").into_response()),
        }
    }
}

const LIMIT: u64 = 1024;

fn app() -> Router {
    Router::new()
        .route(
            "/hello",
            get(|| async { "hello" }).route_layer(Guard::new(Public, 0)),
        )
        .route(
            "/upload",
            post(|body: axum::body::Bytes| async move { body.len().to_string() })
                .route_layer(Guard::new(Token, LIMIT)),
        )
}

struct Server {
    _dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    ca: Vec<u8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(limits: ServeLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::write_generated(dir.path(), "localhost", "test").unwrap();
        let cfg = tls::load_server_config(&files.cert_file, &files.key_file).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            serve(listener, cfg, app(), &limits, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            ca: std::fs::read(&files.ca_file).unwrap(),
            _dir: dir,
            addr,
            stop: Some(tx),
            done,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn client(&self, http1: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca).unwrap())
            .resolve("localhost", self.addr);
        if http1 {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    /// A TLS connection that completes its handshake and then sends nothing.
    async fn idle_connection(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&self.ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.done).await;
    }
}

use rustls_pki_types::pem::PemObject as _;

/// Waits for the server to close `conn` (EOF or reset); the test's own patience is generous,
/// the assertion is that the close happens at all.
async fn closed_by_server(conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => {
            // HTTP/1.1 sends nothing before a request; anything else is a protocol failure.
            panic!("server sent {n} bytes to an idle connection")
        }
        Err(_) => panic!("the server never closed the idle connection"),
    }
}

#[tokio::test]
async fn idle_connection_is_closed_after_idle_timeout() {
    let s = Server::start(ServeLimits {
        idle_timeout_secs: 1,
        ..ServeLimits::default()
    })
    .await;
    let mut conn = s.idle_connection().await;
    closed_by_server(&mut conn).await;
    // A keep-alive connection that goes idle after a request is closed too.
    let mut conn = s.idle_connection().await;
    conn.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("hello") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    closed_by_server(&mut conn).await;
    s.stop().await;
}

#[tokio::test]
async fn idle_tls_connections_do_not_exhaust_slots() {
    // A small budget and an idle timeout far beyond the test: only eviction can make room.
    let s = Server::start(ServeLimits {
        max_connections: 8,
        max_connections_per_ip: 4,
        idle_timeout_secs: 3600,
        ..ServeLimits::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(s.idle_connection().await);
    }
    for http1 in [false, true] {
        let r = s.client(http1).get(s.url("/hello")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "hello");
    }
    // The oldest idle connections were closed to make room.
    closed_by_server(&mut idle[0]).await;
    s.stop().await;
}

#[tokio::test]
async fn hsts_header_present() {
    let s = Server::start(ServeLimits::default()).await;
    for (path, want) in [("/hello", 200), ("/nope", 404), ("/upload", 405)] {
        let r = s.client(false).get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), want, "{path}");
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn refusals_reach_the_client_as_problems_not_stream_errors() {
    let s = Server::start(ServeLimits::default()).await;
    for http1 in [false, true] {
        let c = s.client(http1);
        // Authenticated, declared one byte over the limit: 413 problem.
        let r = c
            .post(s.url("/upload"))
            .bearer_auth("good")
            .body(vec![b'x'; LIMIT as usize + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "payload-too-large");
        // Anonymous, streaming 64 MiB without a length: 401 problem, not a reset.
        let chunks = futures_util::stream::iter(
            (0..1024).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 << 10]))),
        );
        let r = c
            .post(s.url("/upload"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "invalid-token");
        // Within the limit: accepted.
        let r = c
            .post(s.url("/upload"))
            .bearer_auth("good")
            .body(vec![b'x'; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "10");
    }
    s.stop().await;
}
