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
    /// Issuer of the token that stored the key: with `created_by`, who owns it (may revoke
    /// it). Absent in records written before owners were kept: the built-in issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_by_issuer: Option<String>,
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

/// Who stores or owns a key: the issuer of the token and the client it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
}

/// Outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    Created(KeyMeta),
    /// The same material was already stored by the same owner (idempotent retry).
    Unchanged(KeyMeta),
    /// Different material, product or owner is stored under this kid.
    Conflict,
    /// The kid was revoked; it can never be reused.
    Revoked,
    /// The kid is held by a product the writer is not granted: answered exactly like a
    /// write for a product the writer is not granted, so it does not tell the kid exists.
    Foreign,
}

/// One read of a key's record: metadata, owner, and the sealed key if active.
#[derive(Debug)]
pub struct Loaded {
    pub meta: KeyMeta,
    /// Issuer of the owner's token (`None`: written before owners were kept).
    pub owner_issuer: Option<String>,
    pub sealed: Vec<u8>,
}

impl Loaded {
    /// Whether `who` stored this key. Records without an owner issuer were stored with
    /// a token of the built-in issuer `builtin` (fail closed for external issuers).
    pub fn owned_by(&self, who: Owner<'_>, builtin: &str) -> bool {
        let issuer = self.owner_issuer.as_deref().unwrap_or(builtin);
        issuer == who.issuer && self.meta.created_by == who.client_id
    }
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

    /// Reads a key's record once: its metadata, owner and, if active, the sealed key, for
    /// [`Store::open_sealed`] after the caller's authorisation checks.
    pub fn load(&self, kid: &str) -> Result<Option<Loaded>, Error> {
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
        Ok(Some(Loaded {
            meta: rec.meta(kid),
            owner_issuer: rec.created_by_issuer,
            sealed,
        }))
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

    /// Stores a key for `owner` and its audit record atomically, then flushes. Immutable: a
    /// different key, product or owner under an existing kid is a conflict; a kid held by
    /// a product for which `granted` is false is [`PutOutcome::Foreign`].
    pub async fn put_key(
        &self,
        kid: &str,
        product: &str,
        cose_key: &[u8],
        owner: Owner<'_>,
        granted: &(dyn Fn(&str) -> bool + Sync),
        mut event: AuditEvent,
    ) -> Result<PutOutcome, Error> {
        let now = foundations::now_unix();
        let sealed = self.master.seal(kid, product, cose_key)?;
        let rec = KeyRecord {
            product: product.to_string(),
            revoked: false,
            created_at: now,
            created_by: owner.client_id.to_string(),
            created_by_issuer: Some(owner.issuer.to_string()),
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
                    let same_owner = old.created_by == owner.client_id
                        && old.created_by_issuer.as_deref() == Some(owner.issuer);
                    if old.product != product && !granted(&old.product) {
                        // Checked before anything else about the record (revoked or not).
                        PutOutcome::Foreign
                    } else if old.revoked {
                        PutOutcome::Revoked
                    } else if old.product == product && same_owner {
                        let old_sealed = foundations::b64_decode(&old.sealed)
                            .ok_or_else(|| Error::Corrupt(format!("record {kid}")))?;
                        let old_key = self.master.open(kid, &old.product, &old_sealed)?;
                        if foundations::ct_eq(&old_key, cose_key) {
                            PutOutcome::Unchanged(old.meta(kid))
                        } else {
                            PutOutcome::Conflict
                        }
                    } else {
                        PutOutcome::Conflict
                    }
                }
            };
            event.result = match &outcome {
                PutOutcome::Created(_) => "created",
                PutOutcome::Unchanged(_) => "unchanged",
                PutOutcome::Conflict => "conflict",
                PutOutcome::Revoked => "gone",
                PutOutcome::Foreign => "denied:product_not_granted",
            }
            .into();
            if outcome == PutOutcome::Foreign {
                event.reason = Some("kid held by another product".into());
            }
            // Only a new key is written; it must still be new inside the transaction.
            let create = matches!(outcome, PutOutcome::Created(_));
            let write = create.then_some(rec_bytes.as_slice());
            self.commit(&mut head, event, kid, write, true)?;
            outcome
        };
        self.flush().await?;
        Ok(outcome)
    }

    /// Writes `record` (if any) under `kid` and the audit entry for `event` in one
    /// transaction, under the audit lock whose chain head is `head`, then advances the head.
    /// `must_be_new`: abort (nothing written) if the kid has a record by then.
    fn commit(
        &self,
        head: &mut foundations::audit::Head,
        event: AuditEvent,
        kid: &str,
        record: Option<&[u8]>,
        must_be_new: bool,
    ) -> Result<(), Error> {
        let p = self.audit.prepare(head, event)?;
        (&self.keys, self.audit.tree())
            .transaction(|(keys, audit)| {
                if let Some(b) = record {
                    if must_be_new && keys.get(kid.as_bytes())?.is_some() {
                        return Err(ConflictableTransactionError::Abort(Error::Db(
                            "concurrent write".into(),
                        )));
                    }
                    keys.insert(kid.as_bytes(), b)?;
                }
                audit.insert(&p.key, p.value.as_slice())?;
                Ok(())
            })
            .map_err(txn_err)?;
        *head = p.head;
        Ok(())
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
            self.commit(&mut head, event, kid, new_bytes.as_deref(), false)?;
            outcome
        };
        self.flush().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
