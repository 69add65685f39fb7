//! The install procedure: happy path, every rejection, every power-loss point followed by a
//! restart, flash corruption and failed self-tests. After each, the device boots a valid image
//! and its anti-rollback counter has moved only on a confirmed install.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use device_sim::{
    Device, DeviceDir, DeviceError, Fault, FaultPlan, Identity, InstallOutcome, Slot, Step, Trust,
};
use sha2::{Digest, Sha256};
use suit::consts::alg;
use suit::release::{ReleaseParams, author_sign, build_release};
use suit::{IcsMetadata, ReleaseKey, Role, SigningKey, TrustAnchor, TrustStore, UpdateType};
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

struct World {
    maker: SigningKey,
    dispatcher: SigningKey,
    author: SigningKey,
    _tmp: tempfile::TempDir,
    dir: DeviceDir,
}

struct Rel {
    envelope: Vec<u8>,
    blob: Vec<u8>,
    key: Vec<u8>,
    image: Vec<u8>,
}

impl World {
    fn new() -> World {
        let maker = SigningKey::generate(&mut rng()).with_kid(b"maker".to_vec());
        let dispatcher = SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec());
        let author = SigningKey::generate(&mut rng()).with_kid(b"author".to_vec());
        let tmp = tempfile::tempdir().unwrap();
        let dir = DeviceDir::new(tmp.path().join("plc-1"));
        let w = World {
            maker,
            dispatcher,
            author,
            _tmp: tmp,
            dir,
        };
        Device::provision(
            w.dir.clone(),
            Identity {
                name: "plc-1".into(),
                vendor_id: VENDOR,
                class_id: CLASS,
                device_id: Uuid::from_u128(7),
            },
            Trust::from_keys(
                VENDOR,
                &[
                    (
                        suit::Role::Manufacturer,
                        &kid(&w.maker),
                        &w.maker.public_key().to_pem(),
                    ),
                    (
                        suit::Role::Author,
                        &kid(&w.author),
                        &w.author.public_key().to_pem(),
                    ),
                    (
                        suit::Role::Approver,
                        &kid(&w.dispatcher),
                        &w.dispatcher.public_key().to_pem(),
                    ),
                ],
                true,
            ),
            b"factory image 1.0.0",
            "1.0.0",
        )
        .unwrap();
        w
    }

    fn device(&self) -> Device {
        Device::open(self.dir.clone()).unwrap()
    }

    /// A release signed by `signer`, approved by `approver` (if any).
    fn release_with(
        &self,
        p: &ReleaseParams,
        signer: &SigningKey,
        approver: Option<&SigningKey>,
        image: &[u8],
    ) -> Rel {
        let built = build_release(p, image, b"rk-1", signer, &mut rng()).unwrap();
        let mut envelope = built.envelope;
        if let Some(a) = approver {
            // Approval needs an Accepted; here the approver trusts whoever signed, so that
            // the tests can also model an approval of something the device must refuse.
            let mut t = TrustStore::new();
            t.add(TrustAnchor::new(signer.public_key(), Role::Manufacturer));
            let v = suit::accept(&envelope, &t, &suit::Rules::dispatcher_intake(), 0).unwrap();
            envelope = suit::approve(&v, a).unwrap();
        }
        Rel {
            envelope,
            blob: built.blob,
            key: built.release_key.to_cose_key().to_vec(),
            image: image.to_vec(),
        }
    }

    fn release(&self, seq: u64, version: &[i64]) -> Rel {
        let mut p = params(seq);
        p.version = version.to_vec();
        let image = format!("firmware {version:?} build {seq}")
            .repeat(10_000)
            .into_bytes();
        self.release_with(&p, &self.maker, Some(&self.dispatcher), &image)
    }
}

fn params(seq: u64) -> ReleaseParams {
    ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence: seq,
        version: vec![2, 0, 0],
        requires: None,
        uri: None,
        ics: IcsMetadata::new(UpdateType::T2),
    }
}

fn install(d: &mut Device, r: &Rel, faults: FaultPlan) -> Result<device_sim::Report, DeviceError> {
    d.install(&r.envelope, &r.key, &mut &r.blob[..], &faults)
}

