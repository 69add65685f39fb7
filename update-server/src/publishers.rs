//! Registered publisher keys: which P-256 key (by kid) may publish for which vendor-ids.
//!
//! Kept in a JSON file (`publishers_file`) so that `update-server publishers add|revoke`
//! work while the server runs (sled allows one process): the file is rewritten atomically
//! and the server re-reads it when its modification time or size changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;
use crate::util::{now_unix, write_file_atomic};

/// One publisher key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// The kid in the protected header of the publisher's COSE_Sign1.
    pub kid: String,
    /// SPKI PEM of the P-256 key.
    pub public_key: String,
    /// Vendor-ids this key may publish for (at least one).
    pub vendors: Vec<Uuid>,
    /// `manufacturer` (T1, T2, T3) or `third-party` (T1 only), as in DESIGN.md §4.
    pub role: String,
    pub added_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    publishers: Vec<Publisher>,
}

/// Largest publishers file read.
const MAX_FILE: u64 = 16 << 20;

fn read(path: &Path) -> Result<File, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > MAX_FILE {
        return Err(Error::Config {
            path: path.display().to_string(),
            reason: "publishers file too large".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn write(path: &Path, f: &File) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(f).map_err(|e| Error::Usage(e.to_string()))?;
    write_file_atomic(path, &text, 0o644)
}

fn anchor(p: &Publisher) -> Result<suit::TrustAnchor, String> {
    let key = suit::PublicKey::from_pem(&p.public_key)
        .map_err(|e| format!("publisher {}: {e}", p.kid))?
        .with_kid(p.kid.as_bytes().to_vec());
    let role = match p.role.as_str() {
        "manufacturer" => suit::Role::Manufacturer,
        "third-party" => suit::Role::ThirdParty,
        other => return Err(format!("publisher {}: unknown role {other:?}", p.kid)),
    };
    if p.vendors.is_empty() {
        return Err(format!("publisher {}: no vendor-ids", p.kid));
    }
    Ok(suit::TrustAnchor::new(key, role).for_vendors(p.vendors.iter().copied()))
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
        write(path, &File::default())
    }

    pub fn open(path: &Path) -> Result<Registry, Error> {
        let r = Registry {
            path: path.to_owned(),
            cached: Mutex::new((None, Arc::new(suit::TrustStore::new()))),
        };
        r.trust_store()?;
        Ok(r)
    }

    /// The trust store of the active (not revoked) publisher keys.
    pub fn trust_store(&self) -> Result<Arc<suit::TrustStore>, Error> {
        let meta = std::fs::metadata(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut c = self
            .cached
            .lock()
            .map_err(|_| Error::Db("publisher cache poisoned".into()))?;
        if c.0 == Some(stamp) {
            return Ok(c.1.clone());
        }
        let f = read(&self.path)?;
        let mut ts = suit::TrustStore::new();
        for p in f.publishers.iter().filter(|p| p.revoked_at.is_none()) {
            match anchor(p) {
                Ok(a) => {
                    ts.add(a);
                }
                Err(e) => tracing::warn!(error = %e, "skipping unusable publisher key"),
            }
        }
        let ts = Arc::new(ts);
        *c = (Some(stamp), ts.clone());
        tracing::info!(path = %self.path.display(), keys = ts.anchors().len(), "publisher keys loaded");
        Ok(ts)
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
    if kid.is_empty() || kid.len() > 128 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(
            "--kid must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    if vendors.is_empty() {
        return Err(Error::Usage("at least one --vendor-id is required".into()));
    }
    let p = Publisher {
        kid: kid.to_owned(),
        public_key: public_key_pem.trim().to_owned() + "\n",
        vendors: vendors.to_vec(),
        role: role.to_owned(),
        added_at: now_unix(),
        revoked_at: None,
    };
    anchor(&p).map_err(Error::Usage)?;
    let mut f = read(path)?;
    if f.publishers.iter().any(|x| x.kid == kid) {
        return Err(Error::Usage(format!(
            "kid {kid} is already registered (revoked kids cannot be reused)"
        )));
    }
    f.publishers.push(p.clone());
    write(path, &f)?;
    Ok(p)
}

/// `publishers list`.
pub fn list(path: &Path) -> Result<Vec<Publisher>, Error> {
    Ok(read(path)?.publishers)
}

/// `publishers revoke`: the key can no longer publish; its kid cannot be reused.
pub fn revoke(path: &Path, kid: &str) -> Result<Publisher, Error> {
    let mut f = read(path)?;
    let p = f
        .publishers
        .iter_mut()
        .find(|p| p.kid == kid)
        .ok_or_else(|| Error::Usage(format!("no publisher with kid {kid}")))?;
    if p.revoked_at.is_none() {
        p.revoked_at = Some(now_unix());
    }
    let out = p.clone();
    write(path, &f)?;
    Ok(out)
}
