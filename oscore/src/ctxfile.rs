//! The JSON security context file of the examples, the dispatcher and the devices:
//! `{"master_secret_hex", "master_salt_hex"?, "sender_id_hex", "recipient_id_hex",
//! "id_context_hex"?}` (mode 0600), with two files beside it:
//!
//! * `FILE.seq`, the persistent sender sequence state (RFC 8613 Appendix B.1.1,
//!   `{"sender_seq_limit": N}`, see [`crate::seq`]). [`create`] writes it together with the
//!   context, so every context on disk has one: a context file whose state is missing is
//!   refused ([`Error::StateMissing`]) rather than started at sequence number 0, which would
//!   reuse nonces if the context had been used.
//! * `FILE.lock` (or a tree lock above it), held while a process uses the context
//!   ([`crate::lock`]): a second process gets [`Error::ContextLocked`].
//!
//! Every context opened from a file starts with a *lost* replay window (nothing on disk can
//! prove which requests it accepted before), so the first request of each peer after a start,
//! whatever ended the previous process, goes through the Echo exchange of RFC 8613 Appendix
//! B.1.2 before it is acted on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::context::{ContextParams, SecurityContext};
use crate::error::{Error, Result};
use crate::lock::{ContextLock, Hold};
use crate::seq::{DEFAULT_STEP, FileSeqStore};

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    master_secret_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    master_salt_hex: Option<String>,
    sender_id_hex: String,
    recipient_id_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_context_hex: Option<String>,
}

impl Drop for ContextFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.master_secret_hex.zeroize();
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::ContextFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a context file (does not print or log the secret). No lock, no sequence state: for
/// checking a file; use [`open`] to use it.
pub fn load_params(path: &Path) -> Result<ContextParams> {
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| bad(path, e.to_string()))?);
    let f: ContextFile = serde_json::from_slice(&text)
        .map_err(|e| bad(path, format!("invalid JSON ({})", e.classify_string())))?;
    let h =
        |name: &str, v: &str| hex::decode(v).map_err(|_| bad(path, format!("{name} is not hex")));
    let secret = Zeroizing::new(h("master_secret_hex", &f.master_secret_hex)?);
    if secret.is_empty() {
        return Err(bad(path, "master_secret_hex is empty"));
    }
    Ok(ContextParams {
        master_secret: secret,
        master_salt: f
            .master_salt_hex
            .as_deref()
            .map(|s| h("master_salt_hex", s))
            .transpose()?
            .unwrap_or_default(),
        id_context: f
            .id_context_hex
            .as_deref()
            .map(|s| h("id_context_hex", s))
            .transpose()?,
        sender_id: h("sender_id_hex", &f.sender_id_hex)?,
        recipient_id: h("recipient_id_hex", &f.recipient_id_hex)?,
    })
}

trait Classify {
    fn classify_string(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    // The serde message may quote input; keep only the category so no secret is echoed.
    fn classify_string(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or unknown field, or wrong type",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// `FILE.seq`.
pub fn seq_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".seq");
    PathBuf::from(s)
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates a context file for `params` (mode 0600) and its sequence state (next number 0),
/// both durably (temporary file, fsync, rename or link, fsync of the directory). Refuses to
/// replace an existing context file ([`Error::ContextFile`]): its state would be reset. This
/// is what provisioning and enrolment call; the context is then used with [`open`].
///
/// Order: the state is written first (only while no context file exists), then the context
/// file appears atomically. A crash in between leaves a state without a context, which the
/// next `create` overwrites; never a context without its state.
pub fn create(path: &Path, params: &ContextParams) -> Result<()> {
    // Checked before anything is written (RFC 8613 §3.3 limits; equal ids).
    crate::context::derive_keys(params)?;
    if path.exists() {
        return Err(bad(
            path,
            "exists; refusing to replace a context and reset its state",
        ));
    }
    FileSeqStore::init(&seq_path(path)).map_err(|e| bad(path, format!("sequence state: {e}")))?;
    let file = ContextFile {
        master_secret_hex: hex::encode(&*params.master_secret),
        master_salt_hex: (!params.master_salt.is_empty()).then(|| hex::encode(&params.master_salt)),
        sender_id_hex: hex::encode(&params.sender_id),
        recipient_id_hex: hex::encode(&params.recipient_id),
        id_context_hex: params.id_context.as_ref().map(hex::encode),
    };
    let json =
        Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| bad(path, e.to_string()))?);
    let dir = dir_of(path);
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".new");
    let tmp = dir.join(tmp_name);
    let io = |what: &str, e: std::io::Error| bad(path, format!("{what}: {e}"));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("cannot create", e))?;
        f.write_all(&json).map_err(|e| io("cannot write", e))?;
        f.sync_all().map_err(|e| io("cannot sync", e))?;
    }
    // A hard link appears atomically and fails if the name exists (create-new semantics).
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| io("cannot create", e))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        d.sync_all()
            .map_err(|e| io("cannot sync the directory", e))?;
    }
    Ok(())
}

