//! Attacks on the wire against the real `key-repo` binary (issue 13 item 3): the body of a
//! request is never read, nor validated, before its token is; HSTS on every response.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{PRODUCT_A, Repo};
use foundations::Problem;

/// A body of `total` bytes that counts what the client actually pulled from it.
fn counted_body(total: u64, pulled: Arc<AtomicU64>) -> reqwest::Body {
    const CHUNK: u64 = 256 << 10;
    let chunk = vec![b'{'; CHUNK as usize];
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (chunk, pulled) = (chunk.clone(), pulled.clone());
        async move {
            (sent < total).then(|| {
                pulled.fetch_add(CHUNK, Ordering::Relaxed);
                (Ok::<_, std::io::Error>(chunk), sent + CHUNK)
            })
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Resident memory of a process (Linux `/proc`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn client(ca: &[u8], http1: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap());
    if http1 { b.http1_only() } else { b }.build().unwrap()
}

#[tokio::test]
async fn unauthenticated_large_upload_refused_before_body_read() {
    let repo = Repo::init();
    let srv = repo.start();
    let before = rss(srv.child.id());
    for http1 in [false, true] {
        let pulled = Arc::new(AtomicU64::new(0));
        let r = client(&repo.ca_pem(), http1)
            .put(format!("{}/v1/keys/k1", srv.url))
            .header("content-type", "application/json")
            .body(counted_body(1 << 30, pulled.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "invalid-token");
        if !http1 {
            // HTTP/2 flow control: the client could push only what the server read.
            let sent = pulled.load(Ordering::Relaxed);
            assert!(sent < 64 << 20, "{sent} bytes taken");
        }
    }
    // HTTP/1.1 has no flow control: the refused body is read and discarded (for a bounded
    // time) so the client sees the answer; the memory never holds it.
    let grown = rss(srv.child.id()).saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
}

#[tokio::test]
async fn anonymous_invalid_body_gets_401_not_422() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    for token in [None, Some("not.a.token")] {
        let mut rb = http
            .put(format!("{}/v1/keys/k1", srv.url))
            .header("content-type", "application/json")
            .body("{\"product\": 42}");
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "invalid-token");
    }
    // Nothing was stored: a publisher of the product finds no key.
    let t = repo.forge(|_| {});
    let r = http
        .get(format!("{}/v1/keys/k1/meta", srv.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn oversized_upload_gets_problem_413() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let t = repo.forge(|_| {});
    for http1 in [false, true] {
        let c = client(&repo.ca_pem(), http1);
        let body = format!(
            "{{\"product\":\"{PRODUCT_A}\",\"cose_key\":\"{}\"}}",
            "A".repeat(64 << 10)
        );
        let r = c
            .put(format!("{}/v1/keys/k1", srv.url))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "payload-too-large");
    }
    let r = http
        .get(format!("{}/v1/keys/k1/meta", srv.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "something was stored");
}

#[tokio::test]
async fn hsts_header_present() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    for path in ["/healthz", "/.well-known/jwks.json", "/v1/keys/k1", "/nope"] {
        let r = http.get(format!("{}{path}", srv.url)).send().await.unwrap();
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
}
