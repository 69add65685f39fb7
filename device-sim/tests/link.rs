//! The "slow or lossy link" fault on a real `device-sim run` process: `DIR/link.json` (and
//! `--loss-percent` / `--delay-ms`) put the device's CoAP endpoint behind a relay that drops
//! and delays datagrams in both directions. A push over a 20 % lossy link still installs
//! (the OSCORE client's retransmissions and Block1 resumption carry it), the delay is applied
//! to every datagram, and an invalid `link.json` refuses the start.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use device_sim::bundle::{Bundle, OscoreParams, SecretHex};
use device_sim::{DeviceDir, Identity, Trust};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, Role, SigningKey, TrustAnchor, TrustStore, UpdateType};
use tokio::time::Instant;
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);
const SECRET: [u8; 16] = [0x42; 16];
/// A hang guard, not a performance threshold.
const PATIENCE: Duration = Duration::from_secs(120);

struct Keys {
    maker: SigningKey,
    dispatcher: SigningKey,
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn keys() -> Keys {
    Keys {
        maker: SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec()),
        dispatcher: SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec()),
    }
}

fn provision(dir: &Path, k: &Keys) {
    let b = Bundle {
        format: device_sim::bundle::FORMAT.into(),
        identity: Identity {
            name: "plc-4".into(),
            vendor_id: VENDOR,
            class_id: CLASS,
            device_id: Uuid::from_u128(4),
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
            sender_id_hex: "04".into(),
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

fn run(dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["run", "--dir", dir.to_str().unwrap()])
        .args(extra)
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
    let addr: SocketAddr = addr.parse().unwrap();
    // The address file names the relay, as the printed line does.
    assert_eq!(
        std::fs::read_to_string(dir.join("address")).unwrap(),
        format!("coap://{addr}")
    );
    Running { child, addr }
}

/// The dispatcher's push client (ACK_TIMEOUT 500 ms instead of 2 s, so that a test over a
/// lossy link does not spend minutes waiting for retransmissions).
async fn push_client(addr: SocketAddr, ack_timeout: Duration) -> Client {
    let p = ContextParams {
        master_secret: zeroize::Zeroizing::new(SECRET.to_vec()),
        master_salt: vec![],
        id_context: None,
        sender_id: vec![0x00],
        recipient_id: vec![0x04],
    };
    let ctx = SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap();
    let cfg = ClientConfig {
        ack_timeout,
        ..ClientConfig::default()
    };
    Client::connect(addr, Some(ctx), cfg).await.unwrap()
}

/// Sends CoAP pings (Empty CON; the device's server answers each with RST) without
/// retransmitting, in `rounds` rounds of 50, and returns how many were answered. The relay
/// keeps order and the device's server answers in order, so once the answer to a round's
/// marker ping arrives, every surviving answer of the round has arrived: no timing decides
/// what counts as lost. Rounds keep the kernel's socket buffers from overflowing.
async fn ping_rounds(device: SocketAddr, rounds: u16) -> usize {
    use coap_lite::MessageType;
    const ROUND: u16 = 50;
    const MARKERS: u16 = 60_000;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(device).await.unwrap();
    let ping = |mid: u16| {
        let p = oscore::message::packet(MessageType::Confirmable, 0, mid, &[]);
        oscore::message::encode(&p, 64).unwrap()
    };
    let mut answered = std::collections::HashSet::new();
    let deadline = Instant::now() + PATIENCE;
    for round in 0..rounds {
        for mid in round * ROUND..(round + 1) * ROUND {
            sock.send(&ping(mid)).await.unwrap();
        }
        let marker = MARKERS + round;
        'round: loop {
            // The marker is re-sent until one gets through (its loss is part of the link).
            sock.send(&ping(marker)).await.unwrap();
            let wait = Instant::now() + Duration::from_millis(200);
            loop {
                let mut buf = [0u8; 64];
                let Ok(r) = tokio::time::timeout_at(wait, sock.recv(&mut buf)).await else {
                    break;
                };
                let p = oscore::message::decode(&buf[..r.unwrap()], 64).unwrap();
                assert_eq!(p.header.get_type(), MessageType::Reset);
                match p.header.message_id {
                    m if m == marker => break 'round,
                    // A late answer to an earlier round's re-sent marker.
                    m if (MARKERS..marker).contains(&m) => {}
                    m if m < (round + 1) * ROUND => {
                        assert!(answered.insert(m), "ping {m} answered twice");
                    }
                    m => panic!("answer to a ping never sent: {m}"),
                }
            }
            assert!(Instant::now() < deadline, "no marker ping got through");
        }
    }
    answered.len()
}

/// A ~64 KiB release pushed over a link that drops 20 % of the datagrams each way installs:
/// retransmissions (same message id; the device answers duplicates from its cache) and
/// block-wise resumption carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_a_20_percent_lossy_link_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-4");
    let k = keys();
    provision(&dir, &k);
    std::fs::write(
        dir.join("link.json"),
        r#"{"loss_percent": 20, "seed": 20260401}"#,
    )
    .unwrap();
    let device = run(&dir, &[]);

    // The loss applies in both directions: 0.8 × 0.8 = 64 % of the pings come back (one
    // direction only would be 80 %). 1000 pings: sigma 1.5 %, so the bounds are 5 sigma.
    let answered = ping_rounds(device.addr, 20).await;
    assert!(
        (560..=720).contains(&answered),
        "{answered} of 1000 pings answered through a 20 % lossy link"
    );

    let image: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let (envelope, key, blob) = release(&k, 3, &image);
    let mut c = push_client(device.addr, Duration::from_millis(500)).await;
    let push = async {
        for (path, body) in [("suit/envelope", &envelope), ("suit/key", &key)] {
            let r = c.request(code::PUT, path, body).await.unwrap();
            assert_eq!(r.code, code::CHANGED, "{path}");
        }
        let r = c.request(code::PUT, "suit/blob", &blob).await.unwrap();
        let report: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(report["outcome"], "installed", "{report}");
        assert_eq!(report["version_after"], "2.0.3");
        let st = c.request(code::GET, "status", b"").await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&st.payload).unwrap();
        assert_eq!(status["state"]["counter"], 3, "{status}");
    };
    tokio::time::timeout(PATIENCE, push)
        .await
        .expect("the push completes");
    assert_eq!(DeviceDir::new(&dir).state().unwrap().counter, 3);
}

