//! The device → dispatcher direction: a real `device-sim run` process checks in to the
//! dispatcher's uplink server (`dispatcher::uplink::UplinkHandler` over a test backend), is
//! offered a release, pulls it with Block2 inside OSCORE, installs it and reports. Also: a
//! tampered blob, a refused check-in and `POST suit/pull`. The wire types are one set,
//! `fleet_proto`'s, used by both sides (its own tests cover the decoders); what is tested
//! here is a real device against the real handler.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_sim::bundle::{Bundle, OscoreParams, SecretHex};
use device_sim::{DeviceDir, Identity, Trust};
use dispatcher::uplink::{
    Artifact, CheckIn, CheckInReply, DeviceBackend, DeviceReport, Pending, ReportOutcome,
    UplinkError, start_uplink,
};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig, ContextSet, ServerHandle};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, Role, SigningKey, TrustAnchor, TrustStore, UpdateType};
use tokio::sync::mpsc;
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);
const PUSH_SECRET: [u8; 16] = [0x42; 16];
const UPLINK_SECRET: [u8; 16] = [0x5a; 16];
/// The device's uplink sender id (its kid at the dispatcher) and the dispatcher's.
const DEVICE_KID: &[u8] = &[0x01, 0x07];
const DISPATCHER_KID: &[u8] = &[0x00];
/// A hang guard, not a performance threshold: every wait ends far earlier when things work.
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

/// A bundle for device `n` with the given uplink kid and secrets.
fn bundle(
    k: &Keys,
    dispatcher: SocketAddr,
    n: u8,
    push: [u8; 16],
    uplink: ([u8; 16], &[u8]),
) -> Bundle {
    Bundle {
        format: device_sim::bundle::FORMAT.into(),
        identity: Identity {
            name: format!("rtu-{n}"),
            vendor_id: VENDOR,
            class_id: CLASS,
            device_id: Uuid::from_u128(n.into()),
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
            master_secret_hex: SecretHex::from_bytes(&push),
            master_salt_hex: None,
            sender_id_hex: hex::encode([n]),
            recipient_id_hex: "00".into(),
            id_context_hex: None,
        },
        uplink: Some(OscoreParams {
            master_secret_hex: SecretHex::from_bytes(&uplink.0),
            master_salt_hex: None,
            sender_id_hex: hex::encode(uplink.1),
            recipient_id_hex: hex::encode(DISPATCHER_KID),
            id_context_hex: None,
        }),
        dispatcher: format!("coap://{dispatcher}"),
        factory_version: "1.0.0".into(),
    }
}

fn provision(dir: &std::path::Path, k: &Keys, dispatcher: SocketAddr) {
    let b = bundle(k, dispatcher, 7, PUSH_SECRET, (UPLINK_SECRET, DEVICE_KID));
    b.validate().unwrap();
    device_sim::provision_from_bundle(DeviceDir::new(dir), &b, b"factory").unwrap();
}

/// A release approved by the dispatcher key.
struct Release {
    id: String,
    envelope: Arc<Vec<u8>>,
    key: Arc<Vec<u8>>,
    blob: Arc<Vec<u8>>,
}

fn release(k: &Keys, seq: u64, image: &[u8]) -> Release {
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
    Release {
        id: v.release_id(),
        envelope: Arc::new(suit::approve(&v, &k.dispatcher).unwrap()),
        key: Arc::new(r.release_key.to_cose_key().to_vec()),
        blob: Arc::new(r.blob),
    }
}

#[derive(Debug)]
enum Event {
    CheckIn(Vec<u8>, SocketAddr, Box<CheckIn>),
    Report(Vec<u8>, DeviceReport),
}

/// The dispatcher's service, reduced to what the uplink needs: one release, offered at
/// check-in (`offer_at_checkin`) or only available for pulling (`suit/pull`).
struct Backend {
    /// Enrolled devices (uplink kids).
    known: HashSet<Vec<u8>>,
    release: Release,
    offer_at_checkin: bool,
    next_checkin_s: u32,
    blob_blocks: AtomicUsize,
    events: Mutex<mpsc::UnboundedSender<Event>>,
}