/// After every scenario: the running image's bytes match what the state says.
fn assert_bootable(w: &World) -> Device {
    let d = w.device();
    let s = d.state();
    let running = s.running().expect("a running image");
    let bytes = std::fs::read(w.dir.slot_path(s.active)).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), running.sha256);
    assert!(s.pending.is_none());
    d
}

#[test]
fn happy_path_installs_and_moves_the_counter() {
    let w = World::new();
    let mut d = w.device();
    let r = w.release(5, &[2, 0, 0]);
    let rep = install(&mut d, &r, FaultPlan::none()).unwrap();
    assert_eq!(rep.outcome, InstallOutcome::Installed, "{rep:?}");
    assert_eq!(
        (rep.version_before.as_str(), rep.version_after.as_str()),
        ("1.0.0", "2.0.0")
    );
    let d = assert_bootable(&w);
    assert_eq!(d.state().active, Slot::B);
    assert_eq!(d.state().counter, 5);
    assert_eq!(std::fs::read(w.dir.slot_path(Slot::B)).unwrap(), r.image);
    // Next release goes to slot A.
    let mut d = d;
    let r2 = w.release(6, &[2, 1, 0]);
    assert_eq!(
        install(&mut d, &r2, FaultPlan::none()).unwrap().outcome,
        InstallOutcome::Installed
    );
    assert_eq!(assert_bootable(&w).state().active, Slot::A);
}

fn rejected(w: &World, r: &Rel, check: &str) {
    let mut d = w.device();
    let before = d.state().clone();
    let rep = install(&mut d, r, FaultPlan::none()).unwrap();
    assert_eq!(rep.outcome, InstallOutcome::Rejected, "{rep:?}");
    assert_eq!(rep.check.as_deref(), Some(check), "{rep:?}");
    let after = assert_bootable(w);
    assert_eq!(after.state().active, before.active);
    assert_eq!(after.state().counter, before.counter);
    assert_eq!(after.version(), "1.0.0");
}

#[test]
fn rejects_untrusted_publisher() {
    let w = World::new();
    let rogue = SigningKey::generate(&mut rng()).with_kid(b"rogue".to_vec());
    let r = w.release_with(&params(5), &rogue, Some(&w.dispatcher), b"evil");
    rejected(&w, &r, "untrusted-signer");
}

#[test]
fn rejects_missing_or_forged_approval() {
    let w = World::new();
    let r = w.release_with(&params(5), &w.maker, None, b"img");
    rejected(&w, &r, "approval-missing");
    let not_our_dispatcher = SigningKey::generate(&mut rng()).with_kid(b"dispatcher".to_vec());
    let r = w.release_with(&params(5), &w.maker, Some(&not_our_dispatcher), b"img");
    rejected(&w, &r, "signature-invalid");
}

#[test]
fn rejects_wrong_class_and_rollback() {
    let w = World::new();
    let mut p = params(5);
    p.class_id = Uuid::from_u128(99);
    let r = w.release_with(&p, &w.maker, Some(&w.dispatcher), b"img");
    rejected(&w, &r, "wrong-class");

    let mut d = w.device();
    install(&mut d, &w.release(5, &[2, 0, 0]), FaultPlan::none()).unwrap();
    for seq in [4, 5] {
        let rep = install(&mut d, &w.release(seq, &[3, 0, 0]), FaultPlan::none()).unwrap();
        assert_eq!(rep.check.as_deref(), Some("rollback"), "{rep:?}");
    }
    assert_eq!(assert_bootable(&w).version(), "2.0.0");
}

#[test]
fn rejects_tampered_blob_and_wrong_key() {
    let w = World::new();
    let mut r = w.release(5, &[2, 0, 0]);
    let n = r.blob.len();
    r.blob[n / 2] ^= 1;
    rejected(&w, &r, "ciphertext-digest-mismatch");

    let mut r = w.release(5, &[2, 0, 0]);
    r.key = ReleaseKey::generate(alg::A128KW, b"rk-1".to_vec(), &mut rng())
        .unwrap()
        .to_cose_key()
        .to_vec();
    rejected(&w, &r, "wrong-release-key");
}

