//! Files that must survive a crash, and files that hold secrets.
//!
//! [`write_file_atomic`] is the one way the services replace a file: a temporary file in the
//! same directory is written and fsynced, renamed over the target, and the directory is
//! fsynced so the rename itself is durable. A crash leaves either the old or the new content,
//! never a mix. [`write_secret_file`] does the same with mode 0600.

use std::io::{Read as _, Write as _};
use std::path::Path;

use zeroize::Zeroizing;

use crate::Error;

/// Writes `data` to `path` atomically with `mode` (temp file, fsync, rename, fsync dir).
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{name}.tmp-{}",
        hex::encode(crate::random_bytes::<6>()?)
    ));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| Error::io(path, e))
}

/// Writes a secret file atomically with mode 0600.
pub fn write_secret_file(path: &Path, data: &[u8]) -> Result<(), Error> {
    write_file_atomic(path, data, 0o600)
}

/// Reads a file of at most `max` bytes (a larger file is refused before it is read whole).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::io(path, e))?;
    if out.len() as u64 > max {
        return Err(Error::Config {
            path: path.display().to_string(),
            reason: format!("larger than {max} bytes"),
        });
    }
    Ok(out)
}

/// Reads a secret file (at most 64 KiB) as trimmed text, zeroized when dropped.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(read_bounded(path, 64 * 1024)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Config {
        path: path.display().to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

/// Creates `dir` and its parents with mode 0700 (directories holding secrets).
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_file_atomic(&p, b"one", 0o644).unwrap();
        write_file_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files left behind");
    }

    #[test]
    fn secret_files_are_0600_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        write_secret_file(&p, b"  s3cret\n").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret_file(&p).unwrap().as_str(), "s3cret");
        std::fs::write(&p, vec![b'a'; 70_000]).unwrap();
        assert!(read_secret_file(&p).is_err());
        assert!(write_file_atomic(Path::new("/"), b"x", 0o644).is_err());
    }
}
