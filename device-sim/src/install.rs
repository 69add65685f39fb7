//! The install procedure and boot-time recovery, each step citing what it implements.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use suit::release::PayloadVerifier;
use suit::{DeviceState, ImageInfo, Limits, Plan, ReleaseKey, Rules, TrustStore};

use crate::DeviceError;
use crate::state::{DeviceDir, Identity, Pending, Phase, Slot, SlotImage, State, Trust};

/// Named steps where a power loss can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// While the encrypted blob is being received.
    Download,
    /// While the blob is being decrypted into the inactive slot.
    Decrypt,
    /// After the new slot is written and checked, before the switch.
    BeforeSwitch,
    /// After the switch, before the self-test confirmed the new image.
    BeforeConfirm,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Power is cut at `step`, after `after_bytes` bytes for the streaming steps.
    PowerLoss {
        /// Where.
        step: Step,
        /// For Download and Decrypt: how many bytes get through first.
        after_bytes: u64,
    },
    /// A bit of the new slot flips in flash after it was written.
    CorruptFlash,
    /// The new image fails its self-test after the switch.
    SelfTestFails,
}

/// Faults for one install attempt.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// The faults.
    pub faults: Vec<Fault>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// One fault.
    pub fn one(f: Fault) -> Self {
        Self { faults: vec![f] }
    }

    fn power_loss(&self, step: Step) -> Option<u64> {
        self.faults.iter().find_map(|f| match f {
            Fault::PowerLoss {
                step: s,
                after_bytes,
            } if *s == step => Some(*after_bytes),
            _ => None,
        })
    }

    fn has(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }
}

/// How an install attempt ended, and the report sent to the dispatcher after every attempt
/// (the answer to a push, or `POST d/report` after a pull): `fleet_proto`'s wire types.
pub use fleet_proto::uplink::{InstallOutcome, Report};

/// A device: its directory, identity, trust anchors and state.
#[derive(Debug)]
pub struct Device {
    dir: DeviceDir,
    identity: Identity,
    trust: TrustStore,
    rules: Rules,
    state: State,
    limits: Limits,
}

const CHUNK: usize = 64 * 1024;

/// The device's trust store: the provisioned trust, in the one format every call site reads.
fn trust_store(t: &Trust) -> Result<TrustStore, DeviceError> {
    t.trust_store()
        .map_err(|e| DeviceError::Corrupt(format!("trust store: {e}")))
}

/// A device accepts releases under `suit::Rules::device` (publisher signature and its
/// domain's approval); only a bench device provisioned without `require_approval` accepts a
/// publisher-signed envelope alone. T3 author signatures are required when provisioned so,
/// else checked when the author key is known.
fn rules(t: &Trust) -> Rules {
    let mut r = Rules::device();
    if !t.require_approval {
        r.approval = suit::ApprovalRule::Optional;
    }
    if t.require_author {
        r.author = suit::AuthorRule::Require;
    }
    r
}

