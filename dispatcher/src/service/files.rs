//! The release files: the canonical envelope, blob and key as stored at intake, and the
//! approved envelope, signed at approval time and accepted again before every push batch.

use super::*;

impl Dispatcher {
    /// The shared files of a release (loaded from disk once).
    pub fn artifacts(&self, rid: &str) -> Result<Arc<Artifacts>, Error> {
        if let Some(a) = self
            .artifacts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .get(rid)
        {
            return Ok(a.clone());
        }
        let r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let dir = self.store.release_dir(rid);
        let read = |n: &str| std::fs::read(dir.join(n)).map_err(|e| Error::io(dir.join(n), e));
        let a = Arc::new(Artifacts {
            approved: Arc::new(read("approved.suit")?),
            key: Arc::new(read("key.cbor")?),
            blob: Arc::new(read("blob.enc")?),
            sequence: r.sequence,
        });
        self.artifacts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .insert(rid.to_owned(), a.clone());
        Ok(a)
    }

    /// The approval signature (DESIGN.md §2 flow 3): made when a person or the policy
    /// approves, never at intake, so no approved envelope exists for a held or rejected
    /// release. The stored envelope is accepted again, at every approval and rollout start,
    /// against the trust store in force (a publisher key revoked since intake stops it),
    /// and the approval is signed over that acceptance.
    ///
    /// This part makes the approved envelope in memory (nothing is written, so a refusal
    /// afterwards, e.g. by the audit, leaves no trace); [`Dispatcher::store_approval`]
    /// writes it.
    pub(super) fn sign_approval(&self, rid: &str) -> Result<Vec<u8>, Error> {
        let dir = self.store.release_dir(rid);
        let envelope = std::fs::read(dir.join("envelope.suit"))
            .map_err(|e| Error::io(dir.join("envelope.suit"), e))?;
        let rules = intake::intake_rules(self.cfg.require_author_signature);
        let accepted = intake::accept(&envelope, &self.trust().store, &rules, self.clock.now())
            .map_err(|e| {
                Error::Conflict(format!(
                    "cannot approve: the release is no longer acceptable ({}): {e}",
                    e.code()
                ))
            })?;
        suit::approve(&accepted.accepted, &self.approver)
            .map_err(|e| Error::Conflict(format!("cannot approve: {e}")))
    }

    /// Writes the approved envelope made by [`Dispatcher::sign_approval`].
    pub(super) fn store_approval(&self, rid: &str, approved: &[u8]) -> Result<(), Error> {
        let dir = self.store.release_dir(rid);
        foundations::fs::write_file_atomic(&dir.join("approved.suit"), approved, 0o644)?;
        if let Ok(mut m) = self.artifacts.lock() {
            m.remove(rid);
        }
        if let Ok(mut m) = self.accepted_at.lock() {
            m.remove(rid);
        }
        Ok(())
    }

    /// Before a push batch: the approved envelope of `rid` is accepted again (the one
    /// acceptance path, with the approval required) unless it was within the last
    /// [`REACCEPT_AFTER_SECS`] under the same trust generation.
    pub fn check_approved(&self, rid: &str) -> Result<(), Error> {
        let now = self.clock.now();
        let generation = self.trust_generation.load(Ordering::SeqCst);
        if let Ok(m) = self.accepted_at.lock()
            && let Some((g, at)) = m.get(rid)
            && *g == generation
            && (now - *at).num_seconds() < REACCEPT_AFTER_SECS
            && now >= *at
        {
            return Ok(());
        }
        let dir = self.store.release_dir(rid);
        let approved = std::fs::read(dir.join("approved.suit"))
            .map_err(|e| Error::io(dir.join("approved.suit"), e))?;
        let rules = intake::approved_rules(self.cfg.require_author_signature);
        intake::accept(&approved, &self.trust().store, &rules, now).map_err(Error::refused)?;
        if let Ok(mut m) = self.accepted_at.lock() {
            m.insert(rid.to_owned(), (generation, now));
        }
        Ok(())
    }
}