#[test]
fn rejects_t3_release_whose_author_signature_fails() {
    let w = World::new();
    let image = b"third-party library".to_vec();
    let mut p = params(5);
    p.ics = IcsMetadata::new(UpdateType::T3);
    p.ics.author_signature = Some(author_sign(b"a different library", &w.author));
    let r = w.release_with(&p, &w.maker, Some(&w.dispatcher), &image);
    rejected(&w, &r, "author-signature-invalid");
    p.ics.author_signature = Some(author_sign(&image, &w.author));
    let r = w.release_with(&p, &w.maker, Some(&w.dispatcher), &image);
    let mut d = w.device();
    assert_eq!(
        install(&mut d, &r, FaultPlan::none()).unwrap().outcome,
        InstallOutcome::Installed
    );
}

#[test]
fn power_loss_at_every_step_then_restart() {
    let blob_len = World::new().release(5, &[2, 0, 0]).blob.len() as u64;
    let cases = [
        Fault::PowerLoss {
            step: Step::Download,
            after_bytes: 0,
        },
        Fault::PowerLoss {
            step: Step::Download,
            after_bytes: blob_len / 2,
        },
        Fault::PowerLoss {
            step: Step::Download,
            after_bytes: blob_len - 1,
        },
        Fault::PowerLoss {
            step: Step::Decrypt,
            after_bytes: 0,
        },
        Fault::PowerLoss {
            step: Step::Decrypt,
            after_bytes: blob_len / 3,
        },
        Fault::PowerLoss {
            step: Step::BeforeSwitch,
            after_bytes: 0,
        },
        Fault::PowerLoss {
            step: Step::BeforeConfirm,
            after_bytes: 0,
        },
    ];
    for fault in cases {
        let w = World::new();
        let r = w.release(5, &[2, 0, 0]);
        let mut d = w.device();
        match install(&mut d, &r, FaultPlan::one(fault)) {
            Err(DeviceError::PowerLoss(_)) => {}
            other => panic!("{fault:?}: expected a power loss, got {other:?}"),
        }
        drop(d);
        // Restart: the old image runs, nothing pending, the counter did not move.
        let mut d = assert_bootable(&w);
        assert_eq!(d.version(), "1.0.0", "{fault:?}");
        assert_eq!(d.state().counter, 0, "{fault:?}");
        let log = w.dir.read_log();
        if matches!(
            fault,
            Fault::PowerLoss {
                step: Step::BeforeConfirm,
                ..
            }
        ) {
            assert!(
                log.iter().any(|e| e["event"] == "reverted"),
                "{fault:?}: {log:?}"
            );
        }
        if matches!(
            fault,
            Fault::PowerLoss {
                step: Step::BeforeSwitch,
                ..
            }
        ) {
            assert!(
                log.iter().any(|e| e["event"] == "interrupted"),
                "{fault:?}: {log:?}"
            );
        }
        // The same release installs after the restart (the counter did not move).
        let rep = install(&mut d, &r, FaultPlan::none()).unwrap();
        assert_eq!(rep.outcome, InstallOutcome::Installed, "{fault:?}: {rep:?}");
        assert_eq!(assert_bootable(&w).version(), "2.0.0");
    }
}

#[test]
fn corrupted_flash_or_failed_self_test_reverts() {
    for fault in [Fault::CorruptFlash, Fault::SelfTestFails] {
        let w = World::new();
        let mut d = w.device();
        let rep = install(&mut d, &w.release(5, &[2, 0, 0]), FaultPlan::one(fault)).unwrap();
        assert_eq!(rep.outcome, InstallOutcome::Reverted, "{fault:?}");
        assert_eq!(rep.check.as_deref(), Some("self-test-failed"));
        let d = assert_bootable(&w);
        assert_eq!(
            (d.version().as_str(), d.state().counter),
            ("1.0.0", 0),
            "{fault:?}"
        );
    }
}

#[test]
fn corrupt_active_slot_boots_the_other_one() {
    let w = World::new();
    let mut d = w.device();
    install(&mut d, &w.release(5, &[2, 0, 0]), FaultPlan::none()).unwrap();
    drop(d);
    // Flash corruption of the running image (slot B) while powered off.
    let p = w.dir.slot_path(Slot::B);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&p, &bytes).unwrap();
    let d = assert_bootable(&w);
    assert_eq!(d.state().active, Slot::A);
    assert_eq!(d.version(), "1.0.0");
    assert!(w.dir.read_log().iter().any(|e| e["event"] == "fallback"));
}

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}