/// The device's clock, for key validity.
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sha256_file(path: &Path) -> Result<(String, u64), DeviceError> {
    let mut f = File::open(path).map_err(DeviceError::io("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(DeviceError::io("cannot read", path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

impl Device {
    /// Creates a device directory with a factory image in slot A (version, sequence 0).
    pub fn provision(
        dir: DeviceDir,
        identity: Identity,
        trust: Trust,
        factory_image: &[u8],
        factory_version: &str,
    ) -> Result<Device, DeviceError> {
        fs::create_dir_all(dir.root()).map_err(DeviceError::io("cannot create", dir.root()))?;
        dir.write_json("identity.json", &identity)?;
        dir.write_json("trust.json", &trust)?;
        let path = dir.slot_path(Slot::A);
        write_synced(&path, factory_image)?;
        let state = State {
            active: Slot::A,
            a: Some(SlotImage {
                version: factory_version.to_owned(),
                sequence: 0,
                sha256: hex::encode(Sha256::digest(factory_image)),
                size: factory_image.len() as u64,
                release_id: "factory".into(),
            }),
            b: None,
            counter: 0,
            pending: None,
            boots: 0,
        };
        dir.commit(&state)?;
        Device::open(dir)
    }

    /// Opens a provisioned device and boots it (recovering from any interrupted install).
    pub fn open(dir: DeviceDir) -> Result<Device, DeviceError> {
        let identity = dir.identity()?;
        let t = dir.trust()?;
        let trust = trust_store(&t)?;
        let state = dir.state()?;
        let mut d = Device {
            dir,
            identity,
            trust,
            rules: rules(&t),
            state,
            limits: Limits::default(),
        };
        d.boot()?;
        Ok(d)
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The directory.
    pub fn dir(&self) -> &DeviceDir {
        &self.dir
    }

    /// Running version.
    pub fn version(&self) -> String {
        self.state
            .running()
            .map(|s| s.version.clone())
            .unwrap_or_default()
    }

    fn event(&self, event: &str, detail: &str) -> Result<(), DeviceError> {
        self.dir.log(&serde_json::json!({
            "event": event,
            "detail": detail,
            "active": self.state.active,
            "version": self.version(),
            "counter": self.state.counter,
        }))
    }

    fn slot_valid(&self, slot: Slot) -> Result<bool, DeviceError> {
        let Some(img) = self.state.slot(slot) else {
            return Ok(false);
        };
        match sha256_file(&self.dir.slot_path(slot)) {
            Ok((sha, size)) => Ok(sha == img.sha256 && size == img.size),
            Err(DeviceError::Io { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Boot-time recovery (the bootloader's job on a real device).
    fn boot(&mut self) -> Result<(), DeviceError> {
        let _ = fs::remove_file(self.dir.root().join("download.bin"));
        if let Some(p) = self.state.pending.take() {
            match p.phase {
                // The switch never happened: keep running the old image.
                Phase::Written => {
                    self.dir.commit(&self.state)?;
                    self.event(
                        "interrupted",
                        "install interrupted before the switch; old image kept",
                    )?;
                }
                // Restarted before the new image confirmed itself: revert (the image is
                // not trusted to have booted correctly).
                Phase::Switched => {
                    self.state.active = p.slot.other();
                    self.state.set_slot(p.slot, None);
                    self.dir.commit(&self.state)?;
                    self.event(
                        "reverted",
                        "restart before confirmation; previous image restored",
                    )?;
                }
            }
        }
        if !self.slot_valid(self.state.active)? {
            let other = self.state.active.other();
            if self.slot_valid(other)? {
                self.state.set_slot(self.state.active, None);
                self.state.active = other;
                self.dir.commit(&self.state)?;
                self.event(
                    "fallback",
                    "active slot failed its integrity check; booted the other slot",
                )?;
            } else {
                return Err(DeviceError::Bricked);
            }
        }
        self.state.boots += 1;
        self.dir.commit(&self.state)
    }

    fn device_state(&self) -> DeviceState {
        let mut d = DeviceState::new(self.identity.vendor_id, self.identity.class_id);
        d.device_id = Some(self.identity.device_id);
        d.installed_sequence = Some(self.state.counter);
        if let Some(v) = self
            .state
            .running()
            .and_then(|r| suit::manifest::parse_version(&r.version))
        {
            d.versions.insert(0, v);
        }
        d.target_slots.insert(0, self.state.active.other().index());
        d
    }

    fn report(
        &self,
        release_id: Option<String>,
        outcome: InstallOutcome,
        err: Option<&suit::Error>,
        before: &str,
    ) -> Result<Report, DeviceError> {
        let r = Report {
            release_id,
            outcome,
            check: err.map(|e| e.code().to_owned()),
            // Bounded and free of control characters, so the dispatcher never refuses it.
            message: err
                .map(|e| fleet_proto::text::clip_message(&e.to_string()))
                .unwrap_or_else(|| "installed".into()),
            version_before: before.to_owned(),
            version_after: self.version(),
        };
        self.dir
            .log(&serde_json::json!({ "event": "install", "report": &r }))?;
        Ok(r)
    }

    /// The one acceptance path, under this device's rules and trust, at the device's time.
    pub fn accept(&self, envelope: &[u8]) -> Result<suit::Accepted, suit::Error> {
        suit::accept(envelope, &self.trust, &self.rules, now_unix())
    }

    /// Installs a release: `envelope` (with the dispatcher's approval), the release key
    /// (COSE_Key) and the encrypted blob. Security and applicability failures come back as
    /// an `Ok(Report)` with outcome `Rejected` and the failed check; `Err` is reserved for
    /// I/O failures and injected power losses (after which [`Device::open`] recovers).
    ///
    /// The steps, each below with what it implements: authenticate, check applicability,
    /// download, decrypt into the inactive slot, record it, switch, self-test, confirm.
    /// Power can be cut (fault injection) while downloading and decrypting, before the
    /// switch and before the confirmation.
    pub fn install(
        &mut self,
        envelope: &[u8],
        release_key: &[u8],
        blob: &mut dyn Read,
        faults: &FaultPlan,
    ) -> Result<Report, DeviceError> {
        let before = self.version();
        // draft-ietf-suit-manifest §6.2 / §8.3: authenticate before anything else; both the
        // publisher's signature and (unless on a bench) the dispatcher's approval.
        let verified = match self.accept(envelope) {
            Ok(v) => v,
            Err(e) => return self.report(None, InstallOutcome::Rejected, Some(&e), &before),
        };
        let id = Some(verified.release_id());
        match self.install_verified(&verified, release_key, blob, faults) {
            Ok(SelfTest::Passed) => self.report(id, InstallOutcome::Installed, None, &before),
            Ok(SelfTest::Reverted(e)) => {
                let mut r = self.report(id, InstallOutcome::Reverted, Some(&e), &before)?;
                r.check = Some("self-test-failed".into());
                Ok(r)
            }
            Err(Halt::Rejected(e)) => self.report(id, InstallOutcome::Rejected, Some(&e), &before),
            Err(Halt::Device(e)) => Err(e),
        }
    }

    /// The steps after authentication, up to the confirmation or the revert.
    fn install_verified(
        &mut self,
        verified: &suit::Accepted,
        release_key: &[u8],
        blob: &mut dyn Read,
        faults: &FaultPlan,
    ) -> Result<SelfTest, Halt> {
        // §8.4.2 anti-rollback, §8.4.9 vendor/class/device conditions, UM §4.6 versions.
        let plan =
            suit::evaluate(verified, &self.device_state(), &self.limits).map_err(Halt::Rejected)?;
        let key = ReleaseKey::from_cose_key(release_key).map_err(Halt::Rejected)?;
        let plaintext = suit::release::plaintext_info(verified).map_err(Halt::Rejected)?;
        let staging = self.download(verified, blob, faults)?;
        let target = self.write_inactive_slot(verified, &key, &staging, faults)?;
        self.record_written(verified, target, &plan, &plaintext)?;
        if faults.power_loss(Step::BeforeSwitch).is_some() {
            return Err(DeviceError::PowerLoss(Step::BeforeSwitch).into());
        }
        self.switch(verified, target)?;
        if faults.power_loss(Step::BeforeConfirm).is_some() {
            return Err(DeviceError::PowerLoss(Step::BeforeConfirm).into());
        }
        self.self_test_and_confirm(target, &plan, faults)
    }

    /// Download: receives the encrypted blob (component #1) into staging, checking its size
    /// and digest against the signed manifest as it arrives. Power loss point
    /// [`Step::Download`]. A blob that does not match is removed.
    fn download(
        &self,
        verified: &suit::Accepted,
        blob: &mut dyn Read,
        faults: &FaultPlan,
    ) -> Result<PathBuf, Halt> {
        let staging = self.dir.root().join("download.bin");
        let mut checker = PayloadVerifier::new(verified, None).map_err(|e| {
            DeviceError::Corrupt(format!("verified envelope without blob digest: {e}"))
        })?;
        {
            let mut out =
                File::create(&staging).map_err(DeviceError::io("cannot create", &staging))?;
            let cut = faults.power_loss(Step::Download);
            let mut buf = vec![0u8; CHUNK];
            let mut received = 0u64;
            loop {
                let n = blob
                    .read(&mut buf)
                    .map_err(DeviceError::io("cannot receive blob", &staging))?;
                if n == 0 {
                    break;
                }
                if let Some(limit) = cut
                    && received + n as u64 > limit
                {
                    let keep = (limit - received) as usize;
                    let _ = out.write_all(&buf[..keep]);
                    return Err(DeviceError::PowerLoss(Step::Download).into());
                }
                if let Err(e) = checker.update(&mut buf[..n]) {
                    drop(out);
                    let _ = fs::remove_file(&staging);
                    return Err(Halt::Rejected(e));
                }
                out.write_all(&buf[..n])
                    .map_err(DeviceError::io("cannot write", &staging))?;
                received += n as u64;
            }
            out.sync_all()
                .map_err(DeviceError::io("cannot sync", &staging))?;
        }
        if let Err(e) = checker.finish() {
            let _ = fs::remove_file(&staging);
            return Err(Halt::Rejected(e));
        }
        Ok(staging)
    }

    /// Decrypt (FE §6.1) streaming from staging into the inactive slot, which is returned.
    /// The slot is marked empty first, so an interrupted or failed write can never be
    /// booted. Power loss point [`Step::Decrypt`]; staging is removed in every case.
    fn write_inactive_slot(
        &mut self,
        verified: &suit::Accepted,
        key: &ReleaseKey,
        staging: &Path,
        faults: &FaultPlan,
    ) -> Result<Slot, Halt> {
        let target = self.state.active.other();
        self.state.set_slot(target, None);
        self.dir.commit(&self.state)?;
        let slot_path = self.dir.slot_path(target);
        let result = self.decrypt_into(verified, key, staging, &slot_path, faults);
        let _ = fs::remove_file(staging);
        result?;
        if faults.has(Fault::CorruptFlash) {
            flip_a_bit(&slot_path)?;
        }
        Ok(target)
    }

    /// The plaintext digest was checked while decrypting; records the slot's image and the
    /// phase [`Phase::Written`].
    fn record_written(
        &mut self,
        verified: &suit::Accepted,
        target: Slot,
        plan: &Plan,
        plaintext: &ImageInfo,
    ) -> Result<(), DeviceError> {
        self.state.set_slot(
            target,
            Some(SlotImage {
                version: plan
                    .new_version
                    .as_deref()
                    .map(suit::manifest::format_version)
                    .unwrap_or_else(|| "unknown".into()),
                sequence: plan.sequence_number,
                sha256: hex::encode(&plaintext.digest.bytes),
                size: plaintext.size,
                release_id: verified.release_id(),
            }),
        );
        self.state.pending = Some(Pending {
            release_id: verified.release_id(),
            slot: target,
            phase: Phase::Written,
        });
        self.dir.commit(&self.state)
    }

    /// Switch: boot the new slot, unconfirmed (phase [`Phase::Switched`]).
    fn switch(&mut self, verified: &suit::Accepted, target: Slot) -> Result<(), DeviceError> {
        self.state.active = target;
        self.state.pending = Some(Pending {
            release_id: verified.release_id(),
            slot: target,
            phase: Phase::Switched,
        });
        self.dir.commit(&self.state)
    }

    /// Self-test of the new image: its bytes in flash still match the signed digest, and
    /// the (simulated) application starts. Then confirm, or revert to the previous image.
    fn self_test_and_confirm(
        &mut self,
        target: Slot,
        plan: &Plan,
        faults: &FaultPlan,
    ) -> Result<SelfTest, Halt> {
        let flash_ok = self.slot_valid(target)?;
        if !flash_ok || faults.has(Fault::SelfTestFails) {
            self.state.active = target.other();
            self.state.set_slot(target, None);
            self.state.pending = None;
            self.dir.commit(&self.state)?;
            return Ok(SelfTest::Reverted(suit::Error::InvalidInput(if flash_ok {
                "self-test failed after the switch; reverted to the previous image".into()
            } else {
                "new image corrupt in flash after the switch; reverted to the previous image".into()
            })));
        }
        // Confirm: only now does the anti-rollback counter move forward.
        self.state.counter = plan.sequence_number;
        self.state.pending = None;
        self.dir.commit(&self.state)?;
        Ok(SelfTest::Passed)
    }

    fn decrypt_into(
        &self,
        verified: &suit::Accepted,
        key: &ReleaseKey,
        staging: &Path,
        slot_path: &Path,
        faults: &FaultPlan,
    ) -> Result<(), Halt> {
        let mut checker = PayloadVerifier::new(verified, Some(key)).map_err(Halt::Rejected)?;
        let mut input = File::open(staging).map_err(DeviceError::io("cannot open", staging))?;
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(slot_path)
            .map_err(DeviceError::io("cannot open", slot_path))?;
        let cut = faults.power_loss(Step::Decrypt);
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .map_err(DeviceError::io("cannot read", staging))?;
            if n == 0 {
                break;
            }
            let plain = checker.update(&mut buf[..n]).map_err(Halt::Rejected)?;
            if let Some(limit) = cut
                && done + plain.len() as u64 > limit
            {
                let _ = out.write_all(&plain[..(limit - done) as usize]);
                return Err(DeviceError::PowerLoss(Step::Decrypt).into());
            }
            out.write_all(plain)
                .map_err(DeviceError::io("cannot write", slot_path))?;
            done += plain.len() as u64;
        }
        checker.finish().map_err(Halt::Rejected)?;
        out.sync_all()
            .map_err(DeviceError::io("cannot sync", slot_path))?;
        Ok(())
    }
}

/// Why an install attempt stopped before the self-test.
enum Halt {
    /// A check failed: reported to the dispatcher as `Rejected`.
    Rejected(suit::Error),
    /// I/O failure or injected power loss.
    Device(DeviceError),
}

impl From<DeviceError> for Halt {
    fn from(e: DeviceError) -> Self {
        Halt::Device(e)
    }
}

/// How the self-test of a switched image ended.
enum SelfTest {
    /// Confirmed: the counter moved forward.
    Passed,
    /// Reverted to the previous image, for this reason.
    Reverted(suit::Error),
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), DeviceError> {
    let mut f = File::create(path).map_err(DeviceError::io("cannot create", path))?;
    f.write_all(data)
        .map_err(DeviceError::io("cannot write", path))?;
    f.sync_all().map_err(DeviceError::io("cannot sync", path))
}

fn flip_a_bit(path: &Path) -> Result<(), DeviceError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(DeviceError::io("cannot open", path))?;
    let len = f
        .metadata()
        .map_err(DeviceError::io("cannot stat", path))?
        .len();
    let at = len / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at))
        .map_err(DeviceError::io("cannot seek", path))?;
    f.read_exact(&mut b)
        .map_err(DeviceError::io("cannot read", path))?;
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(at))
        .map_err(DeviceError::io("cannot seek", path))?;
    f.write_all(&b)
        .map_err(DeviceError::io("cannot write", path))?;
    f.sync_all().map_err(DeviceError::io("cannot sync", path))
}
