//! Verify before store: the one path by which a release enters this server, used by
//! uploads and by mirrors alike.
//!
//! Order of checks (each failure is a problem-details response naming the check):
//! 1. `suit::verify` of the envelope against the registered publisher keys: strict
//!    decoding, manifest digest, signature by a registered kid, that key's right to the
//!    manifest's vendor-id and update type (`suit::Error::code`);
//! 2. the profile: vendor-id and class-id are UUIDs, component #1 carries the ciphertext
//!    size and digest; the size is within `max_blob_bytes`;
//! 3. for uploads, the token grants the release's vendor/class;
//! 4. no other release holds this vendor/class/sequence (`sequence-conflict`) and, by
//!    policy, none newer is published (`rollback`);
//! 5. the payload is streamed to a staging object through `suit::release::PayloadVerifier`
//!    (size and SHA-256 against the signed ciphertext digest), memory bounded;
//! 6. only then: the blob is renamed into place, the envelope stored, the index committed.
//!
//! A release already present is verified the same way and then acknowledged unchanged
//! (idempotent retry); its payload is checked but not written again.

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use suit::consts::param;
use suit::manifest::{Param, VendorId};

use crate::error::ApiError;
use crate::index::{IcsSummary, Inserted, PayloadInfo, ReleaseRecord};
use crate::state::AppState;

/// What a verified envelope says about itself.
#[derive(Debug, Clone)]
pub struct Checked {
    pub verified: suit::Verified,
    pub record: ReleaseRecord,
}

/// The outcome of an ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Unchanged,
}

/// Steps 1 and 2: verifies the envelope and derives its index record.
pub fn check_envelope(
    st: &AppState,
    envelope: &[u8],
    published_by: &str,
) -> Result<Checked, ApiError> {
    let limits = suit::Limits::default();
    if envelope.len() > st.cfg().limits.max_envelope_bytes {
        return Err(ApiError::TooLarge(format!(
            "envelope of {} bytes exceeds {}",
            envelope.len(),
            st.cfg().limits.max_envelope_bytes
        )));
    }
    let trust = st.publishers().trust_store()?;
    let verified = suit::verify(envelope, &trust, &limits)?;
    let env = verified.envelope();
    let shared = env.manifest.shared_parameters(0);
    let vendor = match shared.get(&param::VENDOR_IDENTIFIER) {
        Some(Param::Vendor(VendorId::Uuid(u))) => u.hyphenated().to_string(),
        _ => {
            return Err(ApiError::Profile(
                "vendor-id (component 0) is not a UUID".into(),
            ));
        }
    };
    let class = match shared.get(&param::CLASS_IDENTIFIER) {
        Some(Param::Uuid(u)) => u.hyphenated().to_string(),
        _ => {
            return Err(ApiError::Profile(
                "class-id (component 0) is not a UUID".into(),
            ));
        }
    };
    let ct = suit::release::ciphertext_info(&verified)?;
    if ct.digest.alg != suit::consts::alg::SHA256 || ct.digest.bytes.len() != 32 {
        return Err(ApiError::Profile("ciphertext digest is not SHA-256".into()));
    }
    let sha = &ct.digest.bytes;
    if ct.size > st.cfg().limits.max_blob_bytes {
        return Err(ApiError::TooLarge(format!(
            "payload of {} bytes exceeds {}",
            ct.size,
            st.cfg().limits.max_blob_bytes
        )));
    }
    let d = suit::inspect::describe(env);
    let release_kid = d
        .encryption
        .iter()
        .flat_map(|e| e.recipients.iter())
        .find_map(|(_, kid)| kid.clone());
    let record = ReleaseRecord {
        release_id: verified.release_id(),
        vendor_id: vendor,
        class_id: class,
        sequence: env.manifest.sequence_number,
        version: d.version.clone(),
        ics: d.ics.map(|i| IcsSummary {
            update_type: i.update_type,
            categories: i.categories,
            cves: i.cves,
            severity: i.severity,
            author: i.author,
            reboot: i.reboot,
            notes: i.notes,
        }),
        signer_kids: verified
            .signers()
            .iter()
            .map(|s| String::from_utf8_lossy(&s.kid).into_owned())
            .collect(),
        release_kid,
        envelope_size: envelope.len() as u64,
        payload: PayloadInfo {
            size: ct.size,
            sha256: hex::encode(sha),
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
    envelope: Bytes,
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
        st.storage().put_envelope(&id, envelope).await?;
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
