//! Intake (DESIGN.md §2 flow 2): a release is accepted (`suit::accept`, `docs/acceptance.md`),
//! its blob checked against the signed ciphertext digest, its key fetched from the
//! publisher's key repository, decrypted and checked, and only then stored.

use super::*;

impl Dispatcher {
    pub(super) fn key_repo_for(
        &self,
        publisher_kid: &str,
    ) -> Option<&key_repo::client::KeyRepoClient> {
        self.key_repos
            .iter()
            .find(|(c, _)| {
                c.publishers.is_empty() || c.publishers.iter().any(|p| p == publisher_kid)
            })
            .map(|(_, c)| c)
    }

    /// Fetches the release key from the publisher's key repository (OAuth client
    /// credentials) and checks it names the recipient of the envelope.
    pub async fn fetch_key(
        &self,
        publisher_kid: &str,
        release_kid: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let repo = self
            .key_repo_for(publisher_kid)
            .ok_or_else(|| Error::Refused {
                check: "key-unavailable".into(),
                detail: format!("no key repository configured for publisher {publisher_kid}"),
            })?;
        match repo.get_key(release_kid).await {
            Ok(k) => Ok(Zeroizing::new(k.cose_key)),
            Err(e) => {
                let check = match e.status() {
                    Some(410) => "key-revoked",
                    Some(404) => "key-unknown",
                    Some(401 | 403) => "key-access-denied",
                    _ => "key-unavailable",
                };
                Err(Error::Refused {
                    check: check.into(),
                    detail: format!("release key {release_kid}: {e}"),
                })
            }
        }
    }

    /// Intake of one release: verify against the trust store, check the blob against the
    /// signed ciphertext digest, obtain the release key (from the key repository, or given
    /// by an internal publisher), decrypt and check the plaintext digest, store, and apply
    /// the policy. Nothing is stored unless every check passes.
    pub async fn intake(
        &self,
        envelope: &[u8],
        blob: &[u8],
        key: Option<Zeroizing<Vec<u8>>>,
        source: &str,
        actor: &str,
    ) -> Result<IntakeResult, Error> {
        let now = self.clock.now();
        // A release that cannot be audited is not taken in (refused before any work; the
        // poller tries again at its next poll).
        self.audit_ready()?;
        let accepted = self.accept_or_refuse(envelope, actor, now)?;
        let rid = accepted.accepted.release_id();
        let _guard = self.intake_lock.lock().await;
        let lock = self.release_lock(&rid)?;
        let _release = lock.lock().await;
        if let Some(existing) = self.store.release(&rid)? {
            return Ok(IntakeResult {
                release_id: rid,
                result: "unchanged",
                release: existing,
            });
        }
        let result = self.check(&accepted, blob, key, source, now).await;
        let (record, key) = match result {
            Ok(r) => r,
            Err(e) => {
                self.refused(actor, Some(&rid), &e);
                return Err(e);
            }
        };
        // Recorded before anything is stored: a release whose acceptance cannot be audited
        // leaves no file and no record.
        self.audit(actor, "release.accept", Some(&rid), "ok", Some(source))?;
        if let Err(e) = self.store_files(&accepted, blob, &key) {
            self.audit_anyway(
                actor,
                "release.accept",
                Some(&rid),
                "failed",
                Some(&e.to_string()),
            );
            return Err(e);
        }
        self.metrics
            .releases_accepted
            .fetch_add(1, Ordering::Relaxed);
        let record = self.decide(record, now)?;
        Ok(IntakeResult {
            release_id: rid,
            result: "created",
            release: record,
        })
    }

    /// Verifies an envelope before its blob is downloaded (a forged or untrusted release
    /// costs the dispatcher one envelope, not a blob); refusals are audited as at intake.
    /// Returns the envelope's release id and the blob size its manifest signs: no more is
    /// worth reading.
    pub fn precheck(&self, envelope: &[u8], actor: &str) -> Result<(String, u64), Error> {
        let a = self.accept_or_refuse(envelope, actor, self.clock.now())?;
        let release = a.accepted.release().map_err(Error::refused)?;
        Ok((a.accepted.release_id(), release.blob.size))
    }

    /// A source sent more blob bytes than the accepted manifest of release `rid` signs
    /// (`signed`): refused as intake refuses a blob of the wrong size
    /// (`ciphertext-digest-mismatch`, counted and audited under `rid`, the envelope's own
    /// id, never the id the source listed) without reading the rest. Returns the check and
    /// the detail.
    pub fn refuse_longer_blob(&self, actor: &str, rid: &str, signed: u64) -> (String, String) {
        let check = suit::Error::CiphertextSizeMismatch {
            expected: signed,
            actual: signed.saturating_add(1),
        }
        .code();
        let detail = format!(
            "ciphertext size mismatch: manifest says {signed} bytes, the source sent more (the read stopped there)"
        );
        self.refused(
            actor,
            Some(rid),
            &Error::Refused {
                check: check.into(),
                detail: detail.clone(),
            },
        );
        (check.into(), detail)
    }