/// Round trip of one protected `GET status` (after a first one, which may include the Echo
/// exchange of a freshly started server).
async fn status_round_trip(addr: SocketAddr) -> Duration {
    // ACK_TIMEOUT above any delay here, so that no retransmission is in play.
    let mut c = push_client(addr, Duration::from_secs(10)).await;
    let first = c.request(code::GET, "status", b"").await.unwrap();
    assert_eq!(first.code, code::CONTENT);
    let t = Instant::now();
    let r = c.request(code::GET, "status", b"").await.unwrap();
    assert_eq!(r.code, code::CONTENT);
    t.elapsed()
}

/// `delay_ms` delays every datagram: a round trip through the relay takes at least twice the
/// delay. `--delay-ms` overrides the file's `delay_ms`. (Lower bounds only: a loaded machine
/// only makes things slower.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_to_each_datagram_and_the_option_overrides_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-4");
    provision(&dir, &keys());

    std::fs::write(dir.join("link.json"), r#"{"delay_ms": 300}"#).unwrap();
    let device = run(&dir, &[]);
    let rtt = status_round_trip(device.addr).await;
    assert!(rtt >= Duration::from_millis(600), "round trip {rtt:?}");
    drop(device);

    // The file says no delay; the option wins.
    std::fs::write(dir.join("link.json"), r#"{"delay_ms": 0, "seed": 1}"#).unwrap();
    let device = run(&dir, &["--delay-ms", "250"]);
    let rtt = status_round_trip(device.addr).await;
    assert!(rtt >= Duration::from_millis(500), "round trip {rtt:?}");
    drop(device);

    // The option alone, without link.json.
    std::fs::remove_file(dir.join("link.json")).unwrap();
    let device = run(&dir, &["--delay-ms", "200", "--loss-percent", "0"]);
    let rtt = status_round_trip(device.addr).await;
    assert!(rtt >= Duration::from_millis(400), "round trip {rtt:?}");
}

/// An invalid link fault refuses the start (exit code 2) with a message naming the file and
/// the field, before the device listens.
#[test]
fn invalid_link_json_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plc-4");
    provision(&dir, &keys());
    let d = dir.to_str().unwrap();
    for (text, why) in [
        (
            r#"{"loss_percent": 90}"#,
            "loss_percent: 90 is out of range (0 to 50)",
        ),
        (
            r#"{"loss_percent": 10, "jitter_ms": 5}"#,
            "unknown field `jitter_ms`",
        ),
        (
            r#"{"delay_ms": 5000}"#,
            "delay_ms: 5000 is out of range (0 to 2000)",
        ),
    ] {
        std::fs::write(dir.join("link.json"), text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_device-sim"))
            .args(["run", "--dir", d])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert!(
            err.contains(&format!("{}: ", dir.join("link.json").display())),
            "{text}: {err}"
        );
        assert!(err.contains(why), "{text}: {err}");
        assert!(o.stdout.is_empty(), "it must not listen: {text}");
        assert!(!dir.join("address").exists());
    }
    // The same file refuses a fleet, naming the device's file.
    let fleet = tmp.path().join("fleet");
    std::fs::create_dir(&fleet).unwrap();
    std::fs::rename(&dir, fleet.join("dev-0000")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["fleet", "--count", "1", "--dir", fleet.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("dev-0000/link.json: "), "{err}");
    // Out-of-range options are refused by the argument parser.
    std::fs::remove_file(fleet.join("dev-0000/link.json")).unwrap();
    let dev = fleet.join("dev-0000");
    for args in [["--loss-percent", "51"], ["--delay-ms", "2001"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_device-sim"))
            .args(["run", "--dir", dev.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
}

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}
