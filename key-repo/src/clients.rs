//! Registered OAuth clients, kept in a JSON file next to the configuration.
//!
//! The file holds argon2id hashes of the client secrets, never the secrets. It is a file
//! rather than a sled tree so that `key-repo clients add/remove` work while the server runs
//! (sled locks its database): writes are atomic (temp + fsync + rename) under an advisory
//! lock, and the server re-reads the file when it changes (another inode, size, or
//! modification or change time).
//!
//! A client removed or disabled here loses access at once, tokens already issued included:
//! the server checks the client of every built-in token on every request
//! ([`Registry::check_token`]), and refuses tokens issued before the client was last
//! disabled even after it is enabled again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::model::Role;

/// Longest client secret accepted at the token endpoint.
pub const MAX_SECRET_LEN: usize = 256;
/// Longest client id accepted.
pub const MAX_CLIENT_ID_LEN: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub role: Role,
    /// `VENDOR/CLASS` products (normalised); `*` for admin.
    pub products: Vec<String>,
    /// argon2id PHC string; empty for a client that authenticates with `private_key_jwt`.
    #[serde(default)]
    pub secret_hash: String,
    /// Public key for `private_key_jwt` client authentication (RFC 7523 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<foundations::token::Jwk>,
    pub created_at: u64,
    /// A disabled client gets no token, and its tokens are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Tokens issued (`iat`) at or before this time are refused: the last time the client
    /// was disabled (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens_after: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ClientRecord {
    /// Whether a token of this client issued at `iat` is still good.
    pub fn accepts_token_issued_at(&self, iat: u64) -> Result<(), &'static str> {
        if self.disabled {
            Err("client disabled")
        } else if iat <= self.tokens_after {
            Err("token issued before the client was last disabled")
        } else {
            Ok(())
        }
    }

    /// `iat` for a token issued now: after `tokens_after`, so that a client disabled and
    /// enabled again within one second gets tokens that work.
    pub fn issue_time(&self, now: u64) -> u64 {
        now.max(self.tokens_after.saturating_add(1))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    clients: Vec<ClientRecord>,
}

impl ClientsFile {
    /// Where the client with this id or name is (commands name a client either way).
    fn position(&self, id_or_name: &str) -> Result<usize, Error> {
        self.clients
            .iter()
            .position(|c| c.client_id == id_or_name || c.name == id_or_name)
            .ok_or_else(|| Error::Usage(format!("no client {id_or_name:?}")))
    }
}

/// Newly created credentials, shown once.
#[derive(Debug, Serialize)]
pub struct NewClient {
    pub client_id: String,
    /// Absent for a `private_key_jwt` client.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
}

fn read_file(path: &Path) -> Result<ClientsFile, Error> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientsFile::default()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Runs `f` on the file's contents under an exclusive lock and writes the result atomically.
fn modify<T>(
    path: &Path,
    f: impl FnOnce(&mut ClientsFile) -> Result<T, Error>,
) -> Result<T, Error> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    // File::lock is Rust 1.89; the workspace builds with 1.95 (and already relies on 1.88
    // let-chains), the declared rust-version lags behind.
    #[allow(clippy::incompatible_msrv)]
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let mut file = read_file(path)?;
    let out = f(&mut file)?;
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Corrupt(e.to_string()))?;
    foundations::fs::write_file_atomic(path, &bytes, 0o600)?;
    Ok(out)
}

/// Hashes a secret with argon2id (default parameters: 19 MiB, t=2, p=1).
pub fn hash_secret(secret: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Corrupt(format!("argon2: {e}")))
}

/// Registers a client and returns its credentials (the secret exists nowhere else).
pub fn add(path: &Path, name: &str, role: Role, products: &[String]) -> Result<NewClient, Error> {
    add_with_key(path, name, role, products, None)
}

