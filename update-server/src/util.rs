//! The helpers this crate's files use, from `foundations` (kept as paths so the
//! release-acceptance files need no change).

use std::path::Path;

use crate::Error;

pub use foundations::now_unix;

/// `foundations::fs::write_file_atomic` (temp file, fsync, rename, fsync dir) with this
/// crate's error type.
pub fn write_file_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    Ok(foundations::fs::write_file_atomic(path, data, mode)?)
}
