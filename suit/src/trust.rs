//! The trust store: which keys may sign what, and when (DESIGN.md §4), and its one file
//! format, read by every call site that accepts releases (`publisher verify`, the update
//! server, the dispatcher and devices). `docs/trust-store.md` describes the format.
//!
//! ```toml
//! [[key]]
//! kid = "acme-fw-2026"
//! role = "manufacturer"          # manufacturer | third-party | internal | approver | author
//! public_key = """
//! -----BEGIN PUBLIC KEY-----
//! ...
//! -----END PUBLIC KEY-----
//! """                            # or: public_key_file = "keys/acme.pub.pem"
//! vendors = ["fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"]   # or ["*"]
//! update_types = ["T2", "T3"]    # optional: narrows what the role allows
//! valid_from = "2026-01-01T00:00:00Z"
//! valid_until = "2028-01-01T00:00:00Z"
//! revoked = false
//! ```
//!
//! Parsing is pure: key files named by `public_key_file` are read through a function the
//! caller passes, and validity is evaluated at the time given to [`crate::accept`], not when
//! the file is read, so a long-running service re-checks every decision against the clock.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::cose::PublicKey;
use crate::error::Error;
use crate::ics::UpdateType;
use crate::manifest::VendorId;

/// Seconds since the Unix epoch (UTC). The time every validity check is made against.
pub type UnixTime = u64;