/// Registers a client; with `jwk` it authenticates with `private_key_jwt` (no secret).
pub fn add_with_key(
    path: &Path,
    name: &str,
    role: Role,
    products: &[String],
    jwk: Option<foundations::token::Jwk>,
) -> Result<NewClient, Error> {
    if let Some(j) = &jwk
        && j.to_verifying_key().is_none()
    {
        return Err(Error::Usage(
            "--jwk-file must hold a P-256 (ES256) public JWK".into(),
        ));
    }
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Error::Usage(
            "--name must be 1 to 64 printable characters".into(),
        ));
    }
    let mut normalised = Vec::new();
    for p in products {
        let n = foundations::normalize_product(p).ok_or_else(|| {
            Error::Usage(format!("--product {p:?} is not VENDOR_UUID/CLASS_UUID"))
        })?;
        if !normalised.contains(&n) {
            normalised.push(n);
        }
    }
    match role {
        Role::Admin => normalised = vec!["*".into()],
        Role::Auditor => normalised.clear(),
        Role::Publisher | Role::Dispatcher if normalised.is_empty() => {
            return Err(Error::Usage(format!(
                "a {role} needs at least one --product VENDOR_UUID/CLASS_UUID"
            )));
        }
        _ => {}
    }
    let client_id = format!("kr-{}", hex::encode(foundations::random_bytes::<12>()?));
    let (client_secret, secret_hash) = if jwk.is_some() {
        (String::new(), String::new())
    } else {
        let secret = foundations::b64url(&foundations::random_bytes::<32>()?);
        let hash = hash_secret(&secret)?;
        (secret, hash)
    };
    let rec = ClientRecord {
        client_id: client_id.clone(),
        name: name.to_string(),
        role,
        products: normalised,
        secret_hash,
        jwk,
        created_at: foundations::now_unix(),
        disabled: false,
        tokens_after: 0,
    };
    modify(path, |f| {
        if f.clients.iter().any(|c| c.name == rec.name) {
            return Err(Error::Usage(format!(
                "a client named {name:?} already exists"
            )));
        }
        f.clients.push(rec);
        Ok(())
    })?;
    Ok(NewClient {
        client_id,
        client_secret,
    })
}

/// Removes a client by id or name. A running server refuses its tokens from its next
/// request on (the file is checked on every request).
pub fn remove(path: &Path, id_or_name: &str) -> Result<ClientRecord, Error> {
    modify(path, |f| {
        let pos = f.position(id_or_name)?;
        Ok(f.clients.remove(pos))
    })
}

/// Disables (`true`) or enables a client by id or name. Disabling refuses its tokens at
/// once, for good: tokens issued until now stay refused after it is enabled again.
pub fn set_disabled(path: &Path, id_or_name: &str, disabled: bool) -> Result<ClientRecord, Error> {
    modify(path, |f| {
        let pos = f.position(id_or_name)?;
        let c = &mut f.clients[pos];
        if disabled && !c.disabled {
            c.tokens_after = c.tokens_after.max(foundations::now_unix());
        }
        c.disabled = disabled;
        Ok(c.clone())
    })
}

pub fn list(path: &Path) -> Result<Vec<ClientRecord>, Error> {
    Ok(read_file(path)?.clients)
}

/// What tells a new version of the clients file: every write is a new file renamed over
/// the old one (another inode while both exist), and size and times are compared too.
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

