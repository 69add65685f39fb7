//! RFC 9124's threats at the device, on the real path: a fleet of ten simulated devices
//! (five PLCs, five HMI panels) in one `device-sim fleet` process, provisioned by the
//! dispatcher, each with its own OSCORE contexts.
//!
//! Two kinds of attacker push to the devices here:
//!
//! * the dispatcher itself, running a genuine rollout of a release that is mis-targeted,
//!   has a precondition the devices do not meet, or whose blob was replaced in the
//!   dispatcher's cache after it verified it;
//! * A6 holding a device's push context — a provisioning bundle not deleted after use,
//!   the device's own files, or the dispatcher's context files — but not the dispatcher's
//!   approval key: they talk to the device as its dispatcher (OSCORE, Echo and all) and
//!   push what they have, e.g. an approved envelope of an older release (approved
//!   envelopes travel to every device of their class).
//!
//! Every attack asserts the device's install report (`rejected` with the failed
//! `suit::Error::code`) and that nothing was installed: the anti-rollback counter, the
//! running image and the version are unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Chain, image, params};
use oscore::message::code;
use serde_json::{Value, json};
use suit::UpdateType;

use crate::common::*;

/// The approved artifacts of a release, as the dispatcher holds them.
#[derive(Debug, Clone)]
struct Artifacts {
    approved: Vec<u8>,
    key: Vec<u8>,
    blob: Vec<u8>,
}

impl Artifacts {
    fn of(c: &Chain, id: &str) -> Artifacts {
        let dir = c.dispatcher_dir().join("data/releases").join(id);
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        Artifacts {
            approved: read("approved.suit"),
            key: read("key.cbor"),
            blob: read("blob.enc"),
        }
    }
}

struct Fleet {
    s: Shared,
    /// The application at sequence 2 and 3, installed by policy on every HMI but
    /// `LAGGING` (whose new image failed its self-test at sequence 3: it runs sequence 2).
    v2: Artifacts,
    v3: Artifacts,
    /// Serialises the attacks on the PLCs (a rollout goes to all of them) and numbers their
    /// firmware.
    plcs: tokio::sync::Mutex<u64>,
    /// Serialises the attacks on `LAGGING`.
    lagging: tokio::sync::Mutex<()>,
}

/// The HMI that runs sequence 2 (its install of sequence 3 was reverted).
const LAGGING: usize = 9;

static FLEET: tokio::sync::OnceCell<Fleet> = tokio::sync::OnceCell::const_new();

