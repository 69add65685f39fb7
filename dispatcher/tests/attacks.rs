//! Attacks on the wire against the real `dispatcher` binary (issue 13 item 3), one test per
//! attack, each asserting the refusal and that nothing was stored:
//!
//! * on its operator API: idle TLS connections, an unauthenticated 1 GiB upload, an anonymous
//!   invalid body, an oversized upload, and HSTS;
//! * from a hostile update server (a fake one in this process, over TLS): an endless error
//!   body, endless pagination, and a source dripping bytes while another source has a
//!   release.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use foundations::Problem;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");

/// Patience for events that must happen; the assertions never depend on it.
const PATIENCE: Duration = Duration::from_secs(90);

/// A running `dispatcher serve`; stopped (SIGTERM, then SIGKILL) when dropped.
struct Disp {
    dir: tempfile::TempDir,
    child: Child,
    url: String,
    addr: std::net::SocketAddr,
    admin: String,
}

impl Drop for Disp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Disp {
    /// `dispatcher init` on loopback port 0, `tweak` the configuration, `dispatcher serve`.
    fn start(tweak: impl FnOnce(&mut dispatcher::config::Config)) -> Disp {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        let out = Command::new(BIN)
            .args(["init", "--dir", s(&d)])
            .args(["--listen", "127.0.0.1:0", "--coap-listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg_path = d.join("dispatcher.toml");
        let mut cfg = dispatcher::config::Config::load(&cfg_path).unwrap();
        tweak(&mut cfg);
        cfg.save(&cfg_path).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config", s(&cfg_path)])
            .env("DISPATCHER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        let mut rd = std::io::BufReader::new(stdout);
        while !line.starts_with("dispatcher listening") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut rd, &mut line).unwrap();
            assert!(n > 0, "dispatcher exited before listening");
        }
        // Keep reading stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut rd, &mut std::io::sink()));
        let url = line.split_whitespace().nth(2).unwrap().to_owned();
        let addr = url.trim_start_matches("https://").parse().unwrap();
        let admin = std::fs::read_to_string(d.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Disp {
            dir,
            child,
            url,
            addr,
            admin,
        }
    }

    fn ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("d/tls/ca.pem")).unwrap()
    }

