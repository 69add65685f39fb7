//! A real `device-sim run` process, with an OSCORE client in the dispatcher's role pushing a
//! release over CoAP (Block1 inside OSCORE), a simulated power loss, and a restart.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use device_sim::bundle::{Bundle, OscoreParams, SecretHex};
use device_sim::{DeviceDir, Identity, Trust};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, Role, SigningKey, TrustAnchor, TrustStore, UpdateType};
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);
const SECRET: [u8; 16] = [0x42; 16];

struct Keys {
    maker: SigningKey,
    dispatcher: SigningKey,
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn provision(dir: &std::path::Path, k: &Keys) {
    let b = Bundle {
        format: device_sim::bundle::FORMAT.into(),
        identity: Identity {
            name: "plc-9".into(),
            vendor_id: VENDOR,
            class_id: CLASS,
            device_id: Uuid::from_u128(9),
        },
        trust: Trust::from_keys(
            VENDOR,
            &[
                (
                    suit::Role::Manufacturer,
                    &kid(&k.maker),
                    &k.maker.public_key().to_pem(),
                ),
                (
                    suit::Role::Approver,
                    &kid(&k.dispatcher),
                    &k.dispatcher.public_key().to_pem(),
                ),
            ],
            true,
        ),
        oscore: OscoreParams {
            master_secret_hex: SecretHex::from_bytes(&SECRET),
            master_salt_hex: None,
            sender_id_hex: "09".into(),
            recipient_id_hex: "00".into(),
            id_context_hex: None,
        },
        uplink: None,
        dispatcher: "coap://127.0.0.1:5683".into(),
        factory_version: "1.0.0".into(),
    };
    device_sim::provision_from_bundle(DeviceDir::new(dir), &b, b"factory").unwrap();
}

/// A release approved by the dispatcher key: (envelope, key, blob).
fn release(k: &Keys, seq: u64, image: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let p = ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence: seq,
        version: vec![2, 0, seq as i64],
        requires: None,
        uri: None,
        ics: IcsMetadata::new(UpdateType::T2),
    };
    let r = build_release(&p, image, b"rk", &k.maker, &mut rng()).unwrap();
    let mut t = TrustStore::new();
    t.add(TrustAnchor::new(k.maker.public_key(), Role::Manufacturer));
    let v = suit::accept(&r.envelope, &t, &suit::Rules::dispatcher_intake(), 0).unwrap();
    (
        suit::approve(&v, &k.dispatcher).unwrap(),
        r.release_key.to_cose_key().to_vec(),
        r.blob,
    )
}

struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(dir: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["run", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on coap://")
        .unwrap_or_else(|| panic!("{line}"));
    Running {
        addr: addr.parse().unwrap(),
        child,
    }
}

async fn dispatcher_client(addr: SocketAddr, protected: bool) -> Client {
    let ctx = protected.then(|| {
        let p = ContextParams {
            master_secret: zeroize::Zeroizing::new(SECRET.to_vec()),
            master_salt: vec![],
            id_context: None,
            sender_id: vec![0x00],
            recipient_id: vec![0x09],
        };
        SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap()
    });
    let cfg = ClientConfig {
        ack_timeout: std::time::Duration::from_millis(500),
        ..ClientConfig::default()
    };
    Client::connect(addr, ctx, cfg).await.unwrap()
}

async fn push(
    c: &mut Client,
    r: &(Vec<u8>, Vec<u8>, Vec<u8>),
) -> oscore::Result<oscore::transport::Response> {
    assert_eq!(
        c.request(code::PUT, "suit/envelope", &r.0).await?.code,
        code::CHANGED
    );
    assert_eq!(
        c.request(code::PUT, "suit/key", &r.1).await?.code,
        code::CHANGED
    );
    c.request(code::PUT, "suit/blob", &r.2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_install_power_loss_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-9");
    let keys = Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    };
    provision(&dir, &keys);
    let device = run(&dir);

    // Unprotected requests are refused.
    let mut plain = dispatcher_client(device.addr, false).await;
    match plain.request(code::GET, "status", b"").await {
        Err(oscore::Error::Response { code: c, .. }) => assert_eq!(c, "4.01"),
        other => panic!("unprotected GET: {other:?}"),
    }

    // A 300 KiB release, pushed block-wise inside OSCORE.
    let image: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let rel = release(&keys, 5, &image);
    let mut c = dispatcher_client(device.addr, true).await;
    let r = push(&mut c, &rel).await.unwrap();
    assert_eq!(r.code, code::CHANGED);
    let report: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(report["outcome"], "installed", "{report}");
    assert_eq!(report["version_after"], "2.0.5");

    // A power loss while decrypting the next release: 5.03, the device rebooted.
    std::fs::write(
        dir.join("faults.json"),
        r#"{"power_loss": {"step": "decrypt", "after_bytes": 10000}}"#,
    )
    .unwrap();
    let rel6 = release(&keys, 6, &image);
    match push(&mut c, &rel6).await {
        Err(oscore::Error::Response { code: c, .. }) => assert_eq!(c, "5.03"),
        other => panic!("expected 5.03, got {other:?}"),
    }
    let status: serde_json::Value =
        serde_json::from_slice(&c.request(code::GET, "status", b"").await.unwrap().payload)
            .unwrap();
    assert_eq!(
        status["version"], "2.0.5",
        "still running the confirmed image"
    );
    // Sent again, it installs.
    let r = push(&mut c, &rel6).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(report["outcome"], "installed", "{report}");

    // kill -9 and restart: the state survived; the old release is a rollback now.
    drop(device);
    let device = run(&dir);
    let mut c = dispatcher_client(device.addr, true).await;
    let status: serde_json::Value =
        serde_json::from_slice(&c.request(code::GET, "status", b"").await.unwrap().payload)
            .unwrap();
    assert_eq!(
        (
            status["version"].as_str(),
            status["state"]["counter"].as_u64()
        ),
        (Some("2.0.6"), Some(6))
    );
    let r = push(&mut c, &rel).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(report["check"], "rollback", "{report}");
    // The release key never stays on the device.
    assert!(!dir.join("incoming/release-key.cbor").exists());
}

/// An attacker who captured a protected request re-sends it in a new CoAP message (new
/// message id and token: both are outside OSCORE's protection). The device must refuse it
/// (RFC 8613 §7.4 replay protection) and must not act on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_oscore_request_is_refused() {
    use coap_lite::MessageType;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-9");
    let keys = Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    };
    provision(&dir, &keys);
    let device = run(&dir);

    let mut ctx = SecurityContext::new(
        &ContextParams {
            master_secret: zeroize::Zeroizing::new(SECRET.to_vec()),
            master_salt: vec![],
            id_context: None,
            sender_id: vec![0x00],
            recipient_id: vec![0x09],
        },
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    // A protected PUT of a (small, valid-looking) envelope into the device's staging area.
    let mut req = oscore::message::packet(MessageType::Confirmable, code::PUT, 0x1000, b"t1");
    oscore::message::set_path(&mut req, "suit/envelope");
    req.payload = b"captured envelope".to_vec();
    let (challenged, challenge_binding) = oscore::protect::protect_request(&mut ctx, &req).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(device.addr).await.unwrap();
    let exchange = |bytes: Vec<u8>| {
        let sock = &sock;
        async move {
            sock.send(&bytes).await.unwrap();
            let mut buf = vec![0u8; 2048];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv(&mut buf))
                .await
                .expect("the device answers")
                .unwrap();
            oscore::message::decode(&buf[..n], 2048).unwrap()
        }
    };

    // The device started from its stored state: the first request is answered with an Echo
    // challenge (RFC 8613 Appendix B.1.2) and not acted on; the repeat with the Echo value is.
    let answer = exchange(oscore::message::encode(&challenged, 1500).unwrap()).await;
    let inner = oscore::protect::unprotect_response(&mut ctx, &challenge_binding, &answer).unwrap();
    assert_eq!(
        inner.header.code,
        coap_lite::MessageClass::from(code::UNAUTHORIZED)
    );
    assert!(!dir.join("incoming/envelope.suit").exists());
    let echo = oscore::message::first(&inner, oscore::message::opt::ECHO)
        .unwrap()
        .clone();
    oscore::message::set(&mut req, oscore::message::opt::ECHO, echo);
    req.header.message_id = 0x1001;
    let (mut outer, binding) = oscore::protect::protect_request(&mut ctx, &req).unwrap();

    // The original request is accepted (2.04 inside the protected response).
    let first = exchange(oscore::message::encode(&outer, 1500).unwrap()).await;
    let inner = oscore::protect::unprotect_response(&mut ctx, &binding, &first).unwrap();
    assert_eq!(
        inner.header.code,
        coap_lite::MessageClass::from(code::CHANGED)
    );
    std::fs::remove_file(dir.join("incoming/envelope.suit")).unwrap();

    // The replay: same OSCORE payload, new message id and token.
    outer.header.message_id = 0x2000;
    outer.set_token(b"t2".to_vec());
    let second = exchange(oscore::message::encode(&outer, 1500).unwrap()).await;
    assert_eq!(
        second.header.code,
        coap_lite::MessageClass::from(code::UNAUTHORIZED),
        "{second:?}"
    );
    assert!(
        !dir.join("incoming/envelope.suit").exists(),
        "the replayed request must not be acted on"
    );
}