/// Polls until `n` rollouts exist and all have settled.
async fn settled(c: &Chain, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = rollouts(c).await;
        if all.len() >= n
            && all.iter().all(|r| {
                !matches!(
                    r["status"]["status"].as_str(),
                    Some("running" | "scheduled" | "paused")
                )
            })
        {
            return all;
        }
        assert!(Instant::now() < deadline, "rollouts not settled: {all:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn fleet() -> &'static Fleet {
    FLEET
        .get_or_init(|| async {
            let dir = kept_dir("fleet");
            let mut o = opts(&dir);
            o.poll_interval_secs = 3600;
            // A count no rollout reaches: every device is sent every release (a threshold
            // would halt a rollout at its first refusal and stop the pushes in flight).
            o.policy = Some(policy("\"100%\"", "0s", "11"));
            let mut c = Chain::start_services(o).await.unwrap();
            reap_at_exit(&dir, &c.pids());
            c.start_fleet(10, |_, _| Ok(())).await.unwrap();
            reap_at_exit(&dir, &c.pids());
            let v2 = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
            let id2 = c
                .publish(&c.third_party, &v2, &image(8192, 80), "fleet-app-2", 0)
                .await
                .unwrap();
            settled(&c, 1).await;
            std::fs::write(
                c.devices_dir()
                    .join(format!("dev-{LAGGING:04}/faults.json")),
                br#"{"self_test_fails": true}"#,
            )
            .unwrap();
            let v3 = params(CLASS_HMI, UpdateType::T1, 3, vec![1, 2, 0]).unwrap();
            let id3 = c
                .publish(&c.third_party, &v3, &image(8192, 81), "fleet-app-3", 0)
                .await
                .unwrap();
            let all = settled(&c, 2).await;
            for r in &all {
                assert_eq!(r["status"]["status"], "completed", "{all:?}");
            }
            for i in (1..10).step_by(2) {
                let want = if i == LAGGING { 2 } else { 3 };
                assert_eq!(device_counter(&dev_dir(&c, i)), want, "dev-{i:04}");
            }
            Fleet {
                v2: Artifacts::of(&c, &id2),
                v3: Artifacts::of(&c, &id3),
                s: Shared::from_chain(c),
                plcs: tokio::sync::Mutex::new(10),
                lagging: tokio::sync::Mutex::new(()),
            }
        })
        .await
}

fn dev_dir(c: &Chain, i: usize) -> PathBuf {
    c.devices_dir().join(format!("dev-{i:04}"))
}

/// The dispatcher's name of device `i` of the fleet.
fn dev_name(c: &Chain, i: usize) -> String {
    c.devices[i].0.clone()
}

async fn push_addr(c: &Chain, i: usize) -> SocketAddr {
    device(c, &dev_name(c, i)).await["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// What a device runs: counter and the release id of its active image.
fn running(c: &Chain, i: usize) -> (u64, Value) {
    let st = device_state(&dev_dir(c, i));
    let active = st["active"].as_str().unwrap().to_owned();
    (
        st["counter"].as_u64().unwrap(),
        st[&active]["release_id"].clone(),
    )
}

/// Sender sequence numbers of the leaked contexts: each starts far above the dispatcher's
/// and apart from the others, so no two ever reuse a nonce.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1 << 30);

/// The dispatcher's side of device `i`'s push context, rebuilt from the device's own
/// context file (what a leaked provisioning bundle holds).
fn leaked_context(c: &Chain, i: usize) -> oscore::SecurityContext {
    use oscore::seq::SeqStore as _;
    let mut p = oscore::ctxfile::load_params(&dev_dir(c, i).join("oscore.json")).unwrap();
    std::mem::swap(&mut p.sender_id, &mut p.recipient_id);
    let mut store = oscore::MemorySeqStore::new();
    store
        .store(NEXT_SEQ.fetch_add(1 << 24, Ordering::Relaxed))
        .unwrap();
    oscore::SecurityContext::new(&p, Box::new(store)).unwrap()
}

/// Pushes envelope, key and blob to device `i` as its dispatcher would, with a leaked push
/// context; the device's install report.
async fn leaked_push(c: &Chain, i: usize, envelope: &[u8], key: &[u8], blob: &[u8]) -> Value {
    let addr = push_addr(c, i).await;
    let mut client = oscore::transport::Client::connect(
        addr,
        Some(leaked_context(c, i)),
        oscore::transport::ClientConfig::default(),
    )
    .await
    .unwrap();
    for (path, body) in [("suit/envelope", envelope), ("suit/key", key)] {
        let r = client.request(code::PUT, path, body).await.unwrap();
        assert_eq!(r.code, code::CHANGED, "{path}");
    }
    let r = client.request(code::PUT, "suit/blob", blob).await.unwrap();
    serde_json::from_slice(&r.payload).unwrap()
}

fn assert_rejected(report: &Value, check: &str) {
    assert_eq!(report["outcome"], "rejected", "{report}");
    assert_eq!(report["check"], check, "{report}");
}

/// Attack (RFC 9124 THREAT.IMG.EXPIRED, TUF rollback; A6 holding a device's push context:
/// a leaked provisioning bundle, the device's files): the approved
/// envelope of the application at sequence 2, with its key and blob, pushed to an HMI that
/// runs sequence 3 — a release the dispatcher itself approved, signed by the trusted
/// publisher, just older.
///
/// Check: the device's anti-rollback counter (`suit::evaluate`: sequence strictly above
/// it).
/// Asserts: report `rejected`/`rollback`; counter 3 and the running image unchanged.
#[test]
fn older_approved_release_pushed_to_device_refused() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let before = running(c, 1);
        assert_eq!(before.0, 3);
        let rep = leaked_push(c, 1, &f.v2.approved, &f.v2.key, &f.v2.blob).await;
        assert_rejected(&rep, "rollback");
        assert_eq!(running(c, 1), before);
    });
}