/// What a trusted key may do (DESIGN.md §4). Compared in one place, [`Role::may_publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Role {
    /// Device manufacturer: may sign T1, T2 and T3 for its vendor-ids.
    Manufacturer,
    /// Third-party author or publisher: may sign T1 only.
    ThirdParty,
    /// The plant's own engineers (A1): T1 only.
    Internal,
    /// A domain dispatcher's approval key.
    Approver,
    /// A T3 library/firmware author, whose signature covers the plaintext image digest.
    Author,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] = [
        Role::Manufacturer,
        Role::ThirdParty,
        Role::Internal,
        Role::Approver,
        Role::Author,
    ];

    /// The roles that publish releases.
    pub const PUBLISHERS: [Role; 3] = [Role::Manufacturer, Role::ThirdParty, Role::Internal];

    /// The name used in configuration files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Role::Manufacturer => "manufacturer",
            Role::ThirdParty => "third-party",
            Role::Internal => "internal",
            Role::Approver => "approver",
            Role::Author => "author",
        }
    }

    /// Parses a role name (exact, lower case: the names of [`Role::name`]).
    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether keys of this role sign releases (authentication blocks of a publisher).
    pub fn is_publisher(self) -> bool {
        Role::PUBLISHERS.contains(&self)
    }

    /// DESIGN.md §4: the update types a role may sign. A manufacturer signs T1, T2 and T3;
    /// a third party and the plant's internal publishers sign T1 (applications) only; other
    /// roles publish nothing.
    pub fn may_publish(self, t: UpdateType) -> bool {
        match self {
            Role::Manufacturer => true,
            Role::ThirdParty | Role::Internal => t == UpdateType::T1,
            Role::Approver | Role::Author => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a key is in force at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStanding {
    /// Usable.
    InForce,
    /// Revoked: never trusted again.
    Revoked,
    /// Before its `valid_from`.
    NotYetValid,
    /// After its `valid_until` (rotated out).
    Expired,
}

/// A trusted public key with its role, scope and validity.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    key: PublicKey,
    role: Role,
    vendors: Option<Vec<Uuid>>,
    update_types: Option<Vec<UpdateType>>,
    valid_from: Option<UnixTime>,
    valid_until: Option<UnixTime>,
    revoked: bool,
    any_kid: bool,
}

impl TrustAnchor {
    /// A key for `role`, any vendor, always valid, matched by its kid.
    pub fn new(key: PublicKey, role: Role) -> Self {
        Self {
            key,
            role,
            vendors: None,
            update_types: None,
            valid_from: None,
            valid_until: None,
            revoked: false,
            any_kid: false,
        }
    }

    /// Restricts to vendor-ids (an empty list allows none).
    pub fn for_vendors(mut self, vendors: impl IntoIterator<Item = Uuid>) -> Self {
        self.vendors = Some(vendors.into_iter().collect());
        self
    }

    /// Narrows the update types the role allows.
    pub fn for_update_types(mut self, types: impl IntoIterator<Item = UpdateType>) -> Self {
        self.update_types = Some(types.into_iter().collect());
        self
    }

    /// Sets the validity period (inclusive bounds, Unix seconds).
    pub fn valid(mut self, from: Option<UnixTime>, until: Option<UnixTime>) -> Self {
        self.valid_from = from;
        self.valid_until = until;
        self
    }

    /// Marks the key revoked.
    pub fn revoked(mut self, revoked: bool) -> Self {
        self.revoked = revoked;
        self
    }

    /// Accepts signatures without a matching kid. Only for keys given explicitly by a
    /// person for one check (`publisher verify --trust`), or for published test vectors
    /// that carry no kid.
    pub fn matching_any_kid(mut self) -> Self {
        self.any_kid = true;
        self
    }

    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The kid signatures name.
    pub fn kid(&self) -> &[u8] {
        self.key.kid()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The vendor scope; `None` is any vendor.
    pub fn vendors(&self) -> Option<&[Uuid]> {
        self.vendors.as_deref()
    }

    /// Whether the key is in force at `now`.
    pub fn standing(&self, now: UnixTime) -> KeyStanding {
        if self.revoked {
            KeyStanding::Revoked
        } else if self.valid_from.is_some_and(|f| now < f) {
            KeyStanding::NotYetValid
        } else if self.valid_until.is_some_and(|u| now > u) {
            KeyStanding::Expired
        } else {
            KeyStanding::InForce
        }
    }

    pub(crate) fn any_kid(&self) -> bool {
        self.any_kid
    }

    pub(crate) fn candidate_for(&self, kid: Option<&[u8]>) -> bool {
        self.any_kid || kid == Some(self.key.kid())
    }

    /// Whether this key may sign a release of `update_type` for all of `vendors`: the role
    /// rule ([`Role::may_publish`]), then the key's own narrowing, then its vendor scope
    /// (vendor-ids other than UUIDs are outside every scope).
    pub fn may_sign(
        &self,
        vendors: &[VendorId],
        update_type: Option<UpdateType>,
    ) -> Result<(), String> {
        match update_type {
            Some(t) if !self.role.may_publish(t) => {
                return Err(match self.role {
                    Role::ThirdParty | Role::Internal => {
                        format!("a {} key may sign T1 releases only, this is {t}", self.role)
                    }
                    role => format!("a {role} key cannot publish releases"),
                });
            }
            Some(t) => {
                if let Some(types) = &self.update_types
                    && !types.contains(&t)
                {
                    return Err(format!("this key is not allowed to sign {t}"));
                }
            }
            // Only outside the release profile (published test vectors): without a declared
            // update type only a manufacturer may sign.
            None if self.role != Role::Manufacturer => {
                return Err(format!(
                    "a {} key may sign T1 releases only, and the manifest declares no update type",
                    self.role
                ));
            }
            None => {}
        }
        if let Some(scope) = &self.vendors {
            if vendors.is_empty() {
                return Err("the manifest names no vendor-id".into());
            }
            for v in vendors {
                if !matches!(v, VendorId::Uuid(u) if scope.contains(u)) {
                    return Err(format!("key may not sign for vendor {v}"));
                }
            }
        }
        Ok(())
    }
}

/// The keys a call site trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor>,
    mac_keys: Vec<Zeroizing<Vec<u8>>>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trusted key.
    pub fn add(&mut self, anchor: TrustAnchor) -> &mut Self {
        self.anchors.push(anchor);
        self
    }

    /// Adds an HMAC 256/256 key for COSE_Mac0 authentication blocks (symmetric trust, as in
    /// the firmware-encryption examples). A verified MAC counts as a publisher signature
    /// with no role restriction: give MAC keys only for checks a person runs.
    pub fn add_mac_key(&mut self, key: &[u8]) -> &mut Self {
        self.mac_keys.push(Zeroizing::new(key.to_vec()));
        self
    }

    /// The anchors.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }

    pub(crate) fn mac_keys(&self) -> &[Zeroizing<Vec<u8>>] {
        &self.mac_keys
    }

    /// The anchor with this kid, if any.
    pub fn by_kid(&self, kid: &[u8]) -> Option<&TrustAnchor> {
        self.anchors.iter().find(|a| a.kid() == kid)
    }

    /// Reads the TOML trust-store format (module docs). `read_key_file` returns the text of
    /// a file named by `public_key_file` (relative names are the caller's to resolve).
    pub fn from_toml(
        text: &str,
        read_key_file: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<Self, TrustFileError> {
        TrustFile::parse(text)?.to_store(read_key_file)
    }
}

/// Why a trust file was refused. Names the key entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustFileError {
    /// Not valid TOML or not the trust-store shape.
    #[error("trust store: {0}")]
    Syntax(String),
    /// One entry is invalid.
    #[error("trust store key {kid:?}: {reason}")]
    Entry {
        /// The entry's kid (or its position when it has none).
        kid: String,
        /// What is wrong.
        reason: String,
    },
}

/// Largest trust file read (a plant trusts tens of keys, not thousands).
pub const MAX_TRUST_FILE: usize = 1 << 20;
/// Most keys in one trust file.
pub const MAX_TRUST_KEYS: usize = 1024;

/// The trust-store file as written: a list of `[[key]]` entries. Round-trips through TOML,
/// so tools that add or revoke keys rewrite it without losing anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The keys.
    #[serde(default, rename = "key", skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyEntry>,
}

