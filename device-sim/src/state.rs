//! A device's persistent state: one directory per device.
//!
//! ```text
//! DIR/identity.json   vendor-id, class-id, device-id, name           (provisioned)
//! DIR/trust.json      manufacturer keys, dispatcher approval key      (provisioned)
//! DIR/state.json      active slot, slot contents, anti-rollback counter, pending install
//! DIR/slot-a.bin      image in slot A
//! DIR/slot-b.bin      image in slot B
//! DIR/install.log     one JSON line per install attempt and boot event (appended, synced)
//! DIR/install.log.1   the previous generation of the log (bounded: see DeviceDir::log)
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

/// The install log, and its previous generation.
const LOG: &str = "install.log";
/// See [`LOG`].
const LOG_OLD: &str = "install.log.1";

/// Default bound of one generation of the install log (`--max-log-bytes`): with the
/// previous generation, at most twice this on disk.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 64 << 10;
/// The smallest bound allowed: a record is at most a few KiB (a report's message is clipped
/// to 2 KiB), so a generation always holds at least one.
pub const MIN_MAX_LOG_BYTES: u64 = 4 << 10;

/// The device directory.
#[derive(Debug, Clone)]
pub struct DeviceDir {
    root: PathBuf,
    max_log: u64,
}

impl DeviceDir {
    /// Opens (does not create) a device directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_log: DEFAULT_MAX_LOG_BYTES,
        }
    }

    /// Bounds one generation of the install log to `bytes` (at least
    /// [`MIN_MAX_LOG_BYTES`]; see [`DeviceDir::log`]).
    pub fn with_max_log_bytes(mut self, bytes: u64) -> Self {
        self.max_log = bytes.max(MIN_MAX_LOG_BYTES);
        self
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

    /// Appends one JSON line to the install log and syncs it. The log is bounded: when the
    /// line would take `install.log` past its bound (`with_max_log_bytes`, default 64 KiB),
    /// the file becomes `install.log.1` (replacing the generation before, by an atomic
    /// rename, then a sync of the directory) and the line starts a new `install.log`. So the
    /// log never holds more than twice the bound, and always the newest records: the
    /// current generation and, once it rotated, at least a bound's worth before it.
    ///
    /// Crash-safe at every step: a power loss leaves either generation whole (a rename is
    /// atomic; a missing `install.log` is an empty one), and a line cut short by a power
    /// loss is ended before the next one is appended, so it costs only itself (it is
    /// skipped when read) and never the record after it.
    pub fn log<T: Serialize>(&self, entry: &T) -> Result<(), DeviceError> {
        use std::os::unix::fs::FileExt as _;
        let path = self.root.join(LOG);
        let mut line =
            serde_json::to_vec(entry).map_err(|e| DeviceError::Corrupt(e.to_string()))?;
        line.push(b'\n');
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)
                .map_err(DeviceError::io("cannot open", path))
        };
        let mut f = open(&path)?;
        let len = f
            .metadata()
            .map_err(DeviceError::io("cannot read", &path))?
            .len();
        let mut last = [b'\n'];
        if len > 0 {
            f.read_exact_at(&mut last, len - 1)
                .map_err(DeviceError::io("cannot read", &path))?;
        }
        let torn = last[0] != b'\n';
        let mut new_file = len == 0;
        if len > 0 && len + u64::from(torn) + line.len() as u64 > self.max_log {
            drop(f);
            let old = self.root.join(LOG_OLD);
            fs::rename(&path, &old).map_err(DeviceError::io("cannot rename", &path))?;
            self.sync_dir()?;
            f = open(&path)?;
            new_file = true;
        } else if torn {
            f.write_all(b"\n")
                .map_err(DeviceError::io("cannot write", &path))?;
        }
        f.write_all(&line)
            .map_err(DeviceError::io("cannot write", &path))?;
        f.sync_data()
            .map_err(DeviceError::io("cannot sync", &path))?;
        if new_file {
            // A new file: its directory entry must be durable too.
            self.sync_dir()?;
        }
        Ok(())
    }

    /// The install log, oldest first, one value per line (lines cut short by a power loss
    /// are skipped): the previous generation, then the current one. At most the last bound's
    /// worth of bytes of each file is read, so a log left larger by an older version (which
    /// did not bound it) costs no more.
    pub fn read_log(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for name in [LOG_OLD, LOG] {
            let text = self.tail(name, self.max_log);
            out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        out
    }

    /// The last `max` bytes of `name`, from the first whole line in them (empty when absent).
    fn tail(&self, name: &str, max: u64) -> String {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let Ok(mut f) = File::open(self.root.join(name)) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        // One byte before the window too: whether the window starts a line.
        let start = len.saturating_sub(max.saturating_add(1));
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err()
            || f.take(max.saturating_add(1))
                .read_to_end(&mut bytes)
                .is_err()
        {
            return String::new();
        }
        if start > 0 {
            // Up to the first line break is the end of a line that began before the window.
            let cut = bytes
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |i| i + 1);
            bytes.drain(..cut);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Bytes of the install log on disk (both generations).
    pub fn log_bytes(&self) -> u64 {
        [LOG_OLD, LOG]
            .iter()
            .filter_map(|n| fs::metadata(self.root.join(n)).ok())
            .map(|m| m.len())
            .sum()
    }
}