/// A UDP relay on the path between a client and the device that records every datagram the
/// client sends (what an attacker on the path captures).
struct Recorder {
    addr: SocketAddr,
    recorded: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn recorder(device: SocketAddr) -> Recorder {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(device).await.unwrap();
    let addr = front.local_addr().unwrap();
    let recorded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = recorded.clone();
    let task = tokio::spawn(async move {
        let (mut b1, mut b2) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut client = None;
        loop {
            tokio::select! {
                r = front.recv_from(&mut b1) => {
                    let Ok((n, from)) = r else { continue };
                    client = Some(from);
                    rec.lock().unwrap().push(b1[..n].to_vec());
                    let _ = back.send(&b1[..n]).await;
                }
                r = back.recv(&mut b2) => {
                    let (Ok(n), Some(c)) = (r, client) else { continue };
                    let _ = front.send_to(&b2[..n], c).await;
                }
            }
        }
    });
    Recorder {
        addr,
        recorded,
        task,
    }
}

fn counter(dir: &std::path::Path) -> u64 {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    s["counter"].as_u64().unwrap()
}

fn install_attempts(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("install.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "install")
        .count()
}

/// Attack (issue 13): a push is recorded on the path; it did not install (a power loss during
/// decryption, 5.03), and the device loses power again (SIGKILL) and restarts. The attacker
/// replays every recorded datagram. Before the fix the restarted device had no replay state
/// and accepted them as new: it staged the envelope and key again and installed the release
/// (the dispatcher never decided to send it again), answering under the requests' nonces.
///
/// Check: every replayed datagram is answered either unprotected (a verification error) or
/// with the device's own Partial IV (an Echo challenge), never under the request's nonce;
/// nothing is staged, no install is attempted, the counter does not move. A genuine push
/// afterwards installs (the device works; the refusal was the replay's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_replayed_push_after_power_loss_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-9");
    let keys = Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    };
    provision(&dir, &keys);
    let device = run(&dir);
    let path = recorder(device.addr).await;
    let image: Vec<u8> = (0..20 * 1024).map(|i| (i % 249) as u8).collect();
    let rel = release(&keys, 5, &image);
    std::fs::write(
        dir.join("faults.json"),
        r#"{"power_loss": {"step": "decrypt", "after_bytes": 4096}}"#,
    )
    .unwrap();
    let mut c = dispatcher_client(path.addr, true).await;
    match push(&mut c, &rel).await {
        Err(oscore::Error::Response { code: c, .. }) => assert_eq!(c, "5.03"),
        other => panic!("expected the power loss (5.03), got {other:?}"),
    }
    assert_eq!(counter(&dir), 0);
    let recorded = path.recorded.lock().unwrap().clone();
    assert!(recorded.len() > 20, "{} datagrams recorded", recorded.len());

