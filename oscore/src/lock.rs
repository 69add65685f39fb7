//! Exclusive use of a security context by one process (file I/O; not part of the sans-I/O
//! core).
//!
//! Two live copies of one context would encrypt different messages under the same key and
//! sequence number, i.e. reuse AES-CCM nonces. So every context file is opened under an
//! exclusive advisory lock (`flock`, released by the kernel when the process ends, SIGKILL
//! included), and a second opener gets [`Error::ContextLocked`] instead of a context.
//!
//! Two scopes:
//!
//! * **one context file** `F` ([`ContextLock::file`]): the lock file `F.lock`;
//! * **a tree** of context files below a directory `D` ([`ContextLock::tree`]): the lock file
//!   `D/.oscore.lock`. A process that holds thousands of contexts (a dispatcher, a fleet of
//!   simulated devices) holds one file descriptor instead of one per context.
//!
//! How the scopes exclude each other (a lock is always taken before the checks that follow
//! it, so of two racing openers at least one sees the other):
//!
//! 1. whoever locks `F.lock` or `D/.oscore.lock` then takes a *shared* lock on the
//!    `.oscore.lock` of every ancestor directory that has one, and keeps it: a tree holder
//!    above (exclusive) makes this fail;
//! 2. a tree holder that opens `F` below `D` first probes (exclusive, then released) the
//!    `.oscore.lock` of every directory between `D` and `F`, and `F.lock`: an individual
//!    holder below makes this fail.
//!
//! Inside one process a tree also remembers which files are open through it, so the same
//! context cannot be opened twice through one tree either.

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Name of the lock file of a tree of contexts.
pub const TREE_LOCK: &str = ".oscore.lock";

/// `FILE.lock`: the lock file of one context file.
pub fn file_lock_path(context_file: &Path) -> PathBuf {
    let mut s = context_file.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

fn locked(path: &Path) -> Error {
    Error::ContextLocked {
        path: path.display().to_string(),
    }
}

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::ContextFile {
        path: path.display().to_string(),
        reason: format!("lock: {e}"),
    }
}

/// Opens (creating it) and locks `path` exclusively.
fn lock_own(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(locked(path)),
        Err(TryLockError::Error(e)) => Err(io_err(path, e)),
    }
}

/// Opens an existing lock file read-only (None when absent or unreadable: a lock nobody can
/// open is a lock nobody holds through this module).
fn open_existing(path: &Path) -> Option<File> {
    File::open(path).ok()
}

/// Step 1: shared locks on the tree locks of `dir` and its ancestors (those that exist).
fn share_ancestors(dir: &Path) -> Result<Vec<File>> {
    let mut held = Vec::new();
    for a in dir.ancestors() {
        let p = a.join(TREE_LOCK);
        let Some(f) = open_existing(&p) else {
            continue;
        };
        match f.try_lock_shared() {
            Ok(()) => held.push(f),
            Err(TryLockError::WouldBlock) => return Err(locked(&p)),
            Err(TryLockError::Error(e)) => return Err(io_err(&p, e)),
        }
    }
    Ok(held)
}

/// Step 2: nobody holds `path` (an exclusive probe, released at once).
fn probe(path: &Path) -> Result<()> {
    let Some(f) = open_existing(path) else {
        return Ok(());
    };
    match f.try_lock() {
        Ok(()) => Ok(()), // released when `f` is dropped
        Err(TryLockError::WouldBlock) => Err(locked(path)),
        Err(TryLockError::Error(e)) => Err(io_err(path, e)),
    }
}

/// The canonical directory a context file lives in, and the canonical file path.
fn canonical_file(context_file: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = context_file
        .file_name()
        .ok_or_else(|| io_err(context_file, io::Error::other("not a file name")))?;
    let parent = match context_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(parent).map_err(|e| io_err(context_file, e))?;
    let file = dir.join(name);
    Ok((dir, file))
}

#[derive(Debug)]
enum Scope {
    File,
    Tree {
        dir: PathBuf,
        /// Context files open through this tree in this process.
        open: Mutex<HashSet<PathBuf>>,
    },
}

/// An exclusive lock on one context file or on a tree of them (see the module
/// documentation). Released when dropped (and by the kernel when the process ends).
#[derive(Debug)]
pub struct ContextLock {
    scope: Scope,
    lock_file: PathBuf,
    _own: File,
    _ancestors: Vec<File>,
}

impl ContextLock {
    /// Locks one context file (`FILE.lock`). [`Error::ContextLocked`] when another holder
    /// (process, or another open in this one) has it or a tree above it.
    pub fn file(context_file: &Path) -> Result<ContextLock> {
        let (dir, file) = canonical_file(context_file)?;
        let lock_file = file_lock_path(&file);
        let own = lock_own(&lock_file)?;
        let ancestors = share_ancestors(&dir)?;
        Ok(ContextLock {
            scope: Scope::File,
            lock_file,
            _own: own,
            _ancestors: ancestors,
        })
    }

