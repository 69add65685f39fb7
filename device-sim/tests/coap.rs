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
    let (mut outer, binding) = oscore::protect::protect_request(&mut ctx, &req).unwrap();
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

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}
