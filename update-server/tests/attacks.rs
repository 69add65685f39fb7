//! Attacks on the wire against the real `update-server` binary (issue 13 item 3): uploads
//! are refused on their head (token, scope, declared size) before any of the body is read,
//! refusals arrive as problems, every response carries HSTS.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Server, server_dir};
use foundations::Problem;

/// A multipart-looking body of `total` bytes that counts what the client pulled from it.
fn counted_body(total: u64, pulled: Arc<AtomicU64>) -> reqwest::Body {
    const CHUNK: u64 = 256 << 10;
    let chunk = vec![b'-'; CHUNK as usize];
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

fn http(ca: &[u8], http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap());
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[test]
fn unauthenticated_large_upload_refused_before_body_read() {
    let sd = server_dir();
    let srv = Server::start(&sd.config());
    let before = rss(srv.pid());
    common::rt().block_on(async {
        for http1 in [false, true] {
            // Anonymous, and with a token lacking the upload scope.
            for token in [None, Some(sd.token("releases:read", &[]))] {
                let pulled = Arc::new(AtomicU64::new(0));
                let mut rb = http(&sd.ca(), http1)
                    .post(format!("{}/v1/releases", srv.url))
                    .header("content-type", "multipart/form-data; boundary=x")
                    .body(counted_body(1 << 30, pulled.clone()));
                if let Some(t) = &token {
                    rb = rb.bearer_auth(t);
                }
                let r = rb.send().await.unwrap();
                let want = if token.is_some() { 403 } else { 401 };
                assert_eq!(r.status(), want, "http1={http1}");
                let p: Problem = r.json().await.unwrap();
                assert!(
                    ["invalid-token", "insufficient-scope"].contains(&p.slug()),
                    "{p:?}"
                );
                if !http1 {
                    // HTTP/2 flow control: the client pushed only what the server read.
                    let sent = pulled.load(Ordering::Relaxed);
                    assert!(sent < 64 << 20, "{sent} bytes taken");
                }
            }
        }
    });
    // HTTP/1.1 has no flow control: the refused body is read and discarded (for a bounded
    // time) so the client sees the answer; the memory never holds it.
    let grown = rss(srv.pid()).saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
    assert!(sd.stored_files().is_empty(), "{:?}", sd.stored_files());
    srv.stop();
}

#[test]
fn oversized_upload_gets_problem_413() {
    let sd = server_dir();
    sd.edit(|t| t.replace("max_blob_bytes = 4294967296", "max_blob_bytes = 1048576"));
    let srv = Server::start(&sd.config());
    common::rt().block_on(async {
        for http1 in [false, true] {
            let r = http(&sd.ca(), http1)
                .post(format!("{}/v1/releases", srv.url))
                .bearer_auth(sd.publisher_token())
                .header("content-type", "multipart/form-data; boundary=x")
                .body(vec![b'-'; 4 << 20])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 413, "http1={http1}");
            let p: Problem = r.json().await.unwrap();
            assert_eq!(p.slug(), "payload-too-large");
        }
    });
    assert!(sd.stored_files().is_empty());
    srv.stop();
}

#[test]
fn hsts_header_present() {
    let sd = server_dir();
    let srv = Server::start(&sd.config());
    common::rt().block_on(async {
        for path in ["/healthz", "/v1/releases", "/v1/openapi.json", "/nope"] {
            let r = http(&sd.ca(), false)
                .get(format!("{}{path}", srv.url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.headers()["strict-transport-security"],
                "max-age=31536000",
                "{path}"
            );
        }
    });
    srv.stop();
}
