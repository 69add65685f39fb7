//! Key storage in sled: keys sealed under the master key, every change in one transaction
//! with its audit record, flushed to disk before the change is acknowledged.

use serde::{Deserialize, Serialize};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use zeroize::Zeroizing;

use crate::Error;
use crate::crypto::MasterKey;
use crate::model::KeyMeta;
use foundations::audit::{AuditEvent, AuditLog};

/// What is stored under a kid. `sealed` is nonce ‖ AES-256-GCM(key) with kid and product as
/// associated data: without the master key the database holds no key material.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    product: String,
    revoked: bool,
    created_at: u64,
    created_by: String,
    #[serde(default)]
    revoked_at: Option<u64>,
    #[serde(default)]
    revoked_by: Option<String>,
    sealed: String,
}

impl KeyRecord {
    fn meta(&self, kid: &str) -> KeyMeta {
        KeyMeta {
            kid: kid.to_string(),
            product: self.product.clone(),
            state: if self.revoked { "revoked" } else { "active" }.into(),
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            revoked_at: self.revoked_at,
            revoked_by: self.revoked_by.clone(),
        }
    }
}

/// Outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    Created(KeyMeta),
    /// The same material was already stored (idempotent retry).
    Unchanged(KeyMeta),
    /// Different material (or product) is stored under this kid.
    Conflict,
    /// The kid was revoked; it can never be reused.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeOutcome {
    Revoked(KeyMeta),
    AlreadyRevoked,
    NotFound,
}

/// Decrypted key material, wiped on drop.
pub type SecretBytes = Zeroizing<Vec<u8>>;

#[derive(Debug)]
pub struct Store {
    db: sled::Db,
    keys: sled::Tree,
    audit: std::sync::Arc<AuditLog>,
    master: MasterKey,
}

