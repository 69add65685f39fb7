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

use serde::Serialize;

use crate::DeviceError;

// The records that also travel (in the bundle, check-ins and status) are `fleet_proto`'s,
// decoded by its one strict decoder here as on the wire.
pub use fleet_proto::bundle::{Identity, Trust};
pub use fleet_proto::state::{Pending, Phase, Slot, SlotImage, State};

/// The image file of a slot.
fn slot_file(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "slot-a.bin",
        Slot::B => "slot-b.bin",
    }
}

/// The device directory.
#[derive(Debug, Clone)]
pub struct DeviceDir {
    root: PathBuf,
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
        self.root.join(slot_file(slot))
    }

    /// The bytes of `name`, refused past `limit` (one byte more is read to tell).
    fn read_bounded(&self, name: &str, limit: usize) -> Result<(PathBuf, Vec<u8>), DeviceError> {
        use std::io::Read as _;
        let path = self.root.join(name);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
            .map_err(DeviceError::io("cannot read", &path))?;
        Ok((path, bytes))
    }

    fn decode<T>(
        &self,
        name: &str,
        limit: usize,
        decode: fn(&[u8]) -> Result<T, fleet_proto::Error>,
    ) -> Result<T, DeviceError> {
        let (path, bytes) = self.read_bounded(name, limit)?;
        decode(&bytes).map_err(|e| DeviceError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Writes `name` atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), DeviceError> {
        let path = self.root.join(name);
        let tmp = self.root.join(format!(".{name}.tmp"));
        let data =
            serde_json::to_vec_pretty(value).map_err(|e| DeviceError::Corrupt(e.to_string()))?;
        {
            let mut f = File::create(&tmp).map_err(DeviceError::io("cannot create", &tmp))?;
            f.write_all(&data)
                .map_err(DeviceError::io("cannot write", &tmp))?;
            f.sync_all().map_err(DeviceError::io("cannot sync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(DeviceError::io("cannot rename", &path))?;
        self.sync_dir()
    }

    /// fsyncs the directory (makes renames durable).
    pub fn sync_dir(&self) -> Result<(), DeviceError> {
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(DeviceError::io("cannot sync", &self.root))
    }

    /// Identity.
    pub fn identity(&self) -> Result<Identity, DeviceError> {
        use fleet_proto::limits::MAX_IDENTITY;
        self.decode("identity.json", MAX_IDENTITY, Identity::decode)
    }

    /// Trust anchors.
    pub fn trust(&self) -> Result<Trust, DeviceError> {
        self.decode("trust.json", fleet_proto::limits::MAX_TRUST, Trust::decode)
    }

    /// Current state.
    pub fn state(&self) -> Result<State, DeviceError> {
        self.decode("state.json", fleet_proto::limits::MAX_STATE, State::decode)
    }

    /// Commits a new state (atomic). A state the decoder would refuse is not written: it
    /// would leave a device that cannot read its own commit point at the next boot.
    pub fn commit(&self, state: &State) -> Result<(), DeviceError> {
        state
            .validate()
            .map_err(|e| DeviceError::Corrupt(format!("refusing to commit state.json: {e}")))?;
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
            .map_err(DeviceError::io("cannot open", &path))?;
        f.write_all(&line)
            .map_err(DeviceError::io("cannot write", &path))?;
        f.sync_data().map_err(DeviceError::io("cannot sync", &path))
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