    // Power loss (SIGKILL) and restart.
    drop(device);
    let device = run(&dir);
    let _ = std::fs::remove_file(dir.join("incoming/envelope.suit"));
    let attempts = install_attempts(&dir);

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(device.addr).await.unwrap();
    let mut challenged = 0;
    for (i, d) in recorded.iter().enumerate() {
        sock.send(d).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer to replayed datagram {i}"))
            .unwrap();
        let resp = oscore::message::decode(&buf[..n], 2048).unwrap();
        match oscore::protect::oscore_option(&resp).unwrap() {
            None => {} // an unprotected verification error (e.g. 4.01 "Replay detected")
            Some(o) => {
                assert!(
                    o.piv.is_some(),
                    "replayed datagram {i} was answered under the request's nonce"
                );
                challenged += 1;
            }
        }
    }
    assert!(challenged > 0, "the device never even challenged");
    assert_eq!(counter(&dir), 0, "the replayed push installed");
    assert_eq!(install_attempts(&dir), attempts, "an install was attempted");
    assert!(
        !dir.join("incoming/envelope.suit").exists(),
        "the replayed envelope was staged"
    );

    // The genuine dispatcher, continuing in its own sequence space, still gets through: the
    // device re-establishes its window by Echo and installs.
    let cfg = ClientConfig {
        ack_timeout: std::time::Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let mut c = Client::connect(device.addr, c.into_context(), cfg)
        .await
        .unwrap();
    let r = push(&mut c, &rel).await;
    let report: serde_json::Value = serde_json::from_slice(&r.unwrap().payload).unwrap();
    assert_eq!(report["outcome"], "installed", "{report}");
    assert_eq!(counter(&dir), 5);
}

/// Attack (issue 13): a second process opens a device's contexts (a second `run` of the same
/// directory, or a fleet over its parent), so both answer under the same keys from the same
/// sequence numbers. Check: refused at start with a clear message (exit 2), nothing bound.
#[test]
fn second_process_cannot_open_context() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev-0000");
    let keys = Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    };
    provision(&dir, &keys);
    let first = run(&dir);
    let second = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["run", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use"), "{err}");
    assert!(second.stdout.is_empty(), "the second device never listened");
    // A fleet over the parent directory would open the same contexts: refused too.
    let fleet = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args([
            "fleet",
            "--count",
            "1",
            "--dir",
            tmp.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(fleet.status.code(), Some(2));
    let err = String::from_utf8_lossy(&fleet.stderr);
    assert!(err.contains("in use"), "{err}");
    drop(first);
}

/// Attack (issue 13): an unauthenticated peer uses a device as a reflector. With the
/// victim's address as source, a 4-byte request got 22 bytes back (4.01, Max-Age and
/// "OSCORE required": 5.5 times).
///
/// Check, on a real `device-sim run`: no answer to any of these datagrams is larger than
/// the datagram; the 4-byte GET is answered (4.01, so the measure is not of silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_error_reply_is_not_larger_than_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-9");
    let keys = Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    };
    provision(&dir, &keys);
    let device = run(&dir);
    let datagrams = oscore::corpus::hostile_datagrams(&[0x00]);
    let replies = oscore::corpus::reflect(device.addr, &datagrams).await;
    for (d, r) in datagrams.iter().zip(&replies) {
        if let Some(r) = r {
            assert!(
                r.len() <= d.len(),
                "{} bytes ({}) answered with {} ({})",
                d.len(),
                hex::encode(d),
                r.len(),
                hex::encode(r)
            );
        }
    }
    let first = replies[0].as_ref().expect("the 4-byte GET is answered");
    assert_eq!(first[1], code::UNAUTHORIZED);
    assert!(
        replies.iter().filter(|r| r.is_some()).count() > 10,
        "too few answers to measure"
    );
}

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}