fn txn_err(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn decode_record(kid: &str, v: &[u8]) -> Result<KeyRecord, Error> {
    serde_json::from_slice(v).map_err(|e| Error::Corrupt(format!("record {kid}: {e}")))
}

impl Store {
    pub fn open(dir: &std::path::Path, master: MasterKey) -> Result<Store, Error> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|e| {
                Error::Db(format!(
                    "cannot open database {} ({e}); is another key-repo process using it?",
                    dir.display()
                ))
            })?;
        Self::with_db(db, master)
    }

    pub fn with_db(db: sled::Db, master: MasterKey) -> Result<Store, Error> {
        let keys = db.open_tree("keys")?;
        let audit = std::sync::Arc::new(AuditLog::open(&db, master.audit_mac_key())?);
        Ok(Store {
            db,
            keys,
            audit,
            master,
        })
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Starts the batched audit writer (call inside a tokio runtime).
    pub fn start_background(&self) {
        self.audit.start_writer();
    }

    /// Reads a key's record once: its metadata and, if active, the sealed key, for
    /// [`Store::open_sealed`] after the caller's authorisation checks.
    pub fn load(&self, kid: &str) -> Result<Option<(KeyMeta, Vec<u8>)>, Error> {
        let Some(v) = self.keys.get(kid.as_bytes())? else {
            return Ok(None);
        };
        let rec = decode_record(kid, &v)?;
        let sealed = if rec.revoked {
            Vec::new()
        } else {
            foundations::b64_decode(&rec.sealed)
                .ok_or_else(|| Error::Corrupt(format!("record {kid}: sealed encoding")))?
        };
        Ok(Some((rec.meta(kid), sealed)))
    }

    /// Decrypts a sealed key returned by [`Store::load`] (never for a revoked key).
    pub fn open_sealed(&self, meta: &KeyMeta, sealed: &[u8]) -> Result<SecretBytes, Error> {
        if meta.state != "active" {
            return Err(Error::Corrupt(format!("key {} is revoked", meta.kid)));
        }
        self.master.open(&meta.kid, &meta.product, sealed)
    }

    /// Waits until everything written so far is on disk.
    pub async fn flush(&self) -> Result<(), Error> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Product and state of a key (no decryption), for authorisation decisions.
    pub fn meta(&self, kid: &str) -> Result<Option<KeyMeta>, Error> {
        match self.keys.get(kid.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_record(kid, &v)?.meta(kid))),
        }
    }

    /// Decrypts the key; `None` if absent. Callers check revocation via [`Store::meta`]
    /// first; this re-checks so a revoked key is never returned.
    pub fn read_key(&self, kid: &str) -> Result<Option<(KeyMeta, SecretBytes)>, Error> {
        let Some(v) = self.keys.get(kid.as_bytes())? else {
            return Ok(None);
        };
        let rec = decode_record(kid, &v)?;
        if rec.revoked {
            return Ok(None);
        }
        let sealed = foundations::b64_decode(&rec.sealed)
            .ok_or_else(|| Error::Corrupt(format!("record {kid}: sealed encoding")))?;
        let key = self.master.open(kid, &rec.product, &sealed)?;
        Ok(Some((rec.meta(kid), key)))
    }

    /// Stores a key and its audit record atomically, then flushes. Immutable: a different
    /// key under an existing kid is a conflict.
    pub async fn put_key(
        &self,
        kid: &str,
        product: &str,
        cose_key: &[u8],
        mut event: AuditEvent,
    ) -> Result<PutOutcome, Error> {
        let now = foundations::now_unix();
        let sealed = self.master.seal(kid, product, cose_key)?;
        let rec = KeyRecord {
            product: product.to_string(),
            revoked: false,
            created_at: now,
            created_by: event.actor.clone(),
            revoked_at: None,
            revoked_by: None,
            sealed: foundations::b64(&sealed),
        };
        let rec_bytes = serde_json::to_vec(&rec).map_err(|e| Error::Corrupt(e.to_string()))?;
        let outcome = {
            let mut head = self.audit.lock()?;
            self.audit.drain_locked(&mut head)?;
            // Decide the outcome from the current record (under the audit lock, which
            // serialises all writers), then write record + audit entry in one transaction.
            let outcome = match self.keys.get(kid.as_bytes())? {
                None => PutOutcome::Created(rec.meta(kid)),
                Some(v) => {
                    let old = decode_record(kid, &v)?;
                    if old.revoked {
                        PutOutcome::Revoked
                    } else {
                        let same_product = old.product == product;
                        let old_sealed = foundations::b64_decode(&old.sealed)
                            .ok_or_else(|| Error::Corrupt(format!("record {kid}")))?;
                        let old_key = self.master.open(kid, &old.product, &old_sealed)?;
                        if same_product && foundations::ct_eq(&old_key, cose_key) {
                            PutOutcome::Unchanged(old.meta(kid))
                        } else {
                            PutOutcome::Conflict
                        }
                    }
                }
            };
            event.result = match &outcome {
                PutOutcome::Created(_) => "created",
                PutOutcome::Unchanged(_) => "unchanged",
                PutOutcome::Conflict => "conflict",
                PutOutcome::Revoked => "gone",
            }
            .into();
            let p = self.audit.prepare(&head, event)?;
            let create = matches!(outcome, PutOutcome::Created(_));
            (&self.keys, self.audit.tree())
                .transaction(|(keys, audit)| {
                    if create {
                        if keys.get(kid.as_bytes())?.is_some() {
                            return Err(ConflictableTransactionError::Abort(Error::Db(
                                "concurrent write".into(),
                            )));
                        }
                        keys.insert(kid.as_bytes(), rec_bytes.as_slice())?;
                    }
                    audit.insert(&p.key, p.value.as_slice())?;
                    Ok(())
                })
                .map_err(txn_err)?;
            *head = p.head;
            outcome
        };
        self.flush().await?;
        Ok(outcome)
    }

    /// Marks a key revoked (for good) together with its audit record, then flushes.
    pub async fn revoke(&self, kid: &str, mut event: AuditEvent) -> Result<RevokeOutcome, Error> {
        let outcome = {
            let mut head = self.audit.lock()?;
            self.audit.drain_locked(&mut head)?;
            let (outcome, new_bytes) = match self.keys.get(kid.as_bytes())? {
                None => (RevokeOutcome::NotFound, None),
                Some(v) => {
                    let mut rec = decode_record(kid, &v)?;
                    if rec.revoked {
                        (RevokeOutcome::AlreadyRevoked, None)
                    } else {
                        rec.revoked = true;
                        rec.revoked_at = Some(foundations::now_unix());
                        rec.revoked_by = Some(event.actor.clone());
                        // Off-spec hardening: drop the ciphertext too, so a revoked key cannot
                        // be recovered from the database even with the master key.
                        rec.sealed = String::new();
                        let b =
                            serde_json::to_vec(&rec).map_err(|e| Error::Corrupt(e.to_string()))?;
                        (RevokeOutcome::Revoked(rec.meta(kid)), Some(b))
                    }
                }
            };
            event.product = match &outcome {
                RevokeOutcome::Revoked(m) => Some(m.product.clone()),
                _ => event.product,
            };
            event.result = match &outcome {
                RevokeOutcome::Revoked(_) => "ok",
                RevokeOutcome::AlreadyRevoked => "gone",
                RevokeOutcome::NotFound => "not_found",
            }
            .into();
            let p = self.audit.prepare(&head, event)?;
            (&self.keys, self.audit.tree())
                .transaction(|(keys, audit)| {
                    if let Some(b) = &new_bytes {
                        keys.insert(kid.as_bytes(), b.as_slice())?;
                    }
                    audit.insert(&p.key, p.value.as_slice())?;
                    Ok(())
                })
                .map_err(txn_err)?;
            *head = p.head;
            outcome
        };
        self.flush().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(actor: &str) -> AuditEvent {
        AuditEvent {
            actor: actor.into(),
            action: "key.create".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn lifecycle_and_no_plaintext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let key_material = b"\xa3\x01\x04\x02\x45kid-1\x20\x50SIXTEEN-BYTE-KEY";
        {
            let store = Store::open(dir.path(), MasterKey::from_bytes([3; 32])).unwrap();
            let out = store
                .put_key("k1", "p", key_material, ev("pub"))
                .await
                .unwrap();
            assert!(matches!(out, PutOutcome::Created(_)));
            let again = store
                .put_key("k1", "p", key_material, ev("pub"))
                .await
                .unwrap();
            assert!(matches!(again, PutOutcome::Unchanged(_)));
            let other = store.put_key("k1", "p", b"other", ev("pub")).await.unwrap();
            assert_eq!(other, PutOutcome::Conflict);
            let other_product = store
                .put_key("k1", "q", key_material, ev("pub"))
                .await
                .unwrap();
            assert_eq!(other_product, PutOutcome::Conflict);
            let (m, k) = store.read_key("k1").unwrap().unwrap();
            assert_eq!(&k[..], key_material);
            assert_eq!(m.state, "active");
        }
        // Raw database files never contain the key.
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if entry.path().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert!(!bytes.windows(16).any(|w| w == b"SIXTEEN-BYTE-KEY"));
            }
        }
        // Wrong master key: the record is there, the key cannot be opened.
        // sled's flusher thread (flush_every_ms) can hold the file lock for up to one
        // interval after the store is dropped: wait for it instead of racing it.
        let db = (0..100)
            .find_map(|_| {
                sled::open(dir.path())
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .expect("the database lock is released after the store is dropped");
        let raw = db.open_tree("keys").unwrap().get(b"k1").unwrap().unwrap();
        let rec = decode_record("k1", &raw).unwrap();
        let sealed = foundations::b64_decode(&rec.sealed).unwrap();
        assert!(
            MasterKey::from_bytes([4; 32])
                .open("k1", "p", &sealed)
                .is_err()
        );
        assert!(
            MasterKey::from_bytes([3; 32])
                .open("k1", "p", &sealed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn revoke_is_final() {
        let store = Store::with_db(
            sled::Config::new().temporary(true).open().unwrap(),
            MasterKey::from_bytes([1; 32]),
        )
        .unwrap();
        store.put_key("k", "p", b"x", ev("pub")).await.unwrap();
        assert!(matches!(
            store.revoke("k", ev("pub")).await.unwrap(),
            RevokeOutcome::Revoked(_)
        ));
        assert_eq!(
            store.revoke("k", ev("pub")).await.unwrap(),
            RevokeOutcome::AlreadyRevoked
        );
        assert_eq!(
            store.revoke("nope", ev("pub")).await.unwrap(),
            RevokeOutcome::NotFound
        );
        assert!(store.read_key("k").unwrap().is_none());
        assert_eq!(store.meta("k").unwrap().unwrap().state, "revoked");
        assert_eq!(
            store.put_key("k", "p", b"x", ev("pub")).await.unwrap(),
            PutOutcome::Revoked
        );
        let key = MasterKey::from_bytes([1; 32]).audit_mac_key();
        assert_eq!(
            foundations::audit::verify(store.audit().tree(), &key)
                .unwrap()
                .records,
            5
        );
    }
}