    /// `intake::accept` against the trust store in force; a refusal is counted and audited,
    /// naming the release when its manifest can be found.
    pub(super) fn accept_or_refuse(
        &self,
        envelope: &[u8],
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<intake::Accepted, Error> {
        let rules = intake::intake_rules(self.cfg.require_author_signature);
        intake::accept(envelope, &self.trust().store, &rules, now).map_err(|e| {
            let err = Error::refused(e);
            let rid = suit::Envelope::decode(envelope, &suit::Limits::default())
                .ok()
                .map(|env| env.release_id());
            self.refused(actor, rid.as_deref(), &err);
            err
        })
    }

    pub(super) fn refused(&self, actor: &str, rid: Option<&str>, e: &Error) {
        let check = match e {
            Error::Refused { check, .. } => check.as_str(),
            _ => "internal",
        };
        self.metrics.refused(check);
        tracing::warn!(release = rid.unwrap_or("?"), check, error = %e, "release refused at intake");
        self.audit_anyway(
            actor,
            "release.refuse",
            rid,
            &format!("refused:{check}"),
            Some(&e.to_string()),
        );
    }

    /// Every check of intake after acceptance: the blob against the signed ciphertext, the
    /// release key (given, or from the key repository), decryption and the plaintext
    /// digest. Nothing is written; the record to store and the key come back.
    pub(super) async fn check(
        &self,
        accepted: &intake::Accepted,
        blob: &[u8],
        key: Option<Zeroizing<Vec<u8>>>,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(ReleaseRecord, Zeroizing<Vec<u8>>), Error> {
        let v = &accepted.accepted;
        let rid = v.release_id();
        let refuse = Error::refused;
        let facts = v.release().map_err(refuse)?;
        // The blob must be the ciphertext the publisher signed (component #1), before any
        // key is asked for.
        suit::release::check_ciphertext(v, blob).map_err(refuse)?;
        let release_kid = facts.release_kid_text();
        let key = match key {
            Some(k) => {
                if accepted.facts.publisher_role != suit::Role::Internal
                    || accepted.facts.update_type != suit::UpdateType::T1
                {
                    return Err(Error::Refused {
                        check: "direct-upload-not-allowed".into(),
                        detail: "direct uploads are for internal publishers' T1 releases".into(),
                    });
                }
                k
            }
            None => {
                self.fetch_key(&accepted.publisher_kid, &release_kid)
                    .await?
            }
        };
        let rk = ReleaseKey::from_cose_key(&key).map_err(refuse)?;
        // Decrypt and check the plaintext digest (the dispatcher inspects what it sends).
        let image = suit::release::decrypt_payload(v, blob, &rk).map_err(refuse)?;
        let m = v.manifest();
        let record = ReleaseRecord {
            id: rid.clone(),
            received_at: now,
            source: source.to_owned(),
            publisher_kid: accepted.publisher_kid.clone(),
            release_kid,
            vendor_id: accepted.facts.vendor,
            class_id: accepted.facts.class,
            sequence: m.sequence_number,
            version: m
                .set_version
                .as_ref()
                .map(|sv| suit::manifest::format_version(&sv.version)),
            facts: Facts::from_policy(&accepted.facts),
            image_size: image.len() as u64,
            envelope_size: v.canonical().len() as u64,
            blob_size: blob.len() as u64,
            parts: Vec::new(),
        };
        Ok((record, key))
    }

    /// Writes the files of a release that passed [`Dispatcher::check`], before the record
    /// that names them.
    pub(super) fn store_files(
        &self,
        accepted: &intake::Accepted,
        blob: &[u8],
        key: &[u8],
    ) -> Result<(), Error> {
        let v = &accepted.accepted;
        let dir = self.store.release_dir(&v.release_id());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let w = |name: &str, data: &[u8], mode: u32| {
            foundations::fs::write_file_atomic(&dir.join(name), data, mode)
        };
        // Only the canonical envelope (authenticated blocks only) is kept and forwarded.
        w("envelope.suit", v.canonical(), 0o644)?;
        w("blob.enc", blob, 0o644)?;
        w("key.cbor", key, 0o600)?;
        Ok(())
    }

    /// Whether `source` listed release `id` before and it was refused (it is not fetched
    /// from that source again until the dispatcher restarts or the trust store is
    /// reloaded; each refusal is in the audit log).
    ///
    /// Remembered per source: a hostile source that serves a genuine release's envelope
    /// with a wrong blob gets that release refused from itself only, never skipped when
    /// the genuine update server lists it (a targeted freeze otherwise). Another source
    /// listing an envelope that is bad in itself costs one more fetch of it, no more.
    pub fn refused_before(&self, source: &str, id: &str) -> bool {
        self.refused_releases
            .lock()
            .map(|s| s.contains(&(source.to_owned(), id.to_owned())))
            .unwrap_or(false)
    }

    /// Remembers that `source`'s listing of `id` was refused. Bounded: past
    /// [`MAX_REMEMBERED_REFUSALS`] the set starts again (a hostile source listing endless
    /// junk costs fetches of envelopes, not memory).
    pub fn remember_refused(&self, source: &str, id: &str) {
        if let Ok(mut s) = self.refused_releases.lock() {
            if s.len() >= MAX_REMEMBERED_REFUSALS {
                s.clear();
            }
            s.insert((source.to_owned(), id.to_owned()));
        }
    }

    /// Forgets refusals (after a trust reload).
    pub fn forget_refusals(&self) {
        if let Ok(mut s) = self.refused_releases.lock() {
            s.clear();
        }
    }
}

/// Most refused release ids remembered.
const MAX_REMEMBERED_REFUSALS: usize = 100_000;
