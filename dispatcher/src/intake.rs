//! Release intake (DESIGN.md §2 flow 2, §4): verify a release against the dispatcher's
//! trust store and extract the facts its policy matches on.
//!
//! The trust store names each publisher key with its role (manufacturer, third-party,
//! internal), the vendor-ids it may sign for, and its validity period; revoked keys and keys
//! outside their validity are left out, so rotation is adding the new key with a `valid_from`
//! and giving the old one a `valid_until`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use suit::{Limits, PublicKey, Role, TrustAnchor, TrustStore, Verified};
use uuid::Uuid;

/// One trusted publisher key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The kid in its signatures.
    pub kid: String,
    /// `manufacturer`, `third-party` or `internal`.
    pub role: String,
    /// SPKI PEM.
    pub pem: String,
    /// Vendor-ids it may sign for (empty: any; manufacturers should always be scoped).
    #[serde(default)]
    pub vendors: Vec<Uuid>,
    /// Not trusted before.
    #[serde(default)]
    pub valid_from: Option<DateTime<Utc>>,
    /// Not trusted after (rotation).
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Revoked keys are never trusted again.
    #[serde(default)]
    pub revoked: bool,
}

/// The dispatcher's publisher trust store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Keys.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
}

impl TrustConfig {
    /// The keys in force at `now` as a `suit` trust store (publisher roles only).
    pub fn store(&self, now: DateTime<Utc>) -> Result<TrustStore, String> {
        let mut t = TrustStore::new();
        for k in &self.keys {
            let role = match Role::parse(&k.role) {
                Some(r @ (Role::Manufacturer | Role::ThirdParty | Role::Internal)) => r,
                // T3 author keys go to devices in their bundles; they sign no envelopes.
                Some(Role::Author) => {
                    PublicKey::from_pem(&k.pem).map_err(|e| format!("key {}: {e}", k.kid))?;
                    continue;
                }
                _ => {
                    return Err(format!(
                        "key {}: role {:?} must be manufacturer, third-party, internal or author",
                        k.kid, k.role
                    ));
                }
            };
            let key = PublicKey::from_pem(&k.pem).map_err(|e| format!("key {}: {e}", k.kid))?;
            let in_force = !k.revoked
                && k.valid_from.is_none_or(|f| f <= now)
                && k.valid_until.is_none_or(|u| now <= u);
            if in_force {
                t.add(
                    TrustAnchor::new(key.with_kid(k.kid.as_bytes().to_vec()), role)
                        .for_vendors(k.vendors.iter().copied()),
                );
            }
        }
        Ok(t)
    }

    fn role_of(&self, kid: &[u8]) -> Option<Role> {
        self.keys
            .iter()
            .find(|k| k.kid.as_bytes() == kid)
            .and_then(|k| Role::parse(&k.role))
    }
}

/// A verified release and what the policy needs to know about it.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The verified envelope.
    pub verified: Verified,
    /// Facts for the policy.
    pub facts: policies::ReleaseFacts,
    /// kid of the publisher key that vouched for it.
    pub publisher_kid: String,
}

/// Verifies an envelope at intake. Every failure is a `suit::Error` naming the check.
pub fn accept(
    envelope: &[u8],
    trust: &TrustConfig,
    now: DateTime<Utc>,
) -> Result<Accepted, suit::Error> {
    let store = trust.store(now).map_err(suit::Error::InvalidInput)?;
    let verified = suit::verify(envelope, &store, &Limits::default())?;
    let m = &verified.envelope().manifest;
    // The project profile requires ICS metadata: the policy cannot decide without it.
    let ics = m.ics.as_ref().ok_or(suit::Error::ProfileViolation(
        "ICS metadata (manifest key -1000)",
    ))?;
    let signer = verified
        .signers()
        .iter()
        .find(|s| {
            matches!(
                s.role,
                Some(Role::Manufacturer | Role::ThirdParty | Role::Internal)
            )
        })
        .ok_or(suit::Error::NoTrustedSignature {
            kids: "none".into(),
        })?;
    let publisher_role = trust.role_of(&signer.kid).unwrap_or(Role::Manufacturer);
    let params = m.shared_parameters(0);
    let vendor = match params.get(&suit::consts::param::VENDOR_IDENTIFIER) {
        Some(suit::manifest::Param::Vendor(suit::manifest::VendorId::Uuid(u))) => Some(*u),
        _ => None,
    };
    let class = match params.get(&suit::consts::param::CLASS_IDENTIFIER) {
        Some(suit::manifest::Param::Uuid(u)) => Some(*u),
        _ => None,
    };
    let facts = policies::ReleaseFacts {
        update_type: ics.update_type,
        categories: ics.categories.clone(),
        cves: ics.cves.clone(),
        severity: ics.severity,
        publisher_role,
        vendor,
        class,
    };
    let publisher_kid = String::from_utf8_lossy(&signer.kid).into_owned();
    Ok(Accepted {
        verified,
        facts,
        publisher_kid,
    })
}