/// One `[[key]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The kid in the key's signatures (printable ASCII, 1 to 128 characters, unique).
    pub kid: String,
    /// `manufacturer`, `third-party`, `internal`, `approver` or `author`.
    pub role: String,
    /// SPKI PEM of the P-256 key. (`pem` is read as an older name for it.)
    #[serde(default, alias = "pem", skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// A file holding the SPKI PEM, instead of `public_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// Vendor-ids (UUIDs) this key may sign for, or `["*"]` for any. Required for the
    /// publisher roles, so that a key is never unscoped by omission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendors: Option<Vec<String>>,
    /// Narrows the update types the role allows (`T1`, `T2`, `T3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_types: Option<Vec<String>>,
    /// Not trusted before (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    /// Not trusted after (RFC 3339): rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    /// Revoked keys are never trusted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// When it was revoked (implies `revoked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// When it was added (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<Timestamp>,
    /// A note for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An RFC 3339 time, written as a TOML string or a TOML offset date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub UnixTime);

impl Timestamp {
    /// Parses RFC 3339 (`2026-01-01T00:00:00Z`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = chrono::DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
        u64::try_from(t.timestamp())
            .map(Timestamp)
            .map_err(|_| format!("{s:?} is before 1970"))
    }

    /// RFC 3339 in UTC.
    pub fn to_rfc3339(self) -> String {
        i64::try_from(self.0)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A TOML date-time literal and a string both arrive here as text.
        let v = toml::Value::deserialize(d)?;
        let text = match v {
            toml::Value::String(s) => s,
            toml::Value::Datetime(dt) => dt.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected an RFC 3339 time, found {}",
                    other.type_str()
                )));
            }
        };
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 128 && kid.bytes().all(|b| b.is_ascii_graphic())
}

impl TrustFile {
    /// Parses the TOML text, bounded in size and number of keys. Entries are checked by
    /// [`TrustFile::to_store`].
    pub fn parse(text: &str) -> Result<Self, TrustFileError> {
        if text.len() > MAX_TRUST_FILE {
            return Err(TrustFileError::Syntax(format!(
                "file of {} bytes exceeds {MAX_TRUST_FILE}",
                text.len()
            )));
        }
        let f: TrustFile =
            toml::from_str(text).map_err(|e| TrustFileError::Syntax(e.message().to_owned()))?;
        if f.keys.len() > MAX_TRUST_KEYS {
            return Err(TrustFileError::Syntax(format!(
                "{} keys exceed {MAX_TRUST_KEYS}",
                f.keys.len()
            )));
        }
        Ok(f)
    }

