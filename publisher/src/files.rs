//! File helpers: bounded reads and atomic writes (temp file, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{CliError, Result};

/// Reads a small file (keys, envelopes), refusing anything larger than `limit`.
pub fn read_bounded(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let io = |source| CliError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > limit {
        return Err(CliError::Input(format!(
            "{} is {len} bytes, more than the {limit}-byte limit for {what}",
            path.display()
        )));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}

/// A file being written: created as `NAME.tmp-PID` beside the target, renamed into place by
/// [`AtomicFile::commit`] after fsync. Dropped without commit, it is removed.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file; `secret` makes it readable by the owner only.
    pub fn create(target: &Path, secret: bool) -> Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| CliError::Input(format!("{} is not a file path", target.display())))?;
        let tmp = target.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        let file = opts.open(&tmp).map_err(|source| CliError::Io {
            what: "cannot create",
            path: tmp.clone(),
            source,
        })?;
        Ok(Self {
            file: Some(file),
            tmp,
            target: target.to_owned(),
        })
    }

    /// Appends bytes.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.write_all(data).map_err(|source| CliError::Io {
            what: "cannot write",
            path: self.tmp.clone(),
            source,
        })
    }

    /// fsyncs and renames into place, then fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| CliError::Io { what, path, source }
        };
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(io("cannot sync", &self.tmp))?;
        }
        fs::rename(&self.tmp, &self.target).map_err(io("cannot rename into", &self.target))?;
        if let Some(dir) = self.target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole file atomically.
pub fn write_atomic(target: &Path, data: &[u8], secret: bool) -> Result<()> {
    let mut f = AtomicFile::create(target, secret)?;
    f.write_all(data)?;
    f.commit()
}

/// Creates an output directory (and parents).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| CliError::Io {
        what: "cannot create directory",
        path: dir.to_owned(),
        source,
    })
}
