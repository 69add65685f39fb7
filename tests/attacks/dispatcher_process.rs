//! Attacks on the dispatcher as a real process (issue 13; moved here from
//! `tests/attacks_dispatcher.rs`): a device's check-in recorded on the path and replayed
//! after the dispatcher was killed (SIGKILL: an OOM kill); the last block of a push held
//! back on the path until the rollout was aborted; a second dispatcher on the same data.
//! Each starts its own dispatcher (`dispatcher init` + `serve`) and asserts the refusal on
//! the wire and that nothing was acted on.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dispatcher::client::DispatcherClient;
use oscore::message::{self, code, opt};
use oscore::protect;
use oscore::{MemorySeqStore, SecurityContext};
use serde_json::{Value, json};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, SigningKey, UpdateType};
use uuid::Uuid;

use crate::common::{
    EXE, checkin, device_counter, exchange, install_attempts, response_piv, rng, uplink_params,
};

/// `dispatcher` as its own process.
fn dispatcher_cmd() -> Command {
    let mut c = Command::new(EXE);
    c.arg("dispatcher");
    c
}
const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);

/// A dispatcher directory made by `dispatcher init`, with an internal publisher and a
/// manufacturer key in its trust store and a policy that installs T1 releases at once.
struct Setup {
    dir: PathBuf,
    internal: SigningKey,
}

