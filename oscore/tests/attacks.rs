//! Attacks on the example server as a real process (issue 13): a protected request recorded
//! on the path and replayed after the server was killed (SIGKILL: a power loss, an OOM kill)
//! or stopped, and a second process opening the same context. Each test asserts the refusal
//! on the wire and that nothing was acted on.
//!
//! `cargo test` builds the examples first; when running this file alone (`--test attacks`),
//! build them with `cargo build -p oscore --examples`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use coap_lite::{MessageType, Packet};
use common::peer::Proc;
use oscore::message::{self, code, opt};
use oscore::protect::{self, RequestBinding};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use zeroize::Zeroizing;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/attacks-HASH -> target/<profile>/examples/NAME.
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} missing: build the examples (cargo test builds them)",
        p.display()
    );
    p
}

fn params(sender: &[u8], recipient: &[u8]) -> ContextParams {
    ContextParams {
        master_secret: Zeroizing::new(vec![0x5c; 16]),
        master_salt: b"attack".to_vec(),
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    }
}

fn start_server(serve: &Path, ctx: &Path) -> (Proc, SocketAddr) {
    let mut child = Command::new(example("server"))
        .arg("--context")
        .arg(ctx)
        .args(["--port", "0", "--exit-after", "300", "--serve"])
        .arg(serve)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .parse()
        .unwrap();
    (Proc(child), addr)
}

/// Sends `bytes` and waits for one datagram back.
fn exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.send(bytes).unwrap();
    let mut buf = vec![0u8; 2048];
    let n = s.recv(&mut buf).expect("the server answers");
    buf.truncate(n);
    buf
}

fn put(client: &mut SecurityContext, mid: u16, echo: Option<&[u8]>) -> (Vec<u8>, RequestBinding) {
    let mut req = message::packet(MessageType::Confirmable, code::PUT, mid, &mid.to_be_bytes());
    message::set_path(&mut req, "stored.bin");
    if let Some(e) = echo {
        message::set(&mut req, opt::ECHO, e.to_vec());
    }
    req.payload = b"written by the original request".to_vec();
    let (outer, binding) = protect::protect_request(client, &req).unwrap();
    (message::encode(&outer, 1500).unwrap(), binding)
}

/// The Partial IV of a response's OSCORE option (None: the response uses the request's
/// nonce, or is not protected).
fn response_piv(resp: &Packet) -> Option<Vec<u8>> {
    protect::oscore_option(resp).unwrap().and_then(|o| o.piv)
}

/// Attack (issue 13): a protected request is recorded on the path; the server is killed
/// (SIGKILL, no chance to write anything) or stopped (SIGTERM) and restarted; the recording is
/// replayed. Before the fix the restarted server accepted it as new and answered under the
/// request's own nonce: the same bytes as the original answer, and a different plaintext under
/// the same nonce when the state had changed (AES-CCM nonce reuse).
///
/// Check: after every kind of stop the replay is answered with 4.01 + Echo under the server's
/// own Partial IV (RFC 8613 Appendix B.1.2) — never under the request's nonce — and the PUT is
/// not executed again.
#[test]
fn oscore_replay_after_sigkill_is_not_answered_under_request_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    let sctx = dir.path().join("server.json");
    oscore::ctxfile::create(&sctx, &params(b"\x01", b"")).unwrap();
    let mut client =
        SecurityContext::new(&params(b"", b"\x01"), Box::new(MemorySeqStore::new())).unwrap();

    let (srv, addr) = start_server(&serve, &sctx);
    // Freshly started from its state: the first request is challenged (own Partial IV).
    let (first, b) = put(&mut client, 1, None);
    let resp = message::decode(&exchange(addr, &first), 1500).unwrap();
    assert!(
        response_piv(&resp).is_some(),
        "Echo answer under the server's own nonce"
    );
    let inner = protect::unprotect_response(&mut client, &b, &resp).unwrap();
    assert_eq!(message::code_of(&inner), code::UNAUTHORIZED);
    let echo = message::first(&inner, opt::ECHO).unwrap().clone();
    assert!(
        !serve.join("stored.bin").exists(),
        "not acted on before the Echo"
    );
    // The repeat with the Echo value is executed: this is the request the attacker records.
    let (recorded, b) = put(&mut client, 2, Some(&echo));
    let original_answer = exchange(addr, &recorded);
    let resp = message::decode(&original_answer, 1500).unwrap();
    assert_eq!(
        response_piv(&resp),
        None,
        "a fresh request is answered under its nonce"
    );
    let inner = protect::unprotect_response(&mut client, &b, &resp).unwrap();
    assert_eq!(message::code_of(&inner), code::CREATED);

    let mut srv = Some(srv);
    for (stop, signal) in [("SIGKILL", "-KILL"), ("SIGTERM", "-TERM")] {
        let _ = std::fs::remove_file(serve.join("stored.bin"));
        let mut p = srv.take().unwrap();
        let pid = p.0.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        p.0.wait().unwrap();
        drop(p);
        let (next, addr) = start_server(&serve, &sctx);
        srv = Some(next);

        let replayed_answer = exchange(addr, &recorded);
        assert_ne!(replayed_answer, original_answer, "after {stop}: same bytes");
        let resp = message::decode(&replayed_answer, 1500).unwrap();
        let piv = response_piv(&resp);
        assert!(
            piv.is_some(),
            "after {stop}: the replay was answered under the request's nonce"
        );
        // The answer is the Echo challenge, protected for the legitimate client only.
        let inner = protect::unprotect_response(&mut client, &b, &resp).unwrap();
        assert_eq!(message::code_of(&inner), code::UNAUTHORIZED, "after {stop}");
        assert!(message::first(&inner, opt::ECHO).is_some(), "after {stop}");
        // Sent again (a retransmission or a second replay): never executed.
        let again = message::decode(&exchange(addr, &recorded), 1500).unwrap();
        assert!(response_piv(&again).is_some(), "after {stop}");
        assert!(
            !serve.join("stored.bin").exists(),
            "after {stop}: the replayed PUT was executed"
        );
    }
}

/// Attack (issue 13): two processes open one context, so both encrypt under the same keys
/// from the same sequence numbers (nonce reuse). Check: the second process is refused with a
/// clear error (exit 2, "in use"), whether it is a second server or a client on the same
/// file; after the first one is killed the context can be opened again.
#[test]
fn second_process_cannot_open_context() {
    let dir = tempfile::tempdir().unwrap();
    let sctx = dir.path().join("server.json");
    oscore::ctxfile::create(&sctx, &params(b"\x01", b"")).unwrap();
    let (first, addr) = start_server(dir.path(), &sctx);

    let out = Command::new(example("server"))
        .arg("--context")
        .arg(&sctx)
        .args(["--port", "0", "--exit-after", "5", "--serve"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use") && err.contains("server.json.lock"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the second server never listened");

    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&sctx)
        .arg(format!("coap://{addr}/x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));

    // In this process too: a library user gets the typed error.
    assert!(matches!(
        oscore::ctxfile::open(&sctx),
        Err(oscore::Error::ContextLocked { .. })
    ));
    drop(first); // SIGKILL: the kernel releases the lock
    let (_again, _) = start_server(dir.path(), &sctx);
}
