//! Sender sequence numbers that survive restarts without reuse (RFC 8613 Appendix B.1.1).
//!
//! The context persists a value `limit` *before* it uses any sequence number `>= limit`, in
//! steps of `step` numbers. After a crash it resumes at the persisted `limit`: every number it
//! may have used is below it, so no (key, nonce) pair is ever used twice.
//!
//! The core only talks to the [`SeqStore`] trait; [`FileSeqStore`] is the file-backed
//! implementation used by the transport and the examples (atomic: temp file, fsync, rename,
//! fsync of the directory).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// RFC 8613 §7.2.1: the largest sequence number (Partial IV is at most 5 bytes).
pub const MAX_SEQ: u64 = (1 << 40) - 1;

/// Default persistence step K (Appendix B.1.1). A restart skips at most K numbers.
pub const DEFAULT_STEP: u64 = 4096;

/// Durable storage of the sender sequence number limit.
pub trait SeqStore: Send + Sync + fmt::Debug {
    /// The persisted limit, if any (None = never persisted: a fresh context).
    fn load(&mut self) -> io::Result<Option<u64>>;
    /// Durably stores `limit`; returns only once it is on stable storage.
    fn store(&mut self, limit: u64) -> io::Result<()>;
    /// Persistence step K.
    fn step(&self) -> u64 {
        DEFAULT_STEP
    }
}

/// In-memory store (no durability; tests and throw-away contexts). Clones share the value, so
/// a test can "restart" a context from the same store.
#[derive(Debug, Clone, Default)]
pub struct MemorySeqStore {
    value: Arc<Mutex<Option<u64>>>,
    step: Option<u64>,
}

impl MemorySeqStore {
    /// New empty store with the default step.
    pub fn new() -> Self {
        Self::default()
    }

    /// New empty store with persistence step `step`.
    pub fn with_step(step: u64) -> Self {
        MemorySeqStore {
            value: Arc::default(),
            step: Some(step.max(1)),
        }
    }

    /// Value currently "on disk".
    pub fn persisted(&self) -> Option<u64> {
        self.value.lock().map(|g| *g).unwrap_or(None)
    }
}

impl SeqStore for MemorySeqStore {
    fn load(&mut self) -> io::Result<Option<u64>> {
        Ok(self.persisted())
    }
    fn store(&mut self, limit: u64) -> io::Result<()> {
        let mut g = self
            .value
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        *g = Some(limit);
        Ok(())
    }
    fn step(&self) -> u64 {
        self.step.unwrap_or(DEFAULT_STEP)
    }
}

/// File-backed store: `{"sender_seq_limit": N}` in one file, replaced atomically.
#[derive(Debug)]
pub struct FileSeqStore {
    path: PathBuf,
    step: u64,
}

impl FileSeqStore {
    /// Store at `path` (conventionally `CONTEXT_FILE.seq`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSeqStore {
            path: path.into(),
            step: DEFAULT_STEP,
        }
    }

    /// Same with persistence step `step`.
    pub fn with_step(path: impl Into<PathBuf>, step: u64) -> Self {
        FileSeqStore {
            path: path.into(),
            step: step.max(1),
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SeqFile {
    sender_seq_limit: u64,
}

impl SeqStore for FileSeqStore {
    fn load(&mut self) -> io::Result<Option<u64>> {
        let text = match fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // A corrupt file is an error, not "start from 0": that would reuse nonces.
        let f: SeqFile = serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path.display()),
            )
        })?;
        Ok(Some(f.sender_seq_limit))
    }

    fn store(&mut self, limit: u64) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        {
            let mut f = fs::File::create(&tmp)?;
            let body = serde_json::to_vec(&SeqFile {
                sender_seq_limit: limit,
            })
            .map_err(io::Error::other)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn step(&self) -> u64 {
        self.step
    }
}

/// The sender sequence number with its persisted-ahead limit.
pub struct SenderSequence {
    next: u64,
    limit: u64,
    store: Box<dyn SeqStore>,
}

impl fmt::Debug for SenderSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderSequence")
            .field("next", &self.next)
            .field("persisted_limit", &self.limit)
            .finish()
    }
}

impl SenderSequence {
    /// Loads from `store`. Returns the sequence and whether a persisted value existed.
    /// Appendix B.1.1: resume at the persisted limit, then persist the next step before use.
    pub(crate) fn load(mut store: Box<dyn SeqStore>) -> Result<(Self, bool)> {
        let persisted = store.load().map_err(Error::Persist)?;
        let next = persisted.unwrap_or(0);
        Ok((
            SenderSequence {
                next,
                limit: next,
                store,
            },
            persisted.is_some(),
        ))
    }

    /// Next number that [`Self::take`] returns.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Takes the next sequence number, persisting a new limit first when needed.
    pub fn take(&mut self) -> Result<u64> {
        // RFC 8613 §7.2.1: never exceed 2^40 - 1.
        if self.next > MAX_SEQ {
            return Err(Error::SequenceExhausted);
        }
        if self.next >= self.limit {
            // Appendix B.1.1: store the new limit before using any number at or above it.
            let new_limit = self.next.saturating_add(self.store.step()).min(MAX_SEQ + 1);
            self.store.store(new_limit).map_err(Error::Persist)?;
            self.limit = new_limit;
        }
        let s = self.next;
        self.next += 1;
        Ok(s)
    }

    /// Persists `next` exactly (graceful shutdown: a restart then skips nothing).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.store.store(self.next).map_err(Error::Persist)?;
        self.limit = self.next;
        Ok(())
    }
}