impl DeviceBackend for Backend {
    fn checkin(
        &self,
        kid: &[u8],
        peer: SocketAddr,
        c: CheckIn,
    ) -> Result<CheckInReply, UplinkError> {
        if !self.known.contains(kid) {
            return Err(UplinkError::UnknownDevice);
        }
        let _ = self
            .events
            .lock()
            .unwrap()
            .send(Event::CheckIn(kid.to_vec(), peer, Box::new(c)));
        Ok(CheckInReply {
            next_checkin_s: self.next_checkin_s,
            pending: self.offer_at_checkin.then(|| Pending {
                release_id: self.release.id.clone(),
                envelope_size: self.release.envelope.len() as u64,
                blob_size: self.release.blob.len() as u64,
            }),
        })
    }

    fn artifact(
        &self,
        kid: &[u8],
        release_id: &str,
        which: Artifact,
    ) -> Result<Arc<Vec<u8>>, UplinkError> {
        if !self.known.contains(kid) {
            return Err(UplinkError::UnknownDevice);
        }
        if release_id != self.release.id {
            return Err(UplinkError::NotFound);
        }
        Ok(match which {
            Artifact::Envelope => self.release.envelope.clone(),
            Artifact::Key => self.release.key.clone(),
            Artifact::Blob => {
                self.blob_blocks.fetch_add(1, Ordering::Relaxed);
                self.release.blob.clone()
            }
        })
    }

    fn report(&self, kid: &[u8], r: DeviceReport) -> Result<(), UplinkError> {
        let _ = self
            .events
            .lock()
            .unwrap()
            .send(Event::Report(kid.to_vec(), r));
        Ok(())
    }
}

fn dispatcher_side(secret: [u8; 16]) -> SecurityContext {
    dispatcher_side_for(secret, DEVICE_KID)
}

/// The dispatcher's side of a device's uplink context: the bundle's `uplink` member with
/// sender and recipient swapped.
fn dispatcher_side_for(secret: [u8; 16], device_kid: &[u8]) -> SecurityContext {
    let p = ContextParams {
        master_secret: zeroize::Zeroizing::new(secret.to_vec()),
        master_salt: vec![],
        id_context: None,
        sender_id: DISPATCHER_KID.to_vec(),
        recipient_id: device_kid.to_vec(),
    };
    SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap()
}

struct Dispatcher {
    server: ServerHandle,
    contexts: ContextSet,
    backend: Arc<Backend>,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn dispatcher(
    release: Release,
    offer_at_checkin: bool,
    next_checkin_s: u32,
    contexts: Vec<SecurityContext>,
) -> Dispatcher {
    let (tx, events) = mpsc::unbounded_channel();
    let backend = Arc::new(Backend {
        known: contexts.iter().map(|c| c.recipient_id().to_vec()).collect(),
        release,
        offer_at_checkin,
        next_checkin_s,
        blob_blocks: AtomicUsize::new(0),
        events: Mutex::new(tx),
    });
    let (server, contexts) =
        start_uplink("127.0.0.1:0".parse().unwrap(), backend.clone(), contexts)
            .await
            .unwrap();
    Dispatcher {
        server,
        contexts,
        backend,
        events,
    }
}

impl Dispatcher {
    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("the device checks in or reports")
            .unwrap()
    }

    async fn next_report(&mut self) -> DeviceReport {
        loop {
            if let Event::Report(kid, r) = self.next_event().await {
                assert_eq!(kid, DEVICE_KID);
                return r;
            }
        }
    }
}

struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: Option<std::sync::mpsc::Receiver<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(dir: &std::path::Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["run", "--dir", dir.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Running {
        addr: addr.parse().unwrap(),
        child,
        stderr: Some(rx),
    }
}

impl Running {
    /// Waits for a stderr line containing all of `words`.
    async fn log_line(&mut self, words: &[&str]) -> String {
        let rx = self.stderr.take().unwrap();
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let (line, rx) = tokio::task::spawn_blocking(move || {
            loop {
                let l = rx.recv_timeout(PATIENCE).expect("device log line");
                if words.iter().all(|w| l.contains(w.as_str())) {
                    return (l, rx);
                }
            }
        })
        .await
        .unwrap();
        self.stderr = Some(rx);
        line
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// The dispatcher's push-direction client (to the device's own server).
async fn push_client(addr: SocketAddr) -> Client {
    let p = ContextParams {
        master_secret: zeroize::Zeroizing::new(PUSH_SECRET.to_vec()),
        master_salt: vec![],
        id_context: None,
        sender_id: vec![0x00],
        recipient_id: vec![0x07],
    };
    let ctx = SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap();
    let cfg = ClientConfig {
        ack_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    Client::connect(addr, Some(ctx), cfg).await.unwrap()
}

fn image() -> Vec<u8> {
    (0..300 * 1024).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkin_pull_install_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rtu-7");
    let k = keys();
    let rel = release(&k, 5, &image());
    let (id, blob_len) = (rel.id.clone(), rel.blob.len());
    let mut d = dispatcher(rel, true, 3600, vec![dispatcher_side(UPLINK_SECRET)]).await;
    provision(&dir, &k, d.server.addr);
    let mode = std::fs::metadata(dir.join("uplink.json"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let device = run(&dir, &["--checkin-interval", "1"]);

    // The check-in names the device's own server port and its factory state.
    let Event::CheckIn(kid, peer, c) = d.next_event().await else {
        panic!("first event is the check-in");
    };
    assert_eq!(kid, DEVICE_KID);
    assert!(peer.ip().is_loopback());
    assert_eq!(c.coap_port, device.addr.port());
    assert_eq!(
        (c.version.as_str(), c.sequence, c.release_id.as_deref()),
        ("1.0.0", 0, None)
    );
    assert_eq!(c.state.counter, 0);

    // Offered the release, it pulls it (the blob block by block) and reports.
    let r = d.next_report().await;
    assert_eq!(r.outcome, ReportOutcome::Installed, "{r:?}");
    assert_eq!(r.release_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        (r.version_before.as_str(), r.version_after.as_str()),
        ("1.0.0", "2.0.5")
    );
    let blocks = d.backend.blob_blocks.load(Ordering::Relaxed);
    assert!(
        blocks >= blob_len / 1024,
        "blob of {blob_len} bytes came in {blocks} Block2 requests"
    );
    let state = DeviceDir::new(&dir).state().unwrap();
    assert_eq!(state.counter, 5);
    assert!(!dir.join("incoming/pull-blob.bin").exists());

    // The next check-ins show the new image, and the device does not pull it again (a pull
    // after check-in 2 would report before check-in 3).
    for _ in 0..2 {
        match d.next_event().await {
            Event::CheckIn(_, _, c) => {
                assert_eq!(c.release_id.as_deref(), Some(id.as_str()));
                assert_eq!((c.version.as_str(), c.sequence), ("2.0.5", 5));
            }
            Event::Report(_, r) => panic!("pulled and reported again: {r:?}"),
        }
    }
    drop(device);
    d.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_blob_is_reported_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rtu-7");
    let k = keys();
    let mut rel = release(&k, 5, &image());
    let mut blob = rel.blob.to_vec();
    blob[1000] ^= 0x01;
    rel.blob = Arc::new(blob);
    let id = rel.id.clone();
    let mut d = dispatcher(rel, true, 3600, vec![dispatcher_side(UPLINK_SECRET)]).await;
    provision(&dir, &k, d.server.addr);
    let _device = run(&dir, &["--checkin-interval", "1"]);

    let r = d.next_report().await;
    assert_eq!(r.outcome, ReportOutcome::Rejected, "{r:?}");
    assert_eq!(r.check.as_deref(), Some("ciphertext-digest-mismatch"));
    assert_eq!(r.release_id.as_deref(), Some(id.as_str()));
    assert_eq!(r.version_after, "1.0.0");
    assert_eq!(DeviceDir::new(&dir).state().unwrap().counter, 0);
    // Still offered at the next check-in: the device sends its report again instead of
    // pulling the same bad release again.
    let blocks = d.backend.blob_blocks.load(Ordering::Relaxed);
    let again = d.next_report().await;
    assert_eq!(again, r);
    assert_eq!(d.backend.blob_blocks.load(Ordering::Relaxed), blocks);
}

/// The dispatcher does not know the device's uplink context: first a context for its kid
/// with another secret (RFC 8613 §8.2: 4.00 "Decryption failed"), then none at all (4.01
/// "Security context not found"). The device logs the refusal, keeps serving its own CoAP
/// resources and keeps checking in; once enrolled, its check-in is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_checkin_leaves_the_device_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rtu-7");
    let k = keys();
    let rel = release(&k, 5, &image());
    let mut d = dispatcher(rel, false, 3600, vec![dispatcher_side([0x66; 16])]).await;
    provision(&dir, &k, d.server.addr);
    let mut device = run(&dir, &["--checkin-interval", "1"]);

    let line = device.log_line(&["check-in failed", "4.00"]).await;
    assert!(line.contains("Decryption failed"), "{line}");
    assert!(
        !line.contains(&hex::encode(UPLINK_SECRET)),
        "no secret in logs"
    );
    assert_eq!(d.contexts.remove(DEVICE_KID), 1);
    let line = device.log_line(&["check-in failed", "4.01"]).await;
    assert!(line.contains("Security context not found"), "{line}");

    assert!(device.alive());
    let mut c = push_client(device.addr).await;
    let status = c.request(code::GET, "status", b"").await.unwrap();
    assert_eq!(status.code, code::CONTENT);
    assert!(d.events.try_recv().is_err(), "nothing got through");

    // Enrolled while both run: the next check-in is accepted.
    d.contexts.add(dispatcher_side(UPLINK_SECRET)).unwrap();
    let Event::CheckIn(kid, _, _) = d.next_event().await else {
        panic!("check-in expected");
    };
    assert_eq!(kid, DEVICE_KID);
}

/// `POST suit/pull` (push direction) makes the device pull a release that its check-in did
/// not mention, at once rather than at its next check-in an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suit_pull_makes_the_device_pull_now() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rtu-7");
    let k = keys();
    let rel = release(&k, 6, &image());
    let id = rel.id.clone();
    let mut d = dispatcher(rel, false, 3600, vec![dispatcher_side(UPLINK_SECRET)]).await;
    provision(&dir, &k, d.server.addr);
    let device = run(&dir, &[]);
    let Event::CheckIn(_, _, _) = d.next_event().await else {
        panic!("check-in at start");
    };

    let mut c = push_client(device.addr).await;
    let body = dispatcher::uplink::PullNotice {
        release_id: id.clone(),
    }
    .encode()
    .unwrap();
    let r = c.request(code::POST, "suit/pull", &body).await.unwrap();
    assert_eq!(r.code, code::CHANGED);
    let r = d.next_report().await;
    assert_eq!(
        (r.outcome, r.release_id.as_deref(), r.version_after.as_str()),
        (ReportOutcome::Installed, Some(id.as_str()), "2.0.6")
    );
}

/// Over a slow and lossy link (`link.json`), the check-in names the relay's port (the
/// device's public address, printed by `run`), the dispatcher reaches the device there, and
/// a pull through the uplink's own relay installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkin_and_pull_over_a_lossy_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rtu-7");
    let k = keys();
    // 16 KiB: the uplink uses the default ACK_TIMEOUT (2 s), so every lost datagram costs
    // seconds; the pull must still be short.
    let image: Vec<u8> = (0..16 * 1024).map(|i| (i % 251) as u8).collect();
    let rel = release(&k, 5, &image);
    let id = rel.id.clone();
    let mut d = dispatcher(rel, true, 3600, vec![dispatcher_side(UPLINK_SECRET)]).await;
    provision(&dir, &k, d.server.addr);
    std::fs::write(
        dir.join("link.json"),
        r#"{"loss_percent": 10, "delay_ms": 20, "seed": 5}"#,
    )
    .unwrap();
    let device = run(&dir, &["--checkin-interval", "1"]);

    let Event::CheckIn(_, peer, c) = d.next_event().await else {
        panic!("first event is the check-in");
    };
    assert!(peer.ip().is_loopback());
    assert_eq!(c.coap_port, device.addr.port(), "the relay's port");
    let r = d.next_report().await;
    assert_eq!(
        (r.outcome, r.release_id.as_deref(), r.version_after.as_str()),
        (ReportOutcome::Installed, Some(id.as_str()), "2.0.5"),
        "{r:?}"
    );
    let mut push = push_client(SocketAddr::new(peer.ip(), c.coap_port)).await;
    let status = push.request(code::GET, "status", b"").await.unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["state"]["counter"], 5, "{status}");
}

/// `device-sim fleet`: every device checks in with its own uplink kid, naming its own
/// server's port (the first check-ins spread over COUNT × 10 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_devices_check_in_with_their_own_kids() {
    fleet_check_in(12, &[]).await;
}

/// As above with `--delay-ms` for every device: fleet.json and the check-ins name each
/// device's relay, and a push reaches each device there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_behind_a_slow_link_names_the_relays() {
    fleet_check_in(3, &["--delay-ms", "20", "--loss-percent", "0"]).await;
}

