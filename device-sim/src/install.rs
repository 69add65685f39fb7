//! The install procedure and boot-time recovery, each step citing what it implements.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};
use suit::release::PayloadVerifier;
use suit::{DeviceState, Limits, ReleaseKey, Rules, TrustStore};

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

fn sha256_file(path: &std::path::Path) -> Result<(String, u64), DeviceError> {
    let mut f = File::open(path).map_err(|source| DeviceError::Io {
        what: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|source| DeviceError::Io {
            what: "cannot read",
            path: path.to_owned(),
            source,
        })?;
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
        fs::create_dir_all(dir.root()).map_err(|source| DeviceError::Io {
            what: "cannot create",
            path: dir.root().to_owned(),
            source,
        })?;
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
        // §8.4.2 anti-rollback, §8.4.9 vendor/class/device conditions, UM §4.6 versions.
        let plan = match suit::evaluate(&verified, &self.device_state(), &self.limits) {
            Ok(p) => p,
            Err(e) => return self.report(id, InstallOutcome::Rejected, Some(&e), &before),
        };
        let key = match ReleaseKey::from_cose_key(release_key) {
            Ok(k) => k,
            Err(e) => return self.report(id, InstallOutcome::Rejected, Some(&e), &before),
        };
        let plaintext = match suit::release::plaintext_info(&verified) {
            Ok(p) => p,
            Err(e) => return self.report(id, InstallOutcome::Rejected, Some(&e), &before),
        };

        // Download: receive the encrypted blob (component #1) into staging, checking its
        // size and digest against the signed manifest as it arrives.
        let staging = self.dir.root().join("download.bin");
        let mut checker = PayloadVerifier::new(&verified, None).map_err(|e| {
            DeviceError::Corrupt(format!("verified envelope without blob digest: {e}"))
        })?;
        {
            let mut out = File::create(&staging).map_err(|source| DeviceError::Io {
                what: "cannot create",
                path: staging.clone(),
                source,
            })?;
            let cut = faults.power_loss(Step::Download);
            let mut buf = vec![0u8; CHUNK];
            let mut received = 0u64;
            loop {
                let n = blob.read(&mut buf).map_err(|source| DeviceError::Io {
                    what: "cannot receive blob",
                    path: staging.clone(),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                if let Some(limit) = cut
                    && received + n as u64 > limit
                {
                    let keep = (limit - received) as usize;
                    let _ = out.write_all(&buf[..keep]);
                    return Err(DeviceError::PowerLoss(Step::Download));
                }
                if let Err(e) = checker.update(&mut buf[..n]) {
                    drop(out);
                    let _ = fs::remove_file(&staging);
                    return self.report(id, InstallOutcome::Rejected, Some(&e), &before);
                }
                out.write_all(&buf[..n]).map_err(|source| DeviceError::Io {
                    what: "cannot write",
                    path: staging.clone(),
                    source,
                })?;
                received += n as u64;
            }
            out.sync_all().map_err(|source| DeviceError::Io {
                what: "cannot sync",
                path: staging.clone(),
                source,
            })?;
        }
        if let Err(e) = checker.finish() {
            let _ = fs::remove_file(&staging);
            return self.report(id, InstallOutcome::Rejected, Some(&e), &before);
        }

        // Decrypt (FE §6.1) streaming into the inactive slot. The slot is marked empty
        // first, so an interrupted or failed write can never be booted.
        let target = self.state.active.other();
        self.state.set_slot(target, None);
        self.dir.commit(&self.state)?;
        let slot_path = self.dir.slot_path(target);
        let result = self.decrypt_into(&verified, &key, &staging, &slot_path, faults);
        let _ = fs::remove_file(&staging);
        match result {
            Ok(()) => {}
            Err(Decrypt::Rejected(e)) => {
                return self.report(id, InstallOutcome::Rejected, Some(&e), &before);
            }
            Err(Decrypt::Device(e)) => return Err(e),
        }
        if faults.has(Fault::CorruptFlash) {
            flip_a_bit(&slot_path)?;
        }

        // The plaintext digest was checked while decrypting; record the slot and the phase.
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
        self.dir.commit(&self.state)?;
        if faults.power_loss(Step::BeforeSwitch).is_some() {
            return Err(DeviceError::PowerLoss(Step::BeforeSwitch));
        }

        // Switch: boot the new slot, unconfirmed.
        self.state.active = target;
        self.state.pending = Some(Pending {
            release_id: verified.release_id(),
            slot: target,
            phase: Phase::Switched,
        });
        self.dir.commit(&self.state)?;
        if faults.power_loss(Step::BeforeConfirm).is_some() {
            return Err(DeviceError::PowerLoss(Step::BeforeConfirm));
        }

        // Self-test of the new image: its bytes in flash still match the signed digest,
        // and the (simulated) application starts.
        let flash_ok = self.slot_valid(target)?;
        if !flash_ok || faults.has(Fault::SelfTestFails) {
            self.state.active = target.other();
            self.state.set_slot(target, None);
            self.state.pending = None;
            self.dir.commit(&self.state)?;
            let e = suit::Error::InvalidInput(if flash_ok {
                "self-test failed after the switch; reverted to the previous image".into()
            } else {
                "new image corrupt in flash after the switch; reverted to the previous image".into()
            });
            let mut r = self.report(id, InstallOutcome::Reverted, Some(&e), &before)?;
            r.check = Some("self-test-failed".into());
            return Ok(r);
        }
        // Confirm: only now does the anti-rollback counter move forward.
        self.state.counter = plan.sequence_number;
        self.state.pending = None;
        self.dir.commit(&self.state)?;
        self.report(id, InstallOutcome::Installed, None, &before)
    }

    fn decrypt_into(
        &self,
        verified: &suit::Accepted,
        key: &ReleaseKey,
        staging: &std::path::Path,
        slot_path: &std::path::Path,
        faults: &FaultPlan,
    ) -> Result<(), Decrypt> {
        let mut checker = PayloadVerifier::new(verified, Some(key)).map_err(Decrypt::Rejected)?;
        let io = |what: &'static str, p: &std::path::Path| {
            let path = p.to_owned();
            move |source| Decrypt::Device(DeviceError::Io { what, path, source })
        };
        let mut input = File::open(staging).map_err(io("cannot open", staging))?;
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(slot_path)
            .map_err(io("cannot open", slot_path))?;
        let cut = faults.power_loss(Step::Decrypt);
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(io("cannot read", staging))?;
            if n == 0 {
                break;
            }
            let plain = checker.update(&mut buf[..n]).map_err(Decrypt::Rejected)?;
            if let Some(limit) = cut
                && done + plain.len() as u64 > limit
            {
                let _ = out.write_all(&plain[..(limit - done) as usize]);
                return Err(Decrypt::Device(DeviceError::PowerLoss(Step::Decrypt)));
            }
            out.write_all(plain)
                .map_err(io("cannot write", slot_path))?;
            done += plain.len() as u64;
        }
        checker.finish().map_err(Decrypt::Rejected)?;
        out.sync_all().map_err(io("cannot sync", slot_path))?;
        Ok(())
    }
}

enum Decrypt {
    Rejected(suit::Error),
    Device(DeviceError),
}

fn write_synced(path: &std::path::Path, data: &[u8]) -> Result<(), DeviceError> {
    let io = |what| {
        move |source| DeviceError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let mut f = File::create(path).map_err(io("cannot create"))?;
    f.write_all(data).map_err(io("cannot write"))?;
    f.sync_all().map_err(io("cannot sync"))
}

fn flip_a_bit(path: &std::path::Path) -> Result<(), DeviceError> {
    let io = |what| {
        move |source| DeviceError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("cannot open"))?;
    let len = f.metadata().map_err(io("cannot stat"))?.len();
    let at = len / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).map_err(io("cannot seek"))?;
    f.read_exact(&mut b).map_err(io("cannot read"))?;
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(at)).map_err(io("cannot seek"))?;
    f.write_all(&b).map_err(io("cannot write"))?;
    f.sync_all().map_err(io("cannot sync"))
}