    /// Locks every context file below `dir` (`dir/.oscore.lock`; the directory must exist).
    pub fn tree(dir: &Path) -> Result<Arc<ContextLock>> {
        let dir = std::fs::canonicalize(dir).map_err(|e| io_err(dir, e))?;
        let lock_file = dir.join(TREE_LOCK);
        let own = lock_own(&lock_file)?;
        let ancestors = match dir.parent() {
            Some(p) => share_ancestors(p)?,
            None => Vec::new(),
        };
        Ok(Arc::new(ContextLock {
            scope: Scope::Tree {
                dir,
                open: Mutex::default(),
            },
            lock_file,
            _own: own,
            _ancestors: ancestors,
        }))
    }

    /// The lock file held.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// Step 2 for `context_file` below this tree, and the in-process check; on success the
    /// file counts as open until the returned membership is dropped.
    pub(crate) fn enter(self: &Arc<Self>, context_file: &Path) -> Result<TreeMember> {
        let Scope::Tree { dir, open } = &self.scope else {
            return Err(io_err(context_file, io::Error::other("not a tree lock")));
        };
        let (fdir, file) = canonical_file(context_file)?;
        let below = fdir
            .strip_prefix(dir)
            .map_err(|_| io_err(&file, io::Error::other("outside the locked tree")))?;
        let mut d = dir.clone();
        for part in below.components() {
            d.push(part);
            probe(&d.join(TREE_LOCK))?;
        }
        probe(&file_lock_path(&file))?;
        let mut set = open
            .lock()
            .map_err(|_| io_err(&file, io::Error::other("lock poisoned")))?;
        if !set.insert(file.clone()) {
            return Err(Error::ContextLocked {
                path: format!("{} (already open in this process)", file.display()),
            });
        }
        Ok(TreeMember {
            tree: self.clone(),
            file,
        })
    }
}

/// A context file open through a tree lock; leaves the tree's open set when dropped.
#[derive(Debug)]
pub(crate) struct TreeMember {
    tree: Arc<ContextLock>,
    file: PathBuf,
}

impl Drop for TreeMember {
    fn drop(&mut self) {
        if let Scope::Tree { open, .. } = &self.tree.scope
            && let Ok(mut set) = open.lock()
        {
            set.remove(&self.file);
        }
    }
}

/// What keeps a context's lock alive: owned by the context's sequence store.
#[derive(Debug)]
#[allow(dead_code)] // the values are held for their Drop: the lock is released with the store
pub(crate) enum Hold {
    /// An individual lock.
    File(ContextLock),
    /// Membership in a tree.
    Tree(TreeMember),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn file_locks_exclude_each_other() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.json");
        let a = ContextLock::file(&f).unwrap();
        assert!(matches!(
            ContextLock::file(&f),
            Err(Error::ContextLocked { .. })
        ));
        drop(a);
        ContextLock::file(&f).unwrap();
    }

    #[test]
    fn trees_and_files_exclude_each_other() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("dev-1");
        std::fs::create_dir(&dev).unwrap();
        let f = dev.join("c.json");
        // A file held individually: the tree above cannot open it.
        let held = ContextLock::file(&f).unwrap();
        let tree = ContextLock::tree(d.path()).unwrap();
        assert!(matches!(tree.enter(&f), Err(Error::ContextLocked { .. })));
        drop(held);
        let m = tree.enter(&f).unwrap();
        // Opened once through the tree: not twice, and not individually.
        assert!(matches!(tree.enter(&f), Err(Error::ContextLocked { .. })));
        assert!(matches!(
            ContextLock::file(&f),
            Err(Error::ContextLocked { .. })
        ));
        // A tree below (a device directory) is refused while the tree above is held.
        assert!(matches!(
            ContextLock::tree(&dev),
            Err(Error::ContextLocked { .. })
        ));
        drop(m);
        assert!(matches!(
            ContextLock::tree(d.path()),
            Err(Error::ContextLocked { .. })
        ));
        drop(tree);
        // A device directory locked as a tree: the parent tree cannot open its files.
        let below = ContextLock::tree(&dev).unwrap();
        let tree = ContextLock::tree(d.path()).unwrap_err();
        assert!(matches!(tree, Error::ContextLocked { .. }), "{tree}");
        drop(below);
        let tree = ContextLock::tree(d.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        assert!(tree.enter(&other.path().join("x.json")).is_err());
    }
}