    fn client(&self, http1: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca()).unwrap())
            .timeout(PATIENCE);
        if http1 {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    /// Resident memory of the process (Linux `/proc`), in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Releases the dispatcher holds (as the admin sees them).
    async fn releases(&self) -> Vec<Value> {
        let v: Value = self
            .client(false)
            .get(format!("{}/v1/releases", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["releases"].as_array().unwrap().clone()
    }

    /// `POST /v1/sync`: one poll of every source, and what it did.
    async fn sync(&self) -> Value {
        let r = self
            .client(false)
            .post(format!("{}/v1/sync", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn problem(r: reqwest::Response) -> Problem {
    assert_eq!(
        r.headers()["content-type"],
        foundations::PROBLEM_MEDIA_TYPE,
        "not a problem response"
    );
    r.json().await.unwrap()
}

// ---------------------------------------------------------------------------------------
// The operator API

#[tokio::test]
async fn idle_tls_connections_do_not_exhaust_slots() {
    // Default limits, and an idle timeout beyond the test: only the budget's rule that idle
    // connections make room can let the legitimate request in.
    let d = Disp::start(|c| c.serve.idle_timeout_secs = 3600);
    let connector = tls_connector(&d.ca());
    let mut idle = Vec::new();
    for _ in 0..1000 {
        // A handshake the server never completes (no slot) counts as held, not as done.
        let tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), connector.connect(name, tcp)).await
        {
            idle.push(s);
        }
    }
    // The legitimate request, while the attacker still holds its connections open.
    for http1 in [false, true] {
        let r = d
            .client(http1)
            .get(format!("{}/v1/status", d.url))
            .bearer_auth(&d.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "http1={http1}");
    }
    assert!(!idle.is_empty());
    drop(idle);
}

fn tls_connector(ca: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(foundations::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A body of `total` bytes that counts what the client actually pulled from it.
fn counted_body(total: u64, pulled: Arc<AtomicU64>) -> reqwest::Body {
    const CHUNK: usize = 256 << 10;
    let chunk = bytes::Bytes::from(vec![b'A'; CHUNK]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        let pulled = pulled.clone();
        async move {
            if sent >= total {
                return None;
            }
            pulled.fetch_add(CHUNK as u64, Ordering::Relaxed);
            Some((Ok::<_, std::io::Error>(chunk), sent + CHUNK as u64))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test]
async fn unauthenticated_large_upload_refused_before_body_read() {
    let d = Disp::start(|_| {});
    let before = d.rss();
    const GIB: u64 = 1 << 30;
    for http1 in [false, true] {
        let pulled = Arc::new(AtomicU64::new(0));
        let r = d
            .client(http1)
            .post(format!("{}/v1/releases", d.url))
            .header("content-type", "application/json")
            .body(counted_body(GIB, pulled.clone()))
            .send()
            .await;
        // The refusal arrives as a response, readable, not as a reset.
        let r = r.unwrap();
        assert_eq!(r.status(), 401, "http1={http1}");
        assert_eq!(problem(r).await.slug(), "unauthenticated");
        if !http1 {
            // HTTP/2 flow control: the client could push only what the server read, the
            // drain allowance, never the gigabyte.
            let sent = pulled.load(Ordering::Relaxed);
            assert!(sent < 64 << 20, "{sent} bytes taken");
        }
    }
    // HTTP/1.1 has no flow control: the refused body is read and discarded (for a bounded
    // time) so the client sees the answer; the memory never holds it.
    let grown = d.rss().saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
    assert!(d.releases().await.is_empty(), "something was stored");
}

#[tokio::test]
async fn anonymous_invalid_body_gets_401_not_422() {
    let d = Disp::start(|_| {});
    let id = "ab".repeat(32);
    for (path, body) in [
        ("/v1/releases".to_owned(), r#"{"not": "an upload"}"#),
        (format!("/v1/releases/{id}/approve"), "not json at all"),
        ("/v1/devices".to_owned(), r#"{"name": 7}"#),
    ] {
        for token in [None, Some("dop_forged")] {
            let mut rb = d
                .client(false)
                .post(format!("{}{path}", d.url))
                .header("content-type", "application/json")
                .body(body);
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {token:?}");
            assert_eq!(problem(r).await.slug(), "unauthenticated");
        }
    }
    assert!(d.releases().await.is_empty());
}

#[tokio::test]
async fn oversized_upload_gets_problem_413() {
    // Uploads of at most a 1 MiB blob: the route accepts ~3.4 MiB of JSON.
    let d = Disp::start(|c| c.limits.max_blob_bytes = 1 << 20);
    for http1 in [false, true] {
        let body = vec![b' '; 8 << 20];
        let r = d
            .client(http1)
            .post(format!("{}/v1/releases", d.url))
            .bearer_auth(&d.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "http1={http1}");
        assert_eq!(problem(r).await.slug(), "payload-too-large");
    }
    assert!(d.releases().await.is_empty());
}

#[tokio::test]
async fn hsts_header_present() {
    let d = Disp::start(|_| {});
    for (path, token) in [
        ("/healthz", None),
        ("/v1/status", Some(&d.admin)),
        ("/nope", None),
    ] {
        let mut rb = d.client(false).get(format!("{}{path}", d.url));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A hostile update server

/// A fake update server on loopback TLS, with its CA file.
struct Source {
    _dir: tempfile::TempDir,
    url: String,
    ca_file: PathBuf,
    _task: tokio::task::JoinHandle<()>,
}

async fn source(app: Router) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let files = foundations::tls::write_generated(dir.path(), "localhost", "fake-source").unwrap();
    let tls = foundations::tls::load_server_config(&files.cert_file, &files.key_file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = foundations::serve::ServeLimits::default();
    let task = tokio::spawn(async move {
        let _ =
            foundations::serve::serve(listener, tls, app, &limits, std::future::pending()).await;
    });
    Source {
        _dir: dir,
        url: format!("https://localhost:{port}"),
        ca_file: files.ca_file,
        _task: task,
    }
}

fn add_source(c: &mut dispatcher::config::Config, s: &Source) {
    c.update_servers
        .push(dispatcher::config::UpdateServerConfig {
            urls: vec![s.url.clone()],
            ca_file: Some(s.ca_file.clone()),
            token_file: None,
        });
}

/// One listed release (a record as the update server serves it).
fn listed(id: &str, order: u64) -> Value {
    json!({
        "release_id": id,
        "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
        "sequence": order,
        "version": null,
        "ics": null,
        "signer_kids": [],
        "release_kid": null,
        "envelope_size": 100,
        "payload": {"size": 100, "sha256": "00".repeat(32)},
        "published_at": 0,
        "published_by": "fake",
        "order": order,
        "envelope_url": format!("/v1/releases/{id}/envelope"),
        "payload_url": format!("/v1/releases/{id}/payload"),
    })
}

/// A body stream of `chunk`s, for ever, counting the bytes produced.
fn endless(chunk: &'static [u8], produced: Arc<AtomicU64>, every: Duration) -> Body {
    let stream = futures_util::stream::unfold((), move |()| {
        let produced = produced.clone();
        async move {
            if !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            produced.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(chunk)),
                (),
            ))
        }
    });
    Body::from_stream(stream)
}

fn unreachable_reason(report: &Value, url: &str) -> String {
    report["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u[0] == url)
        .map(|u| u[1].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("{url} not reported unreachable: {report}"))
}

#[tokio::test]
async fn endless_error_body_from_source_is_capped() {
    static JUNK: [u8; 64 << 10] = [b'x'; 64 << 10];
    let produced = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    let src = source(Router::new().route(
        "/v1/releases",
        get(move || {
            let p = p.clone();
            async move {
                let mut r = Response::new(endless(&JUNK, p, Duration::ZERO));
                *r.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        }),
    ))
    .await;
    let d = Disp::start(|c| {
        add_source(c, &src);
        c.limits.poll_interval_secs = 3600;
    });
    let report = d.sync().await;
    let reason = unreachable_reason(&report, &src.url);
    assert!(reason.contains("500"), "{reason}");
    // The dispatcher read at most its cap; the server could push no more than the transport
    // buffers beyond it (an uncapped read would take the endless body until a deadline).
    let n = produced.load(Ordering::Relaxed);
    assert!(n < 32 << 20, "the source sent {n} bytes");
    assert!(d.releases().await.is_empty());
}

#[tokio::test]
async fn endless_pagination_is_bounded() {
    let pages = Arc::new(AtomicU64::new(0));
    let p = pages.clone();
    let src = source(Router::new().route(
        "/v1/releases",
        get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                let p = p.clone();
                async move {
                    let n = p.fetch_add(1, Ordering::Relaxed) + 1;
                    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                    let id = format!("{:064x}", after + 1);
                    axum::Json(json!({
                        "releases": [listed(&id, after + 1)],
                        "next_after": after + 1,
                        "page": n,
                    }))
                    .into_response()
                }
            },
        ),
    ))
    .await;
    let d = Disp::start(|c| {
        add_source(c, &src);
        c.limits.poll_interval_secs = 3600;
    });
    let report = d.sync().await;
    let reason = unreachable_reason(&report, &src.url);
    assert!(reason.contains("pages"), "{reason}");
    // The background poll at start and the sync: each follows at most 100 pages.
    let served = pages.load(Ordering::Relaxed);
    assert!(served <= 200, "{served} pages followed");
    assert!(d.releases().await.is_empty());
}

#[tokio::test]
async fn slow_source_does_not_freeze_poller() {
    // The slow source answers its list one byte a second, for ever. Its state: 0 not asked
    // yet, 1 dripping, 2 the dispatcher gave up on it.
    let dripping = Arc::new(AtomicU64::new(0));
    let drip = dripping.clone();
    let slow = source(Router::new().route(
        "/v1/releases",
        get(move || {
            let drip = drip.clone();
            async move {
                drip.store(1, Ordering::SeqCst);
                /// Marks the drip stopped when the dispatcher gives up on the response.
                struct Stopped(Arc<AtomicU64>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        self.0.store(2, Ordering::SeqCst);
                    }
                }
                let guard = Stopped(drip);
                let stream = futures_util::stream::unfold(guard, |g| async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")), g))
                });
                Response::new(Body::from_stream(stream))
            }
        }),
    ))
    .await;
    // The other source lists one release; its envelope being asked for shows the poller
    // reached it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let id = "cd".repeat(32);
    let listed_id = id.clone();
    let seen = dripping.clone();
    let quick = source(
        Router::new()
            .route(
                "/v1/releases",
                get(
                    move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                        // One page with the release, then the end of the list.
                        let v = match q.get("after") {
                            None => json!({"releases": [listed(&listed_id, 1)], "next_after": 1}),
                            Some(_) => json!({"releases": [], "next_after": null}),
                        };
                        async move { axum::Json(v) }
                    },
                ),
            )
            .route(
                "/v1/releases/{id}/envelope",
                get(move || {
                    // Was the slow source still holding the poller's other request?
                    let _ = tx.send(seen.load(Ordering::SeqCst));
                    async { axum::http::StatusCode::NOT_FOUND }
                }),
            ),
    )
    .await;
    let _d = Disp::start(|c| {
        add_source(c, &slow);
        add_source(c, &quick);
    });
    let slow = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the poller never reached the second source")
        .unwrap();
    assert_ne!(
        slow, 2,
        "the second source was polled only after the slow one gave up"
    );
}
