//! Release acceptance at the dispatcher (DESIGN.md §2 flow 2, §4): `suit::accept` against
//! the dispatcher's trust store, and the facts its policy matches on.
//!
//! The trust store is the project's one format (`docs/trust-store.md`): each key with its
//! role, vendor scope, update types, validity period and revocation. Validity is judged at
//! the time of each decision, not when the file is read: the dispatcher accepts a release
//! again at intake, at every approval, at every rollout start and before every push batch
//! (`docs/acceptance.md`), so a key revoked or expired meanwhile stops everything not yet
//! installed. The dispatcher's own approval key is added to the store under its
//! `approval_kid`, so approved envelopes are accepted by the same function.

use std::path::Path;

use chrono::{DateTime, Utc};
use suit::trust::{KeyEntry, TrustFile};
use suit::{AuthorRule, Role, Rules, TrustAnchor, TrustStore};

use crate::Error;

/// The trust in force: the file as written (key files inlined) and the store built from it
/// plus the approval key.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The trust file, every `public_key_file` read into `public_key`.
    pub file: TrustFile,
    /// The store `suit::accept` uses.
    pub store: TrustStore,
}

impl Trust {
    /// Keys of `roles` that a device of `vendor` should hold: in force now or later, and
    /// scoped to that vendor (or to any).
    pub fn entries_for(&self, roles: &[Role], vendor: uuid::Uuid, now: u64) -> Vec<&KeyEntry> {
        self.file
            .keys
            .iter()
            .filter(|k| k.role().is_ok_and(|r| roles.contains(&r)))
            .filter(|k| !k.is_revoked() && k.valid_until.is_none_or(|u| now <= u.0))
            .filter(|k| match &k.vendors {
                None => true,
                Some(v) => v.iter().any(|s| s == "*" || *s == vendor.to_string()),
            })
            .collect()
    }
}

/// Reads the trust file; `approver` (the dispatcher's own approval key, with its kid) is
/// added to the store. A file with any invalid entry is refused whole.
pub fn load_trust(path: &Path, approver: &suit::PublicKey) -> Result<Trust, Error> {
    let cfg_err = |reason: String| Error::Config {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > suit::trust::MAX_TRUST_FILE as u64 {
        return Err(cfg_err("file too large".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut file = TrustFile::parse(&text).map_err(|e| cfg_err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for k in &mut file.keys {
        if let Some(name) = k.public_key_file.take() {
            let p = base.join(&name);
            let pem = std::fs::read_to_string(&p)
                .map_err(|e| cfg_err(format!("key {}: {}: {e}", k.kid, p.display())))?;
            k.public_key = Some(pem);
        }
    }
    let mut store = file
        .to_store(&mut suit::trust::no_key_files)
        .map_err(|e| cfg_err(e.to_string()))?;
    if store.by_kid(approver.kid()).is_some() {
        return Err(cfg_err(format!(
            "kid {} is the dispatcher's own approval kid",
            String::from_utf8_lossy(approver.kid())
        )));
    }
    store.add(TrustAnchor::new(approver.clone(), Role::Approver));
    Ok(Trust { file, store })
}

/// The rules at intake: publisher signatures only; the T3 author signature required unless
/// the configuration leaves it to be checked when the author key is known.
pub fn intake_rules(require_author: bool) -> Rules {
    with_author(Rules::dispatcher_intake(), require_author)
}

/// The rules for the approved envelope, before every rollout start and push batch.
pub fn approved_rules(require_author: bool) -> Rules {
    with_author(Rules::dispatcher_approved(), require_author)
}

fn with_author(r: Rules, require: bool) -> Rules {
    if require {
        r.with_author(AuthorRule::Require)
    } else {
        r
    }
}

/// An accepted release and what the policy needs to know about it.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The accepted envelope.
    pub accepted: suit::Accepted,
    /// Facts for the policy.
    pub facts: policies::ReleaseFacts,
    /// kid of the publisher key that vouched for it.
    pub publisher_kid: String,
}

/// Accepts an envelope under `rules` at `now`. Every failure is a `suit::Error` naming the
/// check (`docs/acceptance.md`).
pub fn accept(
    envelope: &[u8],
    trust: &TrustStore,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Accepted, suit::Error> {
    let now = u64::try_from(now.timestamp()).unwrap_or(0);
    let accepted = suit::accept(envelope, trust, rules, now)?;
    let r = accepted.release()?;
    let publisher_role = r.publisher.role.unwrap_or(Role::Manufacturer);
    let facts = policies::ReleaseFacts {
        update_type: r.ics.update_type,
        categories: r.ics.categories.clone(),
        cves: r.ics.cves.clone(),
        severity: r.ics.severity,
        publisher_role,
        vendor: Some(r.vendor),
        class: Some(r.class),
    };
    let publisher_kid = r.publisher.kid_text();
    Ok(Accepted {
        accepted,
        facts,
        publisher_kid,
    })
}
