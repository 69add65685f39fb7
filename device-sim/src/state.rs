//! A device's persistent state: one directory per device.
//!
//! ```text
//! DIR/identity.json   vendor-id, class-id, device-id, name           (provisioned)
//! DIR/trust.json      manufacturer keys, dispatcher approval key      (provisioned)
//! DIR/state.json      active slot, slot contents, anti-rollback counter, pending install
//! DIR/slot-a.bin      image in slot A
//! DIR/slot-b.bin      image in slot B
//! DIR/install.log     one JSON line per install attempt and boot event (append-only)
//! ```
//!
//! `state.json` is the commit point of every step: it is written to a temporary file,
//! fsynced, renamed over the old one, and the directory is fsynced. A power loss leaves either
//! the old or the new state, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DeviceError;

/// Who the device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Human-readable name.
    pub name: String,
    /// Vendor-id (SUIT condition 1).
    pub vendor_id: Uuid,
    /// Class-id (SUIT condition 2).
    pub class_id: Uuid,
    /// Device-id (SUIT condition 24).
    pub device_id: Uuid,
}

/// A public key with its kid, as provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key identifier, as text.
    pub kid: String,
    /// SPKI PEM.
    pub pem: String,
}

/// Trust anchors (DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// The manufacturer's publisher keys.
    pub manufacturer: Vec<KeyEntry>,
    /// Third-party publisher keys (T1 only).
    #[serde(default)]
    pub third_party: Vec<KeyEntry>,
    /// T3 author keys.
    #[serde(default)]
    pub authors: Vec<KeyEntry>,
    /// The domain dispatcher's approval key.
    pub approver: Option<KeyEntry>,
    /// Require the approval signature (true except on a bench).
    pub require_approval: bool,
}

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Index used by the SUIT component-slot condition.
    pub fn index(self) -> u64 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Slot::A => "slot-a.bin",
            Slot::B => "slot-b.bin",
        }
    }
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImage {
    /// Version, `X.Y.Z`.
    pub version: String,
    /// Manifest sequence number that installed it (0 for the factory image).
    pub sequence: u64,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Release id (hex manifest digest), or "factory".
    pub release_id: String,
}

/// Where an interrupted install stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The image is written and checked in the inactive slot; not yet switched.
    Written,
    /// The device switched to the new slot and has not confirmed it yet.
    Switched,
}

/// An install in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Release id.
    pub release_id: String,
    /// The slot being installed.
    pub slot: Slot,
    /// Phase reached.
    pub phase: Phase,
}

/// The mutable state (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The slot the device boots.
    pub active: Slot,
    /// Slot A contents (None: empty or invalid).
    pub a: Option<SlotImage>,
    /// Slot B contents.
    pub b: Option<SlotImage>,
    /// Anti-rollback counter: the sequence number of the last confirmed install. It only
    /// moves forward, and only after confirmation.
    pub counter: u64,
    /// An install in progress.
    pub pending: Option<Pending>,
    /// Number of boots.
    pub boots: u64,
}

impl State {
    /// The image in `slot`.
    pub fn slot(&self, slot: Slot) -> Option<&SlotImage> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    /// Sets the image in `slot`.
    pub fn set_slot(&mut self, slot: Slot, image: Option<SlotImage>) {
        match slot {
            Slot::A => self.a = image,
            Slot::B => self.b = image,
        }
    }

    /// The running image.
    pub fn running(&self) -> Option<&SlotImage> {
        self.slot(self.active)
    }
}

/// The device directory.
#[derive(Debug, Clone)]
pub struct DeviceDir {
    root: PathBuf,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DeviceError {
    let path = path.to_owned();
    move |source| DeviceError::Io { what, path, source }
}

impl DeviceDir {
    /// Opens (does not create) a device directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a slot's image file.
    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.file())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T, DeviceError> {
        let path = self.root.join(name);
        let bytes = fs::read(&path).map_err(io("cannot read", &path))?;
        if bytes.len() > 1 << 20 {
            return Err(DeviceError::Corrupt(format!(
                "{} is larger than 1 MiB",
                path.display()
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| DeviceError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Writes `name` atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), DeviceError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let data =
            serde_json::to_vec_pretty(value).map_err(|e| DeviceError::Corrupt(e.to_string()))?;
        {
            let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
            f.write_all(&data).map_err(io("cannot write", &tmp))?;
            f.sync_all().map_err(io("cannot sync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io("cannot rename", &path))?;
        self.sync_dir()
    }

    /// fsyncs the directory (makes renames durable).
    pub fn sync_dir(&self) -> Result<(), DeviceError> {
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync", &self.root))
    }

    /// Identity.
    pub fn identity(&self) -> Result<Identity, DeviceError> {
        self.read_json("identity.json")
    }

    /// Trust anchors.
    pub fn trust(&self) -> Result<Trust, DeviceError> {
        self.read_json("trust.json")
    }

    /// Current state.
    pub fn state(&self) -> Result<State, DeviceError> {
        self.read_json("state.json")
    }

    /// Commits a new state (atomic).
    pub fn commit(&self, state: &State) -> Result<(), DeviceError> {
        self.write_json("state.json", state)
    }

    /// Appends one JSON line to the install log and syncs it.
    pub fn log<T: Serialize>(&self, entry: &T) -> Result<(), DeviceError> {
        let path = self.root.join("install.log");
        let mut line =
            serde_json::to_vec(entry).map_err(|e| DeviceError::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        f.write_all(&line).map_err(io("cannot write", &path))?;
        f.sync_data().map_err(io("cannot sync", &path))
    }

    /// The install log, one value per line (lines cut short by a power loss are skipped).
    pub fn read_log(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.root.join("install.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