/// Attack (RFC 9124 THREAT.UPD.UNAPPROVED; A6 with a leaked push context, without the
/// approval key): a new release, genuinely signed by the trusted publisher with a sequence above
/// the device's, pushed straight to a device without the dispatcher's approval (the
/// dispatcher never approved it: it does not even know it).
///
/// Check: the device requires its dispatcher's approval signature (dual signature).
/// Asserts: report `rejected`/`approval-missing`; counter and image unchanged.
#[test]
fn unapproved_release_pushed_to_device_refused() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let p = params(CLASS_HMI, UpdateType::T1, 50, vec![1, 50, 0]).unwrap();
        let b = build(&c.third_party.key, &p, &image(4096, 82), "unapproved-1");
        let before = running(c, 3);
        let rep = leaked_push(c, 3, &b.envelope, &b.key, &b.blob).await;
        assert_rejected(&rep, "approval-missing");
        assert_eq!(running(c, 3), before);
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (RFC 9124 THREAT.MFST.MODIFICATION on the last hop; A6 with a leaked push
/// context): an
/// approved envelope with one byte of its manifest changed on the way to the device (the
/// dispatcher's approval and the publisher's signature kept).
///
/// Check: the device verifies the manifest digest over the bstr as received.
/// Asserts: report `rejected`/`manifest-digest-mismatch`; counter and image unchanged.
#[test]
fn approved_manifest_modified_on_the_way_to_device_refused() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let changed = manifest_byte_flipped(&f.v3.approved, CLASS_HMI);
        let before = running(c, 5);
        let rep = leaked_push(c, 5, &changed, &f.v3.key, &f.v3.blob).await;
        assert_rejected(&rep, "manifest-digest-mismatch");
        assert_eq!(running(c, 5), before);
    });
}

/// Attack (RFC 9124 THREAT.IMG.INCOMPATIBLE; A6 with a leaked HMI push context): approved
/// PLC firmware pushed to an HMI — signed by the manufacturer the HMI trusts, approved by
/// its own dispatcher, for another device class.
///
/// (The leaked push goes to an HMI, not a PLC: its context starts its sequence numbers far
/// above the dispatcher's, which moves the device's replay window past every number the
/// dispatcher will use, so later genuine pushes to that device would be refused as
/// replays — the rollouts of the PLC attacks go to every PLC.)
///
/// Check: condition-class-identifier against the device's class.
/// Asserts: report `rejected`/`wrong-class`; the HMI's counter and image unchanged.
#[test]
fn release_for_another_class_pushed_to_device_refused() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let firmware = {
            let mut next = f.plcs.lock().await;
            // Firmware the PLCs refuse, so that they keep what they run for the other
            // attacks.
            let (id, _) = approved_firmware(f, &mut next, requires_precursor_9_9_9, |_| {}).await;
            Artifacts::of(c, &id)
        };
        let _dev = f.lagging.lock().await;
        let before = running(c, LAGGING);
        let rep = leaked_push(
            c,
            LAGGING,
            &firmware.approved,
            &firmware.key,
            &firmware.blob,
        )
        .await;
        assert_rejected(&rep, "wrong-class");
        assert_eq!(running(c, LAGGING), before);
    });
}

/// Attack (key confusion; A6 with a leaked push context): the approved envelope of sequence 3
/// pushed to the HMI that still runs sequence 2, with the release key of sequence 2
/// (under its own kid) instead of its own.
///
/// Check: the recipient kid and the AES key unwrap of the envelope's encryption info.
/// Asserts: report `rejected`/`wrong-release-key`; counter 2 and image unchanged.
#[test]
fn release_key_of_another_release_refused_by_device() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let _dev = f.lagging.lock().await;
        let before = running(c, LAGGING);
        assert_eq!(before.0, 2);
        let rep = leaked_push(c, LAGGING, &f.v3.approved, &f.v2.key, &f.v3.blob).await;
        assert_rejected(&rep, "wrong-release-key");
        assert_eq!(running(c, LAGGING), before);
    });
}

