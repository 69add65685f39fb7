//! Interoperability with aiocoap 0.4.17 (installed by scripts/peers/aiocoap.sh): 1 MiB
//! block-wise inside OSCORE in both directions, with both roles, SHA-256 compared; Echo
//! recovery (RFC 8613 B.1.2) in both roles.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::net::{data, sha256_hex};
use common::peer::{Proc, aiocoap_context, aiocoap_python, free_port, script, start_until};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig, FileHandler, Server, ServerConfig};
use oscore::{ContextParams, MemorySeqStore, SecurityContext, SeqStore};
use zeroize::Zeroizing;

const SECRET: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const SALT: [u8; 8] = [0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40];

fn params(sender: &[u8], recipient: &[u8]) -> ContextParams {
    ContextParams {
        master_secret: Zeroizing::new(SECRET.to_vec()),
        master_salt: SALT.to_vec(),
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    }
}

fn aiocoap_server(
    py: &std::path::Path,
    ctxdir: &std::path::Path,
    serve: &std::path::Path,
) -> (Proc, u16) {
    let port = free_port();
    let p = start_until(
        Command::new(py)
            .arg(script("aiocoap_server.py"))
            .args(["--port", &port.to_string(), "--exit-after", "300"])
            .arg("--context")
            .arg(ctxdir)
            .arg("--serve")
            .arg(serve),
        "ready",
    );
    (p, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_aiocoap_server() {
    let Some(py) = aiocoap_python("our_client_against_aiocoap_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    let body = data(1 << 20, 11);
    std::fs::write(serve.join("image.bin"), &body).unwrap();
    aiocoap_context(&dir.path().join("srv"), &SECRET, &SALT, b"\x01", b"", None);
    let (_srv, port) = aiocoap_server(&py, &dir.path().join("srv"), &serve);

    let ctx = SecurityContext::new(&params(b"", b"\x01"), Box::new(MemorySeqStore::new())).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(
        addr,
        Some(ctx),
        ClientConfig {
            ack_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = c.get("image.bin").await.unwrap();
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&body),
        "GET 1 MiB from aiocoap"
    );

    let up = data(1 << 20, 12);
    let r = c.request(code::PUT, "upload", &up).await.unwrap();
    assert!(
        r.code == code::CREATED || r.code == code::CHANGED,
        "{:#x}",
        r.code
    );
    assert_eq!(
        sha256_hex(&std::fs::read(serve.join("upload")).unwrap()),
        sha256_hex(&up),
        "PUT 1 MiB to aiocoap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_answers_aiocoap_echo_challenge() {
    let Some(py) = aiocoap_python("our_client_answers_aiocoap_echo_challenge") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    std::fs::write(serve.join("f"), b"fresh").unwrap();
    let srv = dir.path().join("srv");
    aiocoap_context(&srv, &SECRET, &SALT, b"\x01", b"", None);
    // aiocoap's way to say "the replay window was lost": B.1.2 recovery with Echo.
    std::fs::write(
        srv.join("sequence.json"),
        r#"{"next-to-send": 100, "received": "unknown"}"#,
    )
    .unwrap();
    let (_srv, port) = aiocoap_server(&py, &srv, &serve);
    let mut store = MemorySeqStore::new();
    store.store(50).unwrap();
    let ctx = SecurityContext::new(&params(b"", b"\x01"), Box::new(store)).unwrap();
    let mut c = Client::connect(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Some(ctx),
        ClientConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(c.get("f").await.unwrap(), b"fresh");
    assert_eq!(
        c.context_mut().unwrap().next_seq(),
        52,
        "one request answered with Echo, one repeated"
    );
}

fn run_aiocoap_client(py: &std::path::Path, ctxdir: &std::path::Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(py)
        .arg(script("aiocoap_client.py"))
        .arg("--context")
        .arg(ctxdir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiocoap client failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_client_against_our_server() {
    let Some(py) = aiocoap_python("aiocoap_client_against_our_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    let body = data(1 << 20, 13);
    std::fs::write(serve.join("image.bin"), &body).unwrap();
    let cli = dir.path().join("cli");
    aiocoap_context(&cli, &SECRET, &SALT, b"", b"\x01", None);

    let ctx = SecurityContext::new(&params(b"\x01", b""), Box::new(MemorySeqStore::new())).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = Server::new(
        sock,
        vec![ctx],
        Arc::new(FileHandler::new(&serve)),
        ServerConfig::default(),
    )
    .spawn()
    .unwrap();
    let uri = |p: &str| format!("coap://127.0.0.1:{}/{p}", server.addr.port());

    let got = dir.path().join("got.bin");
    let (py2, cli2, got2, u) = (py.clone(), cli.clone(), got.clone(), uri("image.bin"));
    tokio::task::spawn_blocking(move || {
        run_aiocoap_client(
            &py2,
            &cli2,
            &["--out".as_ref(), got2.as_os_str(), u.as_ref()],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&got).unwrap()),
        sha256_hex(&body),
        "aiocoap GET 1 MiB from us"
    );

    let up = data(1 << 20, 14);
    let upfile = dir.path().join("up.bin");
    std::fs::write(&upfile, &up).unwrap();
    let (py2, cli2, u) = (py.clone(), cli.clone(), uri("stored.bin"));
    tokio::task::spawn_blocking(move || {
        run_aiocoap_client(
            &py2,
            &cli2,
            &["--put".as_ref(), upfile.as_os_str(), u.as_ref()],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(serve.join("stored.bin")).unwrap()),
        sha256_hex(&up),
        "aiocoap PUT 1 MiB to us"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_client_recovers_from_our_restart_with_echo() {
    let Some(py) = aiocoap_python("aiocoap_client_recovers_from_our_restart_with_echo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    std::fs::write(serve.join("f"), b"after restart").unwrap();
    let cli = dir.path().join("cli");
    aiocoap_context(&cli, &SECRET, &SALT, b"", b"\x01", None);
    // A server context with persisted sequence state = a restart: its replay window is lost.
    let mut store = MemorySeqStore::new();
    store.store(10).unwrap();
    let ctx = SecurityContext::new(&params(b"\x01", b""), Box::new(store)).unwrap();
    assert_eq!(*ctx.replay_window(), oscore::replay::ReplayWindow::Lost);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // aiocoap's client does not pad its requests: its small GET gets the Echo challenge only
    // from a server that allows a challenge larger than the request (RFC 9175 §2.4 item 3:
    // a factor of 3 is acceptable; ours defaults to 1, for our padding clients).
    let cfg = ServerConfig {
        echo_amplification: 3,
        ..ServerConfig::default()
    };
    let server = Server::new(sock, vec![ctx], Arc::new(FileHandler::new(&serve)), cfg)
        .spawn()
        .unwrap();
    let got = dir.path().join("got");
    let (py2, cli2, got2) = (py.clone(), cli.clone(), got.clone());
    let u = format!("coap://127.0.0.1:{}/f", server.addr.port());
    tokio::task::spawn_blocking(move || {
        run_aiocoap_client(
            &py2,
            &cli2,
            &["--out".as_ref(), got2.as_os_str(), u.as_ref()],
        )
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b"after restart");
    server.stop().await.unwrap();
}
