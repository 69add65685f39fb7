//! A file-serving handler (the example server and the tests): GET serves files below a
//! directory, PUT stores them atomically. Paths are restricted to plain segments.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::endpoint::{Handler, Reply, Request};
use crate::message::code;

/// Cached file: modification time, length, content.
type Cached = (SystemTime, u64, Arc<Vec<u8>>);

/// Serves and stores files under a directory.
#[derive(Debug)]
pub struct FileHandler {
    root: PathBuf,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl FileHandler {
    /// Handler for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileHandler {
            root: root.into(),
            cache: Mutex::default(),
        }
    }

    /// Maps a request path to a file; refuses anything but plain segments (no "..", no
    /// hidden files, no separators inside segments).
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let mut p = self.root.clone();
        let mut any = false;
        for seg in path.split('/') {
            let ok = !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return None;
            }
            p.push(seg);
            any = true;
        }
        any.then_some(p)
    }

    fn read(&self, file: &Path) -> std::io::Result<Arc<Vec<u8>>> {
        let meta = std::fs::metadata(file)?;
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Ok(c) = self.cache.lock()
            && let Some((t, len, data)) = c.get(file)
            && *t == mtime
            && *len == meta.len()
        {
            return Ok(data.clone());
        }
        let data = Arc::new(std::fs::read(file)?);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 256 {
                c.clear();
            }
            c.insert(file.to_path_buf(), (mtime, meta.len(), data.clone()));
        }
        Ok(data)
    }

    fn write(&self, file: &Path, body: &[u8]) -> std::io::Result<bool> {
        let existed = file.exists();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = file.as_os_str().to_os_string();
        tmp.push(".part");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)?;
        if let Ok(mut c) = self.cache.lock() {
            c.remove(file);
        }
        Ok(existed)
    }
}

impl Handler for FileHandler {
    fn handle(&self, req: &Request) -> Reply {
        let Some(file) = self.resolve(&req.path) else {
            return Reply::new(code::NOT_FOUND, "no such resource");
        };
        match req.method {
            code::GET => match self.read(&file) {
                Ok(data) => Reply {
                    code: code::CONTENT,
                    payload: data,
                    content_format: None,
                    options: Vec::new(),
                },
                Err(_) => Reply::new(code::NOT_FOUND, "not found"),
            },
            code::PUT => match self.write(&file, &req.payload) {
                Ok(true) => Reply::new(code::CHANGED, Vec::new()),
                Ok(false) => Reply::new(code::CREATED, Vec::new()),
                Err(e) => {
                    tracing::warn!("storing {}: {e}", file.display());
                    Reply::new(code::INTERNAL_SERVER_ERROR, "cannot store")
                }
            },
            _ => Reply::new(code::METHOD_NOT_ALLOWED, "GET and PUT only"),
        }
    }
}
