//! Registered publisher keys: which P-256 key (by kid) may publish for which vendor-ids.
//!
//! Kept in the project's one trust-store format (`docs/trust-store.md`, `suit::TrustFile`),
//! so the same file could be handed to a dispatcher or `publisher verify`. `update-server
//! publishers add|revoke` edit it while the server runs (sled allows one process): the file
//! is rewritten atomically and the server re-reads it when its modification time or size
//! changes. A file with any invalid entry is refused whole, never half-loaded: at start the
//! server does not start; while running the previous store stays in force and the error is
//! logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use suit::trust::{KeyEntry, Timestamp, TrustFile};
use uuid::Uuid;

use crate::Error;
use crate::util::{now_unix, write_file_atomic};

/// One publisher key, as `publishers list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publisher {
    /// The kid in the protected header of the publisher's COSE_Sign1.
    pub kid: String,
    /// SPKI PEM of the P-256 key.
    pub public_key: String,
    /// Vendor-ids this key may publish for.
    pub vendors: Vec<String>,
    /// `manufacturer` (T1, T2, T3), `third-party` or `internal` (T1 only), DESIGN.md §4.
    pub role: String,
    /// When it was added (Unix seconds).
    pub added_at: Option<u64>,
    /// When it was revoked (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl From<&KeyEntry> for Publisher {
    fn from(e: &KeyEntry) -> Self {
        Publisher {
            kid: e.kid.clone(),
            public_key: e.public_key.clone().unwrap_or_default(),
            vendors: e.vendors.clone().unwrap_or_default(),
            role: e.role.clone(),
            added_at: e.added_at.map(|t| t.0),
            revoked_at: e.revoked_at.map(|t| t.0).or(e.revoked.then_some(0)),
        }
    }
}

/// Largest publishers file read.
const MAX_FILE: u64 = suit::trust::MAX_TRUST_FILE as u64;

fn config_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    foundations::Error::Config {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
    .into()
}

fn read(path: &Path) -> Result<TrustFile, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_FILE {
        return Err(config_err(path, "publishers file too large"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    TrustFile::parse(&text).map_err(|e| config_err(path, e))
}

fn write(path: &Path, f: &TrustFile) -> Result<(), Error> {
    let text = format!(
        "# Publisher keys of this update server (docs/trust-store.md).\n\
         # Edited by `update-server publishers add|revoke`; any invalid entry refuses the file.\n\n{}",
        f.to_toml()
    );
    write_file_atomic(path, text.as_bytes(), 0o644)
}

/// The trust store of a file: every entry valid, or an error naming the entry. Key files
/// are not followed (the file must be self-contained). Besides publisher keys it may hold
/// T3 author keys (their signatures are then checked) and approval keys (an envelope
/// carrying a known dispatcher's approval is refused as such, never stored).
fn store(path: &Path, f: &TrustFile) -> Result<suit::TrustStore, Error> {
    f.to_store(&mut suit::trust::no_key_files)
        .map_err(|e| config_err(path, e))
}

/// Modification time and size of the file when it was last read.
type Stamp = Option<(SystemTime, u64)>;

/// The server's view of the file, reloaded when it changes.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    cached: Mutex<(Stamp, Arc<suit::TrustStore>)>,
}

impl Registry {
    pub fn create_empty(path: &Path) -> Result<(), Error> {
        write(path, &TrustFile::default())
    }

    /// Opens the file; refuses to start on an invalid one.
    pub fn open(path: &Path) -> Result<Registry, Error> {
        let f = read(path)?;
        let ts = store(path, &f)?;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        Ok(Registry {
            path: path.to_owned(),
            cached: Mutex::new((Some(stamp), Arc::new(ts))),
        })
    }

    /// The trust store of the registered publisher keys (revoked ones included: acceptance
    /// refuses their signatures as `signer-revoked`).
    pub fn trust_store(&self) -> Result<Arc<suit::TrustStore>, Error> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut c = self
            .cached
            .lock()
            .map_err(|_| Error::db("publisher cache poisoned"))?;
        if c.0 == Some(stamp) {
            return Ok(c.1.clone());
        }
        match read(&self.path).and_then(|f| store(&self.path, &f)) {
            Ok(ts) => {
                let ts = Arc::new(ts);
                *c = (Some(stamp), ts.clone());
                tracing::info!(path = %self.path.display(), keys = ts.anchors().len(), "publisher keys loaded");
                Ok(ts)
            }
            Err(e) => {
                // Keep the store in force; do not retry until the file changes again.
                c.0 = Some(stamp);
                tracing::error!(error = %e, "publishers file refused; the previous keys stay in force");
                Ok(c.1.clone())
            }
        }
    }
}

/// `publishers add`.
pub fn add(
    path: &Path,
    kid: &str,
    public_key_pem: &str,
    vendors: &[Uuid],
    role: &str,
) -> Result<Publisher, Error> {
    let role = suit::Role::parse(role).ok_or_else(|| {
        Error::usage(format!(
            "--role {role:?} must be manufacturer, third-party, internal, author or approver"
        ))
    })?;
    if vendors.is_empty() && role.is_publisher() {
        return Err(Error::usage("at least one --vendor-id is required"));
    }
    let entry = KeyEntry {
        vendors: (!vendors.is_empty()).then(|| vendors.iter().map(Uuid::to_string).collect()),
        added_at: Some(Timestamp(now_unix())),
        ..KeyEntry::new(kid, role, public_key_pem)
    };
    entry
        .anchor(&mut suit::trust::no_key_files)
        .map_err(|e| Error::usage(format!("key {kid}: {e}")))?;
    let mut f = read(path)?;
    if f.key(kid).is_some() {
        return Err(Error::usage(format!(
            "kid {kid} is already registered (revoked kids cannot be reused)"
        )));
    }
    f.keys.push(entry.clone());
    write(path, &f)?;
    Ok(Publisher::from(&entry))
}

/// `publishers list`.
pub fn list(path: &Path) -> Result<Vec<Publisher>, Error> {
    Ok(read(path)?.keys.iter().map(Publisher::from).collect())
}

/// `publishers revoke`: the key can no longer publish; its kid cannot be reused.
pub fn revoke(path: &Path, kid: &str) -> Result<Publisher, Error> {
    let mut f = read(path)?;
    let p = f
        .keys
        .iter_mut()
        .find(|p| p.kid == kid)
        .ok_or_else(|| Error::usage(format!("no publisher with kid {kid}")))?;
    if !p.is_revoked() {
        p.revoked_at = Some(Timestamp(now_unix()));
    }
    let out = Publisher::from(&*p);
    write(path, &f)?;
    Ok(out)
}