    /// Writes the file as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every entry and builds the store. Any invalid entry refuses the whole file:
    /// a trust store is never half-loaded.
    pub fn to_store(
        &self,
        read_key_file: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<TrustStore, TrustFileError> {
        let mut store = TrustStore::new();
        let mut kids = BTreeSet::new();
        for (i, e) in self.keys.iter().enumerate() {
            let err = |reason: String| TrustFileError::Entry {
                kid: if e.kid.is_empty() {
                    format!("#{}", i + 1)
                } else {
                    e.kid.clone()
                },
                reason,
            };
            store.add(e.anchor(read_key_file).map_err(err)?);
            if !kids.insert(e.kid.clone()) {
                return Err(err("kid appears twice".into()));
            }
        }
        Ok(store)
    }

    /// The entry with this kid.
    pub fn key(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

impl KeyEntry {
    /// A new entry for an inline PEM.
    pub fn new(kid: &str, role: Role, pem: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            role: role.name().to_owned(),
            public_key: Some(pem.trim().to_owned() + "\n"),
            ..Self::default()
        }
    }

    /// The parsed role.
    pub fn role(&self) -> Result<Role, String> {
        Role::parse(&self.role).ok_or_else(|| {
            format!(
                "role {:?} is not one of manufacturer, third-party, internal, approver, author",
                self.role
            )
        })
    }

    /// Whether the entry is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked || self.revoked_at.is_some()
    }

    /// Checks the entry and makes its anchor.
    pub fn anchor(
        &self,
        read_key_file: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<TrustAnchor, String> {
        if !valid_kid(&self.kid) {
            return Err("kid must be 1 to 128 printable ASCII characters".into());
        }
        let role = self.role()?;
        let pem = match (&self.public_key, &self.public_key_file) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => read_key_file(f).map_err(|e| format!("public_key_file: {e}"))?,
            (Some(_), Some(_)) => {
                return Err("give public_key or public_key_file, not both".into());
            }
            (None, None) => return Err("public_key or public_key_file is required".into()),
        };
        let key = PublicKey::from_pem(&pem)
            .map_err(|e| format!("public key: {e}"))?
            .with_kid(self.kid.as_bytes().to_vec());
        let mut a = TrustAnchor::new(key, role);
        match (&self.vendors, role.is_publisher()) {
            (None, true) => {
                return Err(
                    "vendors is required for publisher keys (list vendor-ids, or [\"*\"])".into(),
                );
            }
            (None, false) => {}
            (Some(v), _) if v.len() == 1 && v[0] == "*" => {}
            (Some(v), _) => {
                let ids = v
                    .iter()
                    .map(|s| Uuid::parse_str(s).map_err(|_| format!("vendor {s:?} is not a UUID")))
                    .collect::<Result<Vec<_>, _>>()?;
                if ids.is_empty() {
                    return Err("vendors is empty: the key could sign for no vendor".into());
                }
                a = a.for_vendors(ids);
            }
        }
        if let Some(types) = &self.update_types {
            let t = types
                .iter()
                .map(|s| UpdateType::parse(s).ok_or_else(|| format!("update type {s:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(bad) = t.iter().find(|t| !role.may_publish(**t)) {
                return Err(format!("a {role} key can never sign {bad}"));
            }
            a = a.for_update_types(t);
        }
        if let (Some(f), Some(u)) = (self.valid_from, self.valid_until)
            && u.0 < f.0
        {
            return Err("valid_until is before valid_from".into());
        }
        Ok(
            a.valid(self.valid_from.map(|t| t.0), self.valid_until.map(|t| t.0))
                .revoked(self.is_revoked()),
        )
    }
}

/// Convenience for callers that cannot read key files: refuses `public_key_file`.
pub fn no_key_files(name: &str) -> Result<String, String> {
    Err(format!(
        "{name}: key files are not allowed here; inline the PEM"
    ))
}

impl From<TrustFileError> for Error {
    fn from(e: TrustFileError) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb\n\
bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==\n\
-----END PUBLIC KEY-----\n";
    const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";

    fn entry(extra: &str) -> String {
        format!(
            "[[key]]\nkid = \"k1\"\nrole = \"manufacturer\"\npublic_key = \"\"\"\n{PEM}\"\"\"\n{extra}\n"
        )
    }

    fn load(text: &str) -> Result<TrustStore, TrustFileError> {
        TrustStore::from_toml(text, &mut no_key_files)
    }

    #[test]
    fn full_entry_parses_and_round_trips() {
        let text = entry(&format!(
            "vendors = [\"{VENDOR}\"]\nupdate_types = [\"T2\"]\n\
             valid_from = 2026-01-01T00:00:00Z\nvalid_until = \"2027-01-01T00:00:00Z\"\n"
        ));
        let f = TrustFile::parse(&text).unwrap();
        let store = f.to_store(&mut no_key_files).unwrap();
        let a = store.by_kid(b"k1").unwrap();
        assert_eq!(a.role(), Role::Manufacturer);
        assert_eq!(a.standing(1_767_225_600 - 1), KeyStanding::NotYetValid);
        assert_eq!(a.standing(1_767_225_600), KeyStanding::InForce);
        assert_eq!(a.standing(1_798_761_601), KeyStanding::Expired);
        let again = TrustFile::parse(&f.to_toml()).unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn publisher_keys_must_be_scoped() {
        let e = load(&entry("")).unwrap_err();
        assert!(e.to_string().contains("vendors is required"), "{e}");
        let any = load(&entry("vendors = [\"*\"]")).unwrap();
        assert!(any.by_kid(b"k1").unwrap().vendors().is_none());
        assert!(load(&entry("vendors = []")).is_err());
        assert!(load(&entry("vendors = [\"acme\"]")).is_err());
    }

    #[test]
    fn invalid_entries_refuse_the_whole_file() {
        let v = format!("vendors = [\"{VENDOR}\"]");
        // A third party can never be widened to T2 by its entry.
        let third = entry(&v).replace("manufacturer", "third-party") + "update_types = [\"T2\"]\n";
        assert!(
            load(&third)
                .unwrap_err()
                .to_string()
                .contains("can never sign T2")
        );
        let twice = entry(&v) + &entry(&v);
        assert!(load(&twice).unwrap_err().to_string().contains("twice"));
        let role = entry(&v).replace("manufacturer", "Manufacturer");
        assert!(load(&role).is_err());
        assert!(load(&entry(&format!("{v}\nsurprise = 1"))).is_err());
        let backwards = entry(&format!(
            "{v}\nvalid_from = 2027-01-01T00:00:00Z\nvalid_until = 2026-01-01T00:00:00Z"
        ));
        assert!(load(&backwards).is_err());
        let bad_pem = entry(&v).replace("MFkw", "AAAA");
        assert!(load(&bad_pem).is_err());
        assert!(load(&"#".repeat(MAX_TRUST_FILE + 1)).is_err());
    }

    #[test]
    fn revocation_and_key_files() {
        let v = format!("vendors = [\"{VENDOR}\"]");
        let s = load(&entry(&format!(
            "{v}\nrevoked_at = \"2026-03-01T00:00:00Z\""
        )))
        .unwrap();
        assert_eq!(s.by_kid(b"k1").unwrap().standing(0), KeyStanding::Revoked);
        let text =
            "[[key]]\nkid = \"a\"\nrole = \"approver\"\npublic_key_file = \"approver.pem\"\n";
        assert!(load(text).is_err());
        let s = TrustStore::from_toml(text, &mut |name| {
            assert_eq!(name, "approver.pem");
            Ok(PEM.to_owned())
        })
        .unwrap();
        assert_eq!(s.by_kid(b"a").unwrap().role(), Role::Approver);
    }
}
