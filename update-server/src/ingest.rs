//! Verify before store: the one path by which a release enters this server, used by
//! uploads and by mirrors alike.
//!
//! Order of checks (each failure is a problem-details response naming the check):
//! 1. `suit::accept` of the envelope against the registered publisher keys under
//!    `suit::Rules::update_server` (docs/acceptance.md): strict decoding, manifest digest,
//!    every authentication block by a registered key in force, that key's right to the
//!    manifest's vendor-id and update type, the release profile (`suit::Error::code`);
//! 2. the ciphertext size is within `max_blob_bytes`;
//! 3. for uploads, the token grants the release's vendor/class;
//! 4. no other release holds this vendor/class/sequence (`sequence-conflict`) and, by
//!    policy, none newer is published (`rollback`);
//! 5. the payload is streamed to a staging object through `suit::release::PayloadVerifier`
//!    (size and SHA-256 against the signed ciphertext digest), memory bounded;
//! 6. only then: the blob is renamed into place, the **canonical** envelope stored (only
//!    authenticated blocks: nothing unauthenticated is ever served), the index committed.
//!
//! A release already present is verified the same way and then acknowledged unchanged
//! (idempotent retry); its payload is checked but not written again.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::error::ApiError;
use crate::index::{Inserted, PayloadInfo, ReleaseRecord};
use crate::state::AppState;

/// What a verified envelope says about itself.
#[derive(Debug, Clone)]
pub struct Checked {
    pub verified: suit::Accepted,
    pub record: ReleaseRecord,
}

/// The outcome of an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Unchanged,
}

/// The acceptance rules of this update server (`suit::Rules::update_server`, with the
/// configured author rule and envelope limit).
pub fn rules(cfg: &crate::config::Config) -> suit::Rules {
    let mut limits = suit::Limits::default();
    limits.max_envelope_len = limits.max_envelope_len.min(cfg.limits.max_envelope_bytes);
    let rules = suit::Rules::update_server().with_limits(limits);
    if cfg.policy.require_author_signature {
        rules.with_author(suit::AuthorRule::Require)
    } else {
        rules
    }
}

/// Steps 1 and 2: accepts the envelope and derives its index record.
pub fn check_envelope(
    st: &AppState,
    envelope: &[u8],
    published_by: &str,
) -> Result<Checked, ApiError> {
    let trust = st.publishers().trust_store()?;
    accept_envelope(
        st.cfg(),
        &trust,
        envelope,
        published_by,
        crate::util::now_unix(),
    )
}

/// Steps 1 and 2 without the server around them: what the upload and mirror paths check.
pub fn accept_envelope(
    cfg: &crate::config::Config,
    trust: &suit::TrustStore,
    envelope: &[u8],
    published_by: &str,
    now: u64,
) -> Result<Checked, ApiError> {
    if envelope.len() > cfg.limits.max_envelope_bytes {
        return Err(ApiError::TooLarge(format!(
            "envelope of {} bytes exceeds {}",
            envelope.len(),
            cfg.limits.max_envelope_bytes
        )));
    }
    let verified = suit::accept(envelope, trust, &rules(cfg), now)?;
    let r = verified.release()?;
    if r.blob.size > cfg.limits.max_blob_bytes {
        return Err(ApiError::TooLarge(format!(
            "payload of {} bytes exceeds {}",
            r.blob.size, cfg.limits.max_blob_bytes
        )));
    }
    let d = suit::inspect::describe(verified.envelope());
    let record = ReleaseRecord {
        release_id: verified.release_id(),
        vendor_id: r.vendor.hyphenated().to_string(),
        class_id: r.class.hyphenated().to_string(),
        sequence: r.sequence,
        version: d.version.clone(),
        ics: d.ics.map(|i| i.summary),
        signer_kids: verified.signers().iter().map(|s| s.kid_text()).collect(),
        release_kid: Some(r.release_kid_text()),
        envelope_size: verified.canonical().len() as u64,
        payload: PayloadInfo {
            size: r.blob.size,
            sha256: hex::encode(&r.blob.digest.bytes),
        },
        published_at: crate::util::now_unix(),
        published_by: published_by.to_owned(),
        order: 0,
    };
    Ok(Checked { verified, record })
}

/// Step 4.
pub fn check_slot(st: &AppState, rec: &ReleaseRecord) -> Result<bool, ApiError> {
    let idx = st.index();
    if idx.get(&rec.release_id)?.is_some() {
        return Ok(true);
    }
    if let Some(other) = idx.by_sequence(&rec.vendor_id, &rec.class_id, rec.sequence)? {
        return Err(ApiError::SequenceConflict {
            product: rec.product(),
            sequence: rec.sequence,
            existing: other,
        });
    }
    if st.cfg().policy.reject_older
        && let Some(newest) = idx.newest_sequence(&rec.vendor_id, &rec.class_id)?
        && newest > rec.sequence
    {
        return Err(ApiError::Rollback {
            product: rec.product(),
            newest,
            offered: rec.sequence,
        });
    }
    Ok(false)
}

/// Steps 5 and 6 for a checked envelope: streams `payload`, then commits.
pub async fn store<S, E>(
    st: &AppState,
    checked: Checked,
    exists: bool,
    mut payload: S,
) -> Result<(Outcome, ReleaseRecord), ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut verifier = suit::release::PayloadVerifier::new(&checked.verified, None)?;
    let mut staged = if exists {
        None
    } else {
        Some(st.storage().stage().await?)
    };
    let streamed: Result<(), ApiError> = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::Incomplete(e.to_string()))?;
            let mut buf = chunk.to_vec();
            verifier.update(&mut buf)?;
            if let Some(s) = staged.as_mut() {
                s.write(Bytes::from(buf)).await?;
            }
        }
        verifier.finish()?;
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        if let Some(s) = staged {
            s.abort().await;
        }
        return Err(e);
    }
    let Some(staged) = staged else {
        let rec = st
            .index()
            .get(&checked.record.release_id)?
            .ok_or(ApiError::Internal("release vanished from the index".into()))?;
        return Ok((Outcome::Unchanged, rec));
    };
    let staged_path = match staged.finish().await {
        Ok(p) => p,
        Err(e) => return Err(e.into()),
    };
    let sha = checked.record.payload.sha256.clone();
    let id = checked.record.release_id.clone();
    let blob = crate::storage::blob_path(&sha);
    let committed: Result<(Inserted, ReleaseRecord), ApiError> = async {
        st.storage().commit_blob(&staged_path, &sha).await?;
        let canonical = Bytes::copy_from_slice(checked.verified.canonical());
        st.storage().put_envelope(&id, canonical).await?;
        Ok(st.index().insert(checked.record.clone()).await?)
    }
    .await;
    match committed {
        Ok((Inserted::New, rec)) => {
            tracing::info!(release = %rec.release_id, product = %rec.product(), sequence = rec.sequence, by = %rec.published_by, "release published");
            st.notify(&rec);
            Ok((Outcome::Created, rec))
        }
        Ok((Inserted::Existing(rec), _)) => Ok((Outcome::Unchanged, *rec)),
        Ok((Inserted::Conflict(other), rec)) => {
            // Lost a race with a concurrent upload of another release for the same slot.
            st.storage().delete(&blob).await;
            st.storage()
                .delete(&crate::storage::envelope_path(&id))
                .await;
            Err(ApiError::SequenceConflict {
                product: rec.product(),
                sequence: rec.sequence,
                existing: other,
            })
        }
        Err(e) => {
            st.storage().delete(&staged_path).await;
            Err(e)
        }
    }
}