/// Runs a fleet of `count` devices with `extra` options; checks that each checks in with its
/// own kid naming the port in fleet.json, and that a push client reaches it there.
async fn fleet_check_in(count: u8, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let k = keys();
    let kid = |i: u8| vec![0x10, i];
    let uplink_secret = |i: u8| [0xa0 | i; 16];
    let contexts = (0..count)
        .map(|i| dispatcher_side_for(uplink_secret(i), &kid(i)))
        .collect();
    let mut d = dispatcher(release(&k, 5, b"tiny"), false, 3600, contexts).await;
    let bundles: Vec<Bundle> = (0..count)
        .map(|i| {
            bundle(
                &k,
                d.server.addr,
                i + 1,
                [0x20 | i; 16],
                (uplink_secret(i), &kid(i)),
            )
        })
        .collect();
    let file = tmp.path().join("bundles.json");
    std::fs::write(&file, serde_json::to_vec(&bundles).unwrap()).unwrap();
    let fleet_dir = tmp.path().join("fleet");
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(["fleet", "--count", &count.to_string(), "--dir"])
        .arg(&fleet_dir)
        .arg("--provision")
        .arg(&file)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("devices listening"), "{line}");
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fleet_dir.join("fleet.json")).unwrap()).unwrap();
    let mut seen = HashMap::new();
    while seen.len() < usize::from(count) {
        if let Event::CheckIn(kid, _, c) = d.next_event().await {
            seen.insert(kid, c.coap_port);
        }
    }
    for i in 0..count {
        let addr: SocketAddr = index[usize::from(i)]["address"]
            .as_str()
            .unwrap()
            .trim_start_matches("coap://")
            .parse()
            .unwrap();
        assert_eq!(seen[&kid(i)], addr.port(), "device {i}");
        let p = ContextParams {
            master_secret: zeroize::Zeroizing::new([0x20 | i; 16].to_vec()),
            master_salt: vec![],
            id_context: None,
            sender_id: vec![0x00],
            recipient_id: vec![i + 1],
        };
        let ctx = SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap();
        let mut c = Client::connect(addr, Some(ctx), ClientConfig::default())
            .await
            .unwrap();
        let r = c.request(code::GET, "status", b"").await.unwrap();
        assert_eq!(r.code, code::CONTENT, "device {i}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}