fn setup(root: &Path) -> Setup {
    let dir = root.join("dispatcher");
    let out = dispatcher_cmd()
        .args(["init", "--dir", dir.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--coap-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let maker = SigningKey::generate(&mut rng()).with_kid(b"acme-fw".to_vec());
    let internal = SigningKey::generate(&mut rng()).with_kid(b"plant-eng".to_vec());
    std::fs::write(
        dir.join("trust.toml"),
        format!(
            "[[key]]\nkid = \"acme-fw\"\nrole = \"manufacturer\"\nvendors = [\"{VENDOR}\"]\npem = \"\"\"{}\"\"\"\n\n\
             [[key]]\nkid = \"plant-eng\"\nrole = \"internal\"\nvendors = [\"{VENDOR}\"]\npem = \"\"\"{}\"\"\"\n",
            maker.public_key().to_pem(),
            internal.public_key().to_pem()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[defaults]\naction = \"hold\"\n\n[[rollout]]\nname = \"now\"\nbatches = [\"100%\"]\npause = \"0s\"\nfailure_threshold = \"100%\"\n\n\
         [[rule]]\nname = \"apps\"\nmatch = { type = [\"T1\"] }\naction = \"install\"\nrollout = \"now\"\n",
    )
    .unwrap();
    Setup { dir, internal }
}

/// A running dispatcher process (SIGKILLed when dropped).
struct Running {
    child: Child,
    coap: SocketAddr,
    api: DispatcherClient,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dispatcher serve`; with `pin`, the ports it bound are written into its
/// configuration so a restart keeps them (devices know the CoAP address).
fn start(s: &Setup, pin: bool) -> Running {
    let config = s.dir.join("dispatcher.toml");
    let mut child = dispatcher_cmd()
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("DISPATCHER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut it = line
        .trim()
        .strip_prefix("dispatcher listening ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .split_whitespace();
    let https = it.next().unwrap().to_owned();
    let coap: SocketAddr = it
        .next()
        .unwrap()
        .trim_start_matches("coap://")
        .parse()
        .unwrap();
    if pin {
        let mut cfg = dispatcher::config::Config::load(&config).unwrap();
        cfg.listen = https.trim_start_matches("https://").parse().unwrap();
        cfg.coap_listen = coap;
        cfg.coap_uri = format!("coap://{coap}");
        cfg.save(&config).unwrap();
    }
    let ca = std::fs::read(s.dir.join("tls/ca.pem")).unwrap();
    let token = std::fs::read_to_string(s.dir.join("admin.token")).unwrap();
    let api = DispatcherClient::new(&https, Some(&ca), token.trim()).unwrap();
    Running { child, coap, api }
}

fn sigkill(mut r: Running) {
    r.child.kill().unwrap();
    r.child.wait().unwrap();
}

/// A graceful stop (SIGTERM): the dispatcher flushes its store.
fn sigterm(mut r: Running) {
    let pid = r.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(r.child.wait().unwrap().success());
}

async fn enrol(api: &DispatcherClient, name: &str, address: Option<SocketAddr>) -> Value {
    api.post(
        "/v1/devices",
        &json!({"name": name, "vendor_id": VENDOR, "class_id": CLASS, "address": address}),
    )
    .await
    .unwrap()
}

async fn device_port(api: &DispatcherClient, name: &str) -> Option<u16> {
    let d: Value = api.get(&format!("/v1/devices/{name}")).await.unwrap();
    let rec = if d["device"].is_object() {
        &d["device"]
    } else {
        &d
    };
    rec["address"]
        .as_str()
        .map(|a| a.parse::<SocketAddr>().unwrap().port())
}

/// Attack (issue 13; A1 on the device network, with F: the dispatcher crashes): a device's
/// check-in is recorded on the path; the device later checks in from another port (it
/// moved); the dispatcher is stopped or OOM-killed (SIGKILL) and restarted; the recorded
/// check-in is replayed. Before the fix the restarted dispatcher accepted it and
/// moved the device's push address back to the stale port (pushes then go to whoever holds
/// it), answering under the request's nonce.
///
/// Check: the replay is answered with 4.01 + Echo under the dispatcher's own Partial IV (not
/// the original answer's bytes), and the device's address stays where the newer check-in
/// put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_replayed_checkin_after_sigkill_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let d = start(&s, true);
    let bundle = enrol(&d.api, "rtu-1", None).await;
    let mut dev =
        SecurityContext::new(&uplink_params(&bundle), Box::new(MemorySeqStore::new())).unwrap();

    // First check-in from port 1111. The dispatcher opened the new context from its stored
    // state: it challenges first, then accepts the repeat — the request the attacker records.
    let (q, b) = checkin(&mut dev, 1111, 1, None);
    let resp = message::decode(&exchange(d.coap, &q).await, 1500).unwrap();
    let inner = protect::unprotect_response(&mut dev, &b, &resp).unwrap();
    assert_eq!(message::code_of(&inner), code::UNAUTHORIZED);
    let echo = message::first(&inner, opt::ECHO).unwrap().clone();
    let (recorded, recorded_binding) = checkin(&mut dev, 1111, 2, Some(&echo));
    let original_answer = exchange(d.coap, &recorded).await;
    let inner = protect::unprotect_response(
        &mut dev,
        &recorded_binding,
        &message::decode(&original_answer, 1500).unwrap(),
    )
    .unwrap();
    assert_eq!(message::code_of(&inner), code::CHANGED);
    assert_eq!(device_port(&d.api, "rtu-1").await, Some(1111));
    // The device moves: a newer check-in from port 2222.
    let (q, b) = checkin(&mut dev, 2222, 3, None);
    let resp = message::decode(&exchange(d.coap, &q).await, 1500).unwrap();
    let inner = protect::unprotect_response(&mut dev, &b, &resp).unwrap();
    assert_eq!(message::code_of(&inner), code::CHANGED);
    assert_eq!(device_port(&d.api, "rtu-1").await, Some(2222));

    // A graceful restart first (the store is flushed, so the newer address is on disk:
    // sled writes an update within 200 ms, and a kill right after it would lose it, which
    // is another matter), then an OOM kill and restart. After each start, the replay.
    sigterm(d);
    let mut d = start(&s, false);
    for stop in ["SIGTERM", "SIGKILL"] {
        if stop == "SIGKILL" {
            sigkill(d);
            d = start(&s, false);
        }
        assert_eq!(device_port(&d.api, "rtu-1").await, Some(2222));
        let replayed_answer = exchange(d.coap, &recorded).await;
        assert_ne!(
            replayed_answer, original_answer,
            "after {stop}: the original answer again"
        );
        let resp = message::decode(&replayed_answer, 1500).unwrap();
        assert!(
            response_piv(&resp).is_some(),
            "after {stop}: the replayed check-in was answered under the request's nonce"
        );
        // The answer is the Echo challenge, bound to the recorded request.
        let inner = protect::unprotect_response(&mut dev, &recorded_binding, &resp).unwrap();
        assert_eq!(message::code_of(&inner), code::UNAUTHORIZED, "after {stop}");
        assert!(message::first(&inner, opt::ECHO).is_some(), "after {stop}");
        assert_eq!(
            device_port(&d.api, "rtu-1").await,
            Some(2222),
            "after {stop}: the replayed check-in moved the push address back"
        );
    }
}

/// Attack (issue 13; an operator mistake or A8 starting a second dispatcher on the same
/// data): two dispatcher processes on the same data directory would use every device's
/// contexts twice (nonce reuse). Check: the second one is refused at start, with
/// the reason, before it serves anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_cannot_open_context() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let d = start(&s, false);
    enrol(&d.api, "rtu-1", None).await;
    let out = dispatcher_cmd()
        .args(["serve", "--config"])
        .arg(s.dir.join("dispatcher.toml"))
        .env("DISPATCHER_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use") && err.contains(".oscore.lock"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "the second dispatcher served"
    );
    // The first one still works.
    let _: Value = d.api.get("/v1/devices/rtu-1").await.unwrap();
}

/// What the path between the dispatcher and the device saw and holds.
#[derive(Default)]
struct PathState {
    /// Device answers carrying the device's own Partial IV (Echo challenges) so far.
    challenges: usize,
    /// The dispatcher's request held back (the repeat of the last block with its Echo).
    held: Option<Vec<u8>>,
    /// Forward everything again (the held request was delivered).
    released: bool,
    /// Device answers seen after the release.
    after_release: Vec<Vec<u8>>,
    dispatcher: Option<SocketAddr>,
}

/// A relay on the path dispatcher → device (listening on `front`, the device's address at
/// the dispatcher) that holds back the request following the device's second Echo challenge
/// (the first re-establishes the device's replay window after its start; the second is the
/// freshness challenge of the last block) and drops its retransmissions, until released.
/// Returns the state and the socket towards the device.
async fn holding_relay(
    front: tokio::net::UdpSocket,
    device: SocketAddr,
) -> (Arc<Mutex<PathState>>, Arc<tokio::net::UdpSocket>) {
    let front = Arc::new(front);
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(device).await.unwrap();
    let st = Arc::new(Mutex::new(PathState::default()));
    let (f, b, s) = (front.clone(), back.clone(), st.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = f.recv_from(&mut buf).await else {
                continue;
            };
            let d = buf[..n].to_vec();
            let forward = {
                let mut s = s.lock().unwrap();
                s.dispatcher = Some(from);
                if s.released {
                    true
                } else if let Some(h) = &s.held {
                    *h != d // a retransmission of the held request is dropped
                } else if s.challenges >= 2 {
                    s.held = Some(d.clone());
                    false
                } else {
                    true
                }
            };
            if forward {
                let _ = b.send(&d).await;
            }
        }
    });
    let (f, b, s) = (front, back.clone(), st.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(n) = b.recv(&mut buf).await else {
                continue;
            };
            let d = buf[..n].to_vec();
            let to = {
                let mut s = s.lock().unwrap();
                if let Ok(p) = message::decode(&d, 4096)
                    && response_piv(&p).is_some()
                {
                    s.challenges += 1;
                }
                if s.released {
                    s.after_release.push(d.clone());
                }
                s.dispatcher
            };
            if let Some(to) = to {
                let _ = f.send_to(&d, to).await;
            }
        }
    });
    (st, back)
}

/// Attack (issue 13; A1 on the device network): the last block of a push is held back on
/// the path; the operator aborts the rollout; the block is delivered later. Before the fix the device answered 2.04 and
/// installed the release (counter moved) while the dispatcher showed the rollout aborted.
///
/// Check: the device acts on the last block only with a recent Echo value (here: at most 1 s,
/// `with_push_freshness`), so the held-back repeat is refused with a new Echo challenge under
/// the device's own Partial IV; the dispatcher, asked for that new Echo, sees the rollout is
/// aborted and does not answer it. The device's counter and install log do not move, and the
/// rollout stays aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_push_block_after_abort_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let d = start(&s, false);

    // The path: its address is the device's address at the dispatcher (fixed at enrolment;
    // the device has no uplink, so no check-in moves it).
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let device_addr = front.local_addr().unwrap();
    let bundle = enrol(&d.api, "hmi-1", Some(device_addr)).await;
    let mut bundle =
        device_sim::bundle::Bundle::decode(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    bundle.uplink = None;
    let dev_dir = tmp.path().join("hmi-1");
    device_sim::provision_from_bundle(device_sim::DeviceDir::new(&dev_dir), &bundle, b"factory")
        .unwrap();
    let lock = device_sim::coap::lock_device(&dev_dir).unwrap();
    let handler = Arc::new(
        device_sim::coap::DeviceHandler::new(device_sim::DeviceDir::new(&dev_dir))
            .unwrap()
            .with_push_freshness(Duration::from_secs(1)),
    );
    let server = device_sim::coap::start_with(
        handler,
        &lock,
        &dev_dir,
        "127.0.0.1:0".parse().unwrap(),
        1 << 20,
    )
    .await
    .unwrap();
    let (path, to_device) = holding_relay(front, server.addr).await;

    // An internal T1 release, installed at once by policy: the rollout starts pushing.
    let p = ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence: 2,
        version: vec![1, 1, 0],
        requires: None,
        uri: None,
        ics: IcsMetadata::new(UpdateType::T1),
    };
    let image: Vec<u8> = (0..8 * 1024).map(|i| (i % 241) as u8).collect();
    let r = build_release(&p, &image, b"app-key", &s.internal, &mut rng()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let _: Value = d
        .api
        .post(
            "/v1/releases",
            &json!({
                "envelope_b64": b64.encode(&r.envelope),
                "blob_b64": b64.encode(&r.blob),
                "key_b64": b64.encode(&*r.release_key.to_cose_key()),
            }),
        )
        .await
        .unwrap();

    // The repeat of the last block (with the device's Echo value) is held back on the path.
    let deadline = Instant::now() + Duration::from_secs(120);
    while path.lock().unwrap().held.is_none() {
        assert!(
            Instant::now() < deadline,
            "the push never reached its last block"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held_at = Instant::now();
    let v: Value = d.api.get("/v1/rollouts").await.unwrap();
    let id = v["rollouts"][0]["id"].as_str().unwrap().to_owned();
    let _: Value = d
        .api
        .post(
            &format!("/v1/rollouts/{id}/abort"),
            &json!({"reason": "found a problem"}),
        )
        .await
        .unwrap();
    // Delivered after the device's freshness bound (1 s) has passed since it issued the Echo
    // value (before the hold). Not a timing assertion: the device measures the age itself.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(held_at.elapsed())).await;
    let held = {
        let mut st = path.lock().unwrap();
        st.released = true;
        st.held.clone().unwrap()
    };
    to_device.send(&held).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(a) = path.lock().unwrap().after_release.first().cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "the device did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let answer = message::decode(&answer, 4096).unwrap();
    assert!(
        response_piv(&answer).is_some(),
        "the device answered the held-back block under its nonce (it acted on it)"
    );

    // The dispatcher receives that new challenge, sees the rollout aborted, stops.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = d.api.get(&format!("/v1/rollouts/{id}")).await.unwrap();
        assert_eq!(v["status"]["status"], "aborted", "{v}");
        if v["devices"]["hmi-1"]["state"] != "in-flight" {
            break;
        }
        assert!(Instant::now() < deadline, "the push never ended: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(device_counter(&dev_dir), 0, "the release was installed");
    assert_eq!(install_attempts(&dev_dir), 0, "an install was attempted");
    let dev: Value = d.api.get("/v1/devices/hmi-1").await.unwrap();
    let rec = if dev["device"].is_object() {
        &dev["device"]
    } else {
        &dev
    };
    assert_eq!(rec["version"], "1.0.0", "{dev}");
    server.stop().await.unwrap();
}