/// Attack (RFC 9124 THREAT.IMG.REPLACE; A6 with a leaked push context): the approved
/// envelope and
/// key of sequence 3 pushed to the HMI that still runs sequence 2, with the blob of
/// sequence 2 (a genuine ciphertext of the same publisher and size) in place of its own.
///
/// Check: the blob against the ciphertext digest and size of the signed manifest
/// (component #1), checked while receiving, before decryption.
/// Asserts: report `rejected`/`ciphertext-digest-mismatch`; counter 2 and image unchanged.
#[test]
fn payload_replaced_under_an_approved_manifest_refused_by_device() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let _dev = f.lagging.lock().await;
        let before = running(c, LAGGING);
        assert_eq!(f.v2.blob.len(), f.v3.blob.len());
        let rep = leaked_push(c, LAGGING, &f.v3.approved, &f.v3.key, &f.v2.blob).await;
        assert_rejected(&rep, "ciphertext-digest-mismatch");
        assert_eq!(running(c, LAGGING), before);
    });
}

/// Attack (a request under an unknown kid; anyone on the device network, A1): a push to a
/// device protected with a context the device does not have.
///
/// Check: OSCORE context lookup by kid (RFC 8613 §8.2).
/// Asserts: 4.01 on the first request; nothing staged or installed.
#[test]
fn push_under_an_unknown_kid_refused_by_device() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let stranger = oscore::ContextParams {
            master_secret: zeroize::Zeroizing::new(vec![7u8; 16]),
            master_salt: vec![],
            id_context: None,
            sender_id: vec![0x5a, 0x5a],
            recipient_id: vec![0x01],
        };
        let ctx = oscore::SecurityContext::new(&stranger, Box::new(oscore::MemorySeqStore::new()))
            .unwrap();
        let before = running(c, 7);
        let attempts = install_attempts(&dev_dir(c, 7));
        let staged = |c: &Chain, i: usize| {
            std::fs::metadata(dev_dir(c, i).join("incoming/envelope.suit"))
                .and_then(|m| m.modified())
                .ok()
        };
        let staged_before = staged(c, 7);
        let mut client = oscore::transport::Client::connect(
            push_addr(c, 7).await,
            Some(ctx),
            oscore::transport::ClientConfig::default(),
        )
        .await
        .unwrap();
        let err = client
            .request(code::PUT, "suit/envelope", &f.v3.approved)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("4.01"), "{err}");
        assert_eq!(staged(c, 7), staged_before, "the envelope was staged");
        assert_eq!(running(c, 7), before);
        assert_eq!(install_attempts(&dev_dir(c, 7)), attempts);
    });
}

