//! The `client` and `server` examples, run as real processes on loopback with the CLI from
//! issue 3. `cargo test` (without a target filter) builds the examples first; when running
//! this file alone (`--test cli`), build them with `cargo build -p oscore --examples`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::net::{data, sha256_hex};
use common::peer::Proc;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/cli-HASH -> target/<profile>/examples/NAME (cargo test builds them).
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

/// A context file with its sequence state, as provisioning makes it.
fn write_ctx(path: &Path, sender: &str, recipient: &str) {
    oscore::ctxfile::create(path, &ctx_params(sender, recipient)).unwrap();
}

fn ctx_params(sender: &str, recipient: &str) -> oscore::ContextParams {
    oscore::ContextParams {
        master_secret: zeroize::Zeroizing::new(
            hex::decode("0102030405060708090a0b0c0d0e0f10").unwrap(),
        ),
        master_salt: hex::decode("9e7ca92223786340").unwrap(),
        id_context: Some(hex::decode("37cbf3210017a2d3").unwrap()),
        sender_id: hex::decode(sender).unwrap(),
        recipient_id: hex::decode(recipient).unwrap(),
    }
}

fn start_server(dir: &Path, ctx: Option<&Path>) -> (Proc, String) {
    let mut cmd = Command::new(example("server"));
    if let Some(c) = ctx {
        cmd.arg("--context").arg(c);
    }
    cmd.args(["--port", "0", "--exit-after", "120", "--serve"])
        .arg(dir);
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    (Proc(child), addr)
}

