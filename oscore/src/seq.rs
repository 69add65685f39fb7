//! Sender sequence numbers that survive restarts without reuse (RFC 8613 Appendix B.1.1).
//!
//! The context persists a value `limit` *before* it uses any sequence number `>= limit`, in
//! steps of `step` numbers. After a crash it resumes at the persisted `limit`: every number it
//! may have used is below it, so no (key, nonce) pair is ever used twice.
//!
//! The core only talks to the [`SeqStore`] trait; [`FileSeqStore`] is the file-backed
//! implementation (atomic: temp file, fsync, rename, fsync of the directory), normally made
//! by [`crate::ctxfile`], which writes the first state when it creates a context and holds the
//! context's lock inside the store.
//!
//! A store that holds a value belongs to a context that may have been used before, in
//! another process: [`SecurityContext::new`](crate::SecurityContext::new) then starts with a
//! lost replay window (RFC 8613 Appendix B.1.2). Only a store that was never written (an
//! in-memory store of a context created in this process) starts with an empty one.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::lock::Hold;

/// RFC 8613 §7.2.1: the largest sequence number (Partial IV is at most 5 bytes).
pub const MAX_SEQ: u64 = (1 << 40) - 1;

/// Default persistence step K (Appendix B.1.1). A restart skips at most K numbers.
pub const DEFAULT_STEP: u64 = 4096;

/// Durable storage of the sender sequence number limit.
pub trait SeqStore: Send + Sync + fmt::Debug {
    /// The persisted limit, if any. `None` only for a store that was never written and cannot
    /// have been used by another process (a fresh in-memory context); a file store without
    /// its file is an error, not `None`.
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

/// File-backed store: `{"sender_seq_limit": N}` in one file, replaced atomically. The file
/// must exist ([`FileSeqStore::init`] writes the first one): a missing file is an error, never
/// "start at 0".
#[derive(Debug)]
pub struct FileSeqStore {
    path: PathBuf,
    step: u64,
    /// The lock of the context this store belongs to, released with the store.
    hold: Option<Hold>,
}

impl FileSeqStore {
    /// Store at `path` (conventionally `CONTEXT_FILE.seq`). Takes no lock: the caller makes
    /// sure no other live context uses this file ([`crate::ctxfile::open`] does).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSeqStore {
            path: path.into(),
            step: DEFAULT_STEP,
            hold: None,
        }
    }

    /// Same with persistence step `step`.
    pub fn with_step(path: impl Into<PathBuf>, step: u64) -> Self {
        FileSeqStore {
            path: path.into(),
            step: step.max(1),
            hold: None,
        }
    }

    /// Keeps `hold` (a context lock) as long as the store lives.
    pub(crate) fn holding(mut self, hold: Hold) -> Self {
        self.hold = Some(hold);
        self
    }

    /// Writes the first state of a new context (next sequence number 0), durably.
    pub fn init(path: &Path) -> io::Result<()> {
        FileSeqStore::new(path).store(0)
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
        // A missing file is an error too: the context may have used numbers that are not
        // recorded anywhere else (Appendix B.1.1).
        let text = fs::read(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
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
        // Make the rename itself durable: until it is, a crash could bring the old limit back.
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    }

    fn step(&self) -> u64 {
        self.step
    }
}

/// The sender sequence number with its persisted-ahead limit.
pub struct SenderSequence {
    next: u64,
    /// The value last stored (or loaded): every number below it may have been used.
    limit: u64,
    /// Whether `limit` is on stable storage (false only for a fresh in-memory store).
    stored: bool,
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
                stored: persisted.is_some(),
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
            self.stored = true;
        }
        let s = self.next;
        self.next += 1;
        Ok(s)
    }

    /// Persists `next` exactly (graceful shutdown: a restart then skips nothing). Writes
    /// nothing when that is already the stored value (no number taken since the last
    /// store): a server with thousands of contexts, most of which answered under the
    /// request's nonce, stops without a write per context.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.stored && self.next == self.limit {
            return Ok(());
        }
        self.store.store(self.next).map_err(Error::Persist)?;
        self.limit = self.next;
        self.stored = true;
        Ok(())
    }
}