/// A T2 firmware of the manufacturer for the PLCs, published and held by policy; the
/// operator then approves it and its rollout runs to the end. `tamper` runs on the
/// dispatcher's cached blob between intake and approval. The rollout's devices.
async fn approved_firmware(
    f: &Fleet,
    next: &mut u64,
    p: impl FnOnce(&mut suit::ReleaseParams),
    tamper: impl FnOnce(&std::path::Path),
) -> (String, Value) {
    let c = &f.s.c;
    let seq = *next;
    *next += 1;
    let mut prm = params(
        CLASS_PLC,
        UpdateType::T2,
        seq,
        vec![2, i64::try_from(seq).unwrap(), 0],
    )
    .unwrap();
    p(&mut prm);
    let kid = format!("plc-fw-{seq}");
    let id = c
        .publish(&c.manufacturer, &prm, &image(4096, 90), &kid, 0)
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !dispatcher_releases(c).await.contains(&id) {
        assert!(Instant::now() < deadline, "{id} not taken in");
        let _: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tamper(&c.dispatcher_dir().join("data/releases").join(&id));
    let before = rollouts(c).await.len();
    let _: Value =
        c.op.post(
            &format!("/v1/releases/{id}/approve"),
            &json!({"reason": "attack suite", "ignore_window": true}),
        )
        .await
        .unwrap();
    let all = settled(c, before + 1).await;
    let r = all.iter().find(|r| r["release_id"] == id.as_str()).unwrap();
    let full: Value =
        c.op.get(&format!("/v1/rollouts/{}", r["id"].as_str().unwrap()))
            .await
            .unwrap();
    (id, full["devices"].clone())
}

/// Firmware that installs only over version 9.9.9 exactly, which no PLC runs: every PLC
/// refuses it and keeps what it runs.
fn requires_precursor_9_9_9(p: &mut suit::ReleaseParams) {
    p.requires = Some(suit::manifest::VersionMatch {
        comparison: 3,
        version: vec![9, 9, 9],
    });
}

/// Asserts every PLC refused with `check` and runs what it ran before.
async fn assert_plcs_refused(c: &Chain, devices: &Value, check: &str, before: &[(u64, Value)]) {
    let plcs: Vec<usize> = (0..10).step_by(2).collect();
    assert_eq!(devices.as_object().unwrap().len(), plcs.len(), "{devices}");
    for (k, &i) in plcs.iter().enumerate() {
        let d = &devices[dev_name(c, i)];
        assert_eq!(d["state"], "rejected", "{}: {devices}", dev_name(c, i));
        assert_eq!(d["check"], check, "{}: {devices}", dev_name(c, i));
        assert_eq!(running(c, i), before[k], "{}", dev_name(c, i));
        assert_eq!(device(c, &dev_name(c, i)).await["version"], "1.0.0");
    }
}

fn plcs_running(c: &Chain) -> Vec<(u64, Value)> {
    (0..10).step_by(2).map(|i| running(c, i)).collect()
}

/// Attack (RFC 9124 THREAT.MFST.TOCTOU / THREAT.IMG.REPLACE at the dispatcher; A8-lite:
/// write access to the dispatcher's release cache, or a storage fault): the blob of a held
/// firmware release is replaced in `data/releases/ID/blob.enc` after the dispatcher
/// verified it at intake; the operator then approves the release and the dispatcher pushes
/// the replaced blob to every PLC.
///
/// Check: each device checks the blob against the signed ciphertext digest itself, while
/// receiving, before decryption (the dispatcher does not check its cache again).
/// Asserts: every PLC reports `rejected`/`ciphertext-digest-mismatch`; counters, images and
/// versions unchanged.
#[test]
fn image_replaced_after_verification_refused_by_devices() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let mut next = f.plcs.lock().await;
        let before = plcs_running(c);
        let (_, devices) = approved_firmware(
            f,
            &mut next,
            |_| {},
            |dir| {
                let path = dir.join("blob.enc");
                let mut blob = std::fs::read(&path).unwrap();
                for b in blob.iter_mut().take(64) {
                    *b ^= 0xa5;
                }
                std::fs::write(&path, blob).unwrap();
            },
        )
        .await;
        assert_plcs_refused(c, &devices, "ciphertext-digest-mismatch", &before).await;
    });
}

/// Attack (RFC 9124 THREAT.IMG.INCOMPATIBLE for one device; a release meant for one PLC,
/// approved, reaching the others — the dispatcher targets by vendor and class only): a
/// firmware whose manifest names one device-id that no PLC of this fleet has.
///
/// Check: condition-device-identifier on each device.
/// Asserts: every PLC reports `rejected`/`wrong-device`; nothing installed.
#[test]
fn release_for_another_device_refused_by_devices() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let mut next = f.plcs.lock().await;
        let before = plcs_running(c);
        let (_, devices) = approved_firmware(
            f,
            &mut next,
            |p| {
                p.device_id = Some(uuid::Uuid::from_u128(
                    0xd0d0d0d0_d0d0_4d0d_8d0d_d0d0d0d0d0d0,
                ))
            },
            |_| {},
        )
        .await;
        assert_plcs_refused(c, &devices, "wrong-device", &before).await;
    });
}

/// Attack (RFC 9124 THREAT.UPD.WRONG_PRECURSOR; a delta or upgrade step built for another
/// installed version, approved and rolled out): a firmware whose precondition is installed
/// version 9.9.9 exactly, pushed to PLCs that run 1.0.0.
///
/// Check: condition-version against the running image.
/// Asserts: every PLC reports `rejected`/`version-precondition`; nothing installed.
#[test]
fn release_for_another_precursor_version_refused_by_devices() {
    run(async {
        let f = fleet().await;
        let c = &f.s.c;
        let mut next = f.plcs.lock().await;
        let before = plcs_running(c);
        let (_, devices) = approved_firmware(f, &mut next, requires_precursor_9_9_9, |_| {}).await;
        assert_plcs_refused(c, &devices, "version-precondition", &before).await;
    });
}