#[test]
fn get_put_and_errors_through_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    let body = data(300_000, 21);
    std::fs::write(serve.join("fw.bin"), &body).unwrap();
    let sctx = dir.path().join("server.json");
    let cctx = dir.path().join("client.json");
    write_ctx(&sctx, "01", "");
    write_ctx(&cctx, "", "01");
    let (_srv, addr) = start_server(&serve, Some(&sctx));

    // GET: the body on stdout, exit 0.
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .arg(format!("coap://{addr}/fw.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&body));
    // Sequence state is kept beside the context file.
    assert!(dir.path().join("client.json.seq").exists());

    // PUT from a file.
    let up = dir.path().join("up.bin");
    std::fs::write(&up, data(50_000, 22)).unwrap();
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .args(["-m", "PUT", "--payload"])
        .arg(format!("@{}", up.display()))
        .arg(format!("coap://{addr}/stored.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(serve.join("stored.bin")).unwrap(),
        std::fs::read(&up).unwrap()
    );

    // A second client run continues above the persisted sequence number (no replay error).
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .arg(format!("coap://{addr}/stored.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Unprotected request: 4.01, non-zero exit, a message on stderr.
    let out = Command::new(example("client"))
        .arg(format!("coap://{addr}/fw.bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4.01"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // Missing resource: 4.04.
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .arg(format!("coap://{addr}/nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4.04"));

    // Bad arguments: exit 2.
    let out = Command::new(example("client"))
        .arg("http://x/y")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(dir.path().join("missing.json"))
        .arg(format!("coap://{addr}/x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plain_server_without_context() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello"), b"hi").unwrap();
    let (_srv, addr) = start_server(dir.path(), None);
    let out = Command::new(example("client"))
        .arg(format!("coap://{addr}/hello"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hi");
}

#[test]
fn context_file_errors_do_not_echo_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("bad.json");
    std::fs::write(
        &c,
        r#"{"master_secret_hex": "deadbeefcafe", "sender_id_hex": "zz", "recipient_id_hex": "01"}"#,
    )
    .unwrap();
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&c)
        .arg("coap://127.0.0.1:9/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sender_id_hex"), "{err}");
    assert!(!err.contains("deadbeef"), "{err}");
}

/// Crash test with real processes: the client is SIGKILLed in the middle of a download, right
/// after it persisted its second sequence-number step; a new client process with the same
/// context file must be accepted by the (still running) server. Had it reused a sequence
/// number, the server's replay window would have answered 4.01 "Replay detected".
#[test]
fn killed_client_resumes_without_reusing_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    std::fs::write(serve.join("big.bin"), data(5 << 20, 23)).unwrap();
    std::fs::write(serve.join("small"), b"ok").unwrap();
    let sctx = dir.path().join("server.json");
    let cctx = dir.path().join("client.json");
    write_ctx(&sctx, "01", "");
    write_ctx(&cctx, "", "01");
    let seq_file = dir.path().join("client.json.seq");
    let (_srv, addr) = start_server(&serve, Some(&sctx));

    let mut child = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .arg(format!("coap://{addr}/big.bin"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the second step (limit 8192) is on disk, then kill -9.
    let limit = |f: &Path| -> u64 {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|t| {
                t.split(':')
                    .nth(1)
                    .and_then(|v| v.trim().trim_end_matches('}').trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let mut crashed_at = 0;
    for _ in 0..6000 {
        crashed_at = limit(&seq_file);
        if crashed_at >= 8192 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        crashed_at >= 8192,
        "the client never persisted its second step (exit {status})"
    );
    assert!(!status.success(), "the download finished before the crash");

    // Restart: resumes at the persisted limit, the server accepts it.
    let out = Command::new(example("client"))
        .arg("--context")
        .arg(&cctx)
        .arg(format!("coap://{addr}/small"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ok");
    assert!(
        limit(&seq_file) > crashed_at,
        "after a graceful exit the exact next number is stored"
    );
}

/// SIGTERM stops the server gracefully: it exits 0 and flushes its sequence state.
#[test]
fn server_stops_on_sigterm_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let sctx = dir.path().join("server.json");
    write_ctx(&sctx, "01", "");
    let (mut srv, _addr) = start_server(dir.path(), Some(&sctx));
    let pid = srv.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = srv.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let seq = std::fs::read_to_string(dir.path().join("server.json.seq")).unwrap();
    assert!(seq.contains("sender_seq_limit"), "{seq}");
}

/// A context file written by hand has no sequence state: refused (exit 2) with a message
/// that says why, until `--init-state` gives it one (once: never reset).
#[test]
fn context_without_state_is_refused_until_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("hand.json");
    std::fs::write(
        &c,
        r#"{"master_secret_hex": "0102030405060708090a0b0c0d0e0f10", "sender_id_hex": "01", "recipient_id_hex": ""}"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(example("server"))
            .arg("--context")
            .arg(&c)
            .args(extra)
            .args(["--port", "0", "--exit-after", "0", "--serve"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hand.json.seq") && err.contains("missing"),
        "{err}"
    );
    let out = run(&["--init-state"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--init-state"]);
    assert_eq!(out.status.code(), Some(2), "the state is never reset");
}

/// Crash safety of the sequence state itself: a client that writes its state before every
/// request (`--seq-step 1`, so a write is under way most of the time) is SIGKILLed at
/// several points of a download. Each time the state file must still parse (it is replaced
/// atomically: temporary file, fsync, rename, fsync of the directory) and lie above every
/// number used: the next client run is accepted by the still-running server, which would
/// answer 4.01 "Replay detected" to a reused sequence number.
#[test]
fn client_killed_while_writing_its_state_never_reuses_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let serve = dir.path().join("serve");
    std::fs::create_dir(&serve).unwrap();
    std::fs::write(serve.join("big.bin"), data(2 << 20, 29)).unwrap();
    std::fs::write(serve.join("small"), b"ok").unwrap();
    let sctx = dir.path().join("server.json");
    let cctx = dir.path().join("client.json");
    write_ctx(&sctx, "01", "");
    write_ctx(&cctx, "", "01");
    let seq_file = dir.path().join("client.json.seq");
    let (_srv, addr) = start_server(&serve, Some(&sctx));
    let limit = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&seq_file).unwrap()).unwrap();
        v["sender_seq_limit"].as_u64().unwrap()
    };
    let mut last = limit();
    for (round, after) in [3u64, 17, 40, 90, 150].into_iter().enumerate() {
        let mut child = Command::new(example("client"))
            .arg("--context")
            .arg(&cctx)
            .args(["--seq-step", "1"])
            .arg(format!("coap://{addr}/big.bin"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the state moved past where it was (the client is writing), plus a little.
        for _ in 0..4000 {
            if limit() > last + after || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
        let now = limit(); // parses: never a torn file
        assert!(now > last, "round {round}: the state did not advance");
        let out = Command::new(example("client"))
            .arg("--context")
            .arg(&cctx)
            .arg(format!("coap://{addr}/small"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"ok");
        last = limit();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    // A kill between the write of the temporary file and the rename leaves it behind; it is
    // never read, and the next write replaces it.
    assert!(leftovers.len() <= 1, "{leftovers:?}");
}