/// Fault (issue 13): the install log grew without bound — every attempt, pushed or pulled,
/// rejected or not, added a line that was never removed, for the decades a device runs.
///
/// Check: with a bound of 4 KiB per generation, 300 refused installs and one genuine one
/// leave at most 8 KiB of log on disk; the newest record (the genuine install) and the
/// records just before it are there, the oldest are gone; every record written is synced
/// (the device reads back what it wrote at once).
#[test]
fn install_log_is_bounded() {
    let w = World::new();
    let dir = w.dir.clone().with_max_log_bytes(4096);
    let mut d = Device::open(dir.clone()).unwrap();
    let rogue = SigningKey::generate(&mut rng()).with_kid(b"rogue".to_vec());
    let refused = w.release_with(&params(5), &rogue, Some(&w.dispatcher), b"not for you");
    let mut line_bytes = 0;
    for i in 0..300 {
        let rep = install(&mut d, &refused, FaultPlan::none()).unwrap();
        assert_eq!(rep.outcome, InstallOutcome::Rejected);
        assert!(
            dir.log_bytes() <= 2 * 4096,
            "after attempt {i}: {} bytes",
            dir.log_bytes()
        );
        if i == 0 {
            line_bytes = dir.log_bytes();
        }
    }
    // 300 lines would take 300 × line_bytes; the bound keeps two generations of 4 KiB.
    assert!(
        300 * line_bytes > 8 * 4096,
        "lines of {line_bytes} bytes: not a test"
    );
    let rep = install(&mut d, &w.release(6, &[2, 0, 0]), FaultPlan::none()).unwrap();
    assert_eq!(rep.outcome, InstallOutcome::Installed);
    assert!(dir.log_bytes() <= 2 * 4096, "{} bytes", dir.log_bytes());
    let log = dir.read_log();
    let last = log.last().unwrap();
    assert_eq!(last["event"], "install");
    assert_eq!(last["report"]["outcome"], "installed");
    // The records kept are the newest: the refusals just before the install, at least the
    // previous generation's worth of them.
    let kept_refusals = log
        .iter()
        .filter(|e| e["report"]["outcome"] == "rejected")
        .count();
    assert!(
        (kept_refusals as u64) * line_bytes >= 4096 - line_bytes,
        "only {kept_refusals} refusals kept"
    );
    assert!(kept_refusals < 300, "nothing was dropped");
    // The device still boots and reports from the bounded log.
    let d = Device::open(dir.clone()).unwrap();
    let s = device_sim::status(&d);
    assert!(!s.recent_events.is_empty());
}

/// Power loss in the middle of an append leaves a line cut short. Before, the next record
/// was appended to it and both were lost (neither line parsed). Check: the torn line alone is
/// skipped; the records before and after it are read, also across a rotation.
#[test]
fn install_log_survives_a_torn_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d")).unwrap();
    let dir = DeviceDir::new(tmp.path().join("d")).with_max_log_bytes(4096);
    dir.log(&serde_json::json!({"event": "first"})).unwrap();
    dir.log(&serde_json::json!({"event": "torn", "detail": "x".repeat(40)}))
        .unwrap();
    let path = tmp.path().join("d/install.log");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 10).unwrap();
    dir.log(&serde_json::json!({"event": "after"})).unwrap();
    let events: Vec<String> = dir
        .read_log()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["first", "after"]);
    // A generation that ends torn rotates like any other; nothing after it is lost.
    for i in 0..200 {
        dir.log(&serde_json::json!({"event": "n", "i": i})).unwrap();
    }
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    f.set_len(len - 3).unwrap();
    for i in 200..400 {
        dir.log(&serde_json::json!({"event": "n", "i": i})).unwrap();
    }
    let log = dir.read_log();
    assert_eq!(log.last().unwrap()["i"], 399);
    assert!(dir.log_bytes() <= 2 * 4096);
    // Kept records are consecutive up to the newest, but for the one that was torn.
    let kept: Vec<u64> = log.iter().filter_map(|e| e["i"].as_u64()).collect();
    assert!(
        kept.windows(2)
            .all(|w| w[1] == w[0] + 1 || w[1] == w[0] + 2)
    );
}