#[cfg(unix)]
fn stamp(m: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

#[cfg(not(unix))]
fn stamp(m: &std::fs::Metadata) -> FileStamp {
    let t = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    (
        0,
        0,
        m.len(),
        t.as_secs() as i64,
        t.subsec_nanos() as i64,
        0,
        0,
    )
}
type ClientMap = Arc<HashMap<String, ClientRecord>>;

/// The server's view of the clients file, reloaded when the file changes.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    state: RwLock<(Option<FileStamp>, ClientMap)>,
    /// client id → SHA-256(secret ‖ hash string) of the last successful verification, so
    /// repeated token requests do not each pay for argon2. Keyed to the stored hash, so a
    /// removed or re-created client never matches.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry, Error> {
        let r = Registry {
            path: path.to_path_buf(),
            state: RwLock::new((None, Arc::new(HashMap::new()))),
            verified: Mutex::new(HashMap::new()),
        };
        r.reload_if_changed()?;
        Ok(r)
    }

    fn reload_if_changed(&self) -> Result<ClientMap, Error> {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| stamp(&m));
        {
            let st = self
                .state
                .read()
                .map_err(|_| Error::Db("lock poisoned".into()))?;
            if st.0.is_some() && st.0 == stamp {
                return Ok(st.1.clone());
            }
        }
        let file = read_file(&self.path)?;
        let map: HashMap<_, _> = file
            .clients
            .into_iter()
            .map(|c| (c.client_id.clone(), c))
            .collect();
        let map = Arc::new(map);
        let mut st = self
            .state
            .write()
            .map_err(|_| Error::Db("lock poisoned".into()))?;
        *st = (stamp, map.clone());
        Ok(map)
    }

    /// The registered client, if any (for `private_key_jwt`).
    pub fn get(&self, client_id: &str) -> Result<Option<ClientRecord>, Error> {
        if client_id.len() > MAX_CLIENT_ID_LEN {
            return Ok(None);
        }
        Ok(self.reload_if_changed()?.get(client_id).cloned())
    }

    /// Whether a token this server issued to `client_id` at `iat` may still be used: the
    /// client exists, is not disabled, and was not disabled after `iat`. Re-reads the file
    /// if it changed, so a removal or a disable takes effect from the next request on.
    pub fn check_token(&self, client_id: &str, iat: u64) -> Result<(), &'static str> {
        let map = self
            .reload_if_changed()
            .map_err(|_| "clients file unreadable")?;
        match map.get(client_id) {
            None => Err("client removed"),
            Some(c) => c.accepts_token_issued_at(iat),
        }
    }

    /// Verifies client credentials; `Ok(None)` when they are wrong or the client is unknown.
    pub async fn authenticate(
        self: &Arc<Self>,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<ClientRecord>, Error> {
        if client_id.len() > MAX_CLIENT_ID_LEN || secret.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let map = self.reload_if_changed()?;
        let Some(rec) = map
            .get(client_id)
            .filter(|r| !r.secret_hash.is_empty() && !r.disabled)
            .cloned()
        else {
            // Spend comparable time for unknown ids, so timing does not reveal which exist.
            let s = secret.to_string();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = hash_secret(&s);
            })
            .await;
            return Ok(None);
        };
        let mut h = Sha256::new();
        h.update(secret.as_bytes());
        h.update([0]);
        h.update(rec.secret_hash.as_bytes());
        let fp: [u8; 32] = h.finalize().into();
        if let Some(known) = self
            .verified
            .lock()
            .map_err(|_| Error::Db("lock poisoned".into()))?
            .get(client_id)
            && foundations::ct_eq(known, &fp)
        {
            return Ok(Some(rec));
        }
        let (hash, s) = (rec.secret_hash.clone(), secret.to_string());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|ph| Argon2::default().verify_password(s.as_bytes(), &ph).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|e| Error::Db(e.to_string()))?;
        if !ok {
            return Ok(None);
        }
        let mut v = self
            .verified
            .lock()
            .map_err(|_| Error::Db("lock poisoned".into()))?;
        if v.len() > 10_000 {
            v.clear();
        }
        v.insert(client_id.to_string(), fp);
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45";

    #[tokio::test]
    async fn add_authenticate_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        let c = add(&path, "disp", Role::Dispatcher, &[P.to_uppercase()]).unwrap();
        assert!(add(&path, "disp", Role::Dispatcher, &[P.into()]).is_err());
        assert!(add(&path, "pub", Role::Publisher, &[]).is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&c.client_secret));
        let reg = Arc::new(Registry::open(&path).unwrap());
        let rec = reg
            .authenticate(&c.client_id, &c.client_secret)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.products, vec![P.to_string()]);
        // Cached path and wrong secrets.
        assert!(
            reg.authenticate(&c.client_id, &c.client_secret)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            reg.authenticate(&c.client_id, "wrong")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            reg.authenticate("kr-nobody", &c.client_secret)
                .await
                .unwrap()
                .is_none()
        );
        // Disabled: no token, and tokens issued until now are refused for good.
        let t0 = foundations::now_unix();
        assert_eq!(reg.check_token(&c.client_id, t0), Ok(()));
        set_disabled(&path, "disp", true).unwrap();
        assert!(reg.check_token(&c.client_id, t0).is_err());
        assert!(
            reg.authenticate(&c.client_id, &c.client_secret)
                .await
                .unwrap()
                .is_none()
        );
        let rec = set_disabled(&path, "disp", false).unwrap();
        assert!(reg.check_token(&c.client_id, t0).is_err(), "old token");
        let fresh = rec.issue_time(t0);
        assert!(fresh > t0);
        assert_eq!(reg.check_token(&c.client_id, fresh), Ok(()));
        remove(&path, "disp").unwrap();
        assert_eq!(reg.check_token(&c.client_id, fresh), Err("client removed"));
        // Make sure the stamp differs even on coarse-mtime file systems: size changes.
        assert!(
            reg.authenticate(&c.client_id, &c.client_secret)
                .await
                .unwrap()
                .is_none()
        );
        assert!(list(&path).unwrap().is_empty());
    }
}