/// Writes the initial sequence state of an existing context file that was never used
/// (migration of a file made by hand or by an older version). Refuses when a state exists.
/// Only for contexts whose sender sequence numbers were never used: otherwise the numbers
/// would be used again, i.e. nonces reused.
pub fn init_state(path: &Path) -> Result<()> {
    load_params(path)?;
    let seq = seq_path(path);
    if seq.exists() {
        return Err(bad(
            &seq,
            "exists; the sequence state of a context is never reset",
        ));
    }
    FileSeqStore::init(&seq).map_err(|e| bad(&seq, e.to_string()))
}

fn open_with(
    path: &Path,
    params: &ContextParams,
    hold: Hold,
    step: u64,
) -> Result<SecurityContext> {
    let seq = seq_path(path);
    if !seq.exists() {
        return Err(Error::StateMissing {
            path: seq.display().to_string(),
        });
    }
    let store = FileSeqStore::with_step(&seq, step).holding(hold);
    SecurityContext::new(params, Box::new(store))
}

/// Opens a context file for use by this process: takes its lock (`FILE.lock`,
/// [`Error::ContextLocked`] when another holder has it), reads it and its sequence state
/// ([`Error::StateMissing`] without one). The lock is held as long as the context lives.
/// The replay window starts lost (see the module documentation).
pub fn open(path: &Path) -> Result<SecurityContext> {
    open_with_step(path, DEFAULT_STEP)
}

/// As [`open`], persisting the sequence number `step` numbers ahead (Appendix B.1.1's K;
/// [`DEFAULT_STEP`] otherwise). A smaller step writes more often and skips fewer numbers
/// after a crash.
pub fn open_with_step(path: &Path, step: u64) -> Result<SecurityContext> {
    let params = load_params(path)?;
    let lock = ContextLock::file(path)?;
    open_with(path, &params, Hold::File(lock), step)
}

/// As [`open`], for a context file below the directory of the tree lock `tree` (one lock for
/// many contexts: a dispatcher's devices, a fleet of devices).
pub fn open_in(tree: &Arc<ContextLock>, path: &Path) -> Result<SecurityContext> {
    let params = load_params(path)?;
    let member = tree.enter(path)?;
    open_with(path, &params, Hold::Tree(member), DEFAULT_STEP)
}

/// Former name of [`open`].
pub fn load(path: &Path) -> Result<SecurityContext> {
    open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn params() -> ContextParams {
        ContextParams {
            master_secret: Zeroizing::new(vec![9; 16]),
            master_salt: vec![1, 2],
            id_context: None,
            sender_id: vec![1],
            recipient_id: vec![],
        }
    }

    #[test]
    fn create_open_lock_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.json");
        create(&f, &params()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the master secret is owner-only");
        }
        assert_eq!(load_params(&f).unwrap().master_salt, vec![1, 2]);
        assert!(create(&f, &params()).is_err(), "never replaced");
        let c = open(&f).unwrap();
        assert_eq!(c.next_seq(), 0);
        assert_eq!(*c.replay_window(), crate::replay::ReplayWindow::Lost);
        assert!(matches!(open(&f), Err(Error::ContextLocked { .. })));
        drop(c);
        open(&f).unwrap();
        // No state: refused, and init_state only for a file without one.
        std::fs::remove_file(seq_path(&f)).unwrap();
        assert!(matches!(open(&f), Err(Error::StateMissing { .. })));
        init_state(&f).unwrap();
        assert!(init_state(&f).is_err());
        open(&f).unwrap();
        // Temporary files are not left behind.
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c.json", "c.json.lock", "c.json.seq"]);
    }
}
