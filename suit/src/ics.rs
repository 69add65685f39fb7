//! ICS metadata: this project's signed release metadata inside the manifest, at the
//! Private Use manifest key [`crate::consts::manifest::ICS_METADATA`] (-1000).
//!
//! ```cddl
//! ICS_Metadata = {
//!   1 => uint,            ; update type: 1 = T1 application, 2 = T2 manufacturer, 3 = T3 third party
//!   ? 2 => [+ uint],      ; categories: 1 bugfix, 2 security, 3 enhancement, 4 announcement
//!   ? 3 => [+ tstr],      ; CVE identifiers, "CVE-YYYY-NNNN"
//!   ? 4 => uint,          ; severity: 0 none, 1 low, 2 medium, 3 high, 4 critical
//!   ? 5 => tstr,          ; author identity
//!   ? 6 => bool,          ; reboot needed
//!   ? 7 => tstr,          ; release notes
//!   ? 8 => bstr .cbor COSE_Sign1_Tagged,  ; T3: author's signature over the plaintext SUIT_Digest
//! }
//! ```

use std::fmt;

use crate::cbor::{Item, Value};
use crate::error::DecodeError;

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:expr, $text:expr;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $var = $val,)+ }
        impl $name {
            /// The CBOR integer.
            pub fn code(self) -> u64 { self as u64 }
            /// From the CBOR integer.
            pub fn from_code(c: u64) -> Option<Self> {
                match c { $($val => Some(Self::$var),)+ _ => None }
            }
            /// The name used on command lines and in JSON.
            pub fn name(self) -> &'static str {
                match self { $(Self::$var => $text,)+ }
            }
            /// Parses the name used on command lines and in JSON (case-insensitive).
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($text) { return Some(Self::$var); })+
                None
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

int_enum!(
    /// Who publishes the update (DESIGN.md §2).
    UpdateType {
        /// Application by the plant's own engineers or a third party.
        T1 = 1, "T1";
        /// Manufacturer firmware or library.
        T2 = 2, "T2";
        /// Third-party firmware or library published by the manufacturer.
        T3 = 3, "T3";
    }
);

int_enum!(
    /// What the update is about.
    Category {
        /// Fixes defects.
        Bugfix = 1, "bugfix";
        /// Fixes vulnerabilities.
        Security = 2, "security";
        /// Adds features.
        Enhancement = 3, "enhancement";
        /// Informational.
        Announcement = 4, "announcement";
    }
);

int_enum!(
    /// Severity of what the update fixes.
    Severity {
        /// None.
        None = 0, "none";
        /// Low.
        Low = 1, "low";
        /// Medium.
        Medium = 2, "medium";
        /// High.
        High = 3, "high";
        /// Critical.
        Critical = 4, "critical";
    }
);

/// Signed ICS metadata of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsMetadata {
    /// T1, T2 or T3.
    pub update_type: UpdateType,
    /// Categories.
    pub categories: Vec<Category>,
    /// CVE identifiers.
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Option<Severity>,
    /// Author identity.
    pub author: Option<String>,
    /// Whether the device must reboot.
    pub reboot: bool,
    /// Release notes.
    pub notes: Option<String>,
    /// T3: the author's COSE_Sign1_Tagged over the plaintext image's SUIT_Digest.
    pub author_signature: Option<Vec<u8>>,
}

impl IcsMetadata {
    /// Metadata with only an update type.
    pub fn new(update_type: UpdateType) -> Self {
        Self {
            update_type,
            categories: Vec::new(),
            cves: Vec::new(),
            severity: None,
            author: None,
            reboot: false,
            notes: None,
            author_signature: None,
        }
    }

    pub(crate) fn decode(item: &Item<'_>) -> Result<Self, DecodeError> {
        const AT: &str = "ICS metadata";
        let wrong = |expected| DecodeError::WrongType { at: AT, expected };
        let map = item.as_map().ok_or(wrong("map"))?;
        let mut out = IcsMetadata::new(UpdateType::T1);
        let mut have_type = false;
        for (k, v) in map {
            match k.as_i64() {
                Some(1) => {
                    out.update_type = v.as_u64().and_then(UpdateType::from_code).ok_or(
                        DecodeError::InvalidValue {
                            at: AT,
                            reason: "update type must be 1 (T1), 2 (T2) or 3 (T3)",
                        },
                    )?;
                    have_type = true;
                }
                Some(2) => {
                    for c in v.as_array().ok_or(wrong("array of categories"))? {
                        out.categories
                            .push(c.as_u64().and_then(Category::from_code).ok_or(
                                DecodeError::InvalidValue {
                                    at: AT,
                                    reason: "unknown category",
                                },
                            )?);
                    }
                }
                Some(3) => {
                    for c in v.as_array().ok_or(wrong("array of CVE ids"))? {
                        let id = c.as_text().ok_or(wrong("CVE id text"))?;
                        if !is_cve_id(id) {
                            return Err(DecodeError::InvalidValue {
                                at: AT,
                                reason: "CVE id must look like CVE-YYYY-NNNN",
                            });
                        }
                        out.cves.push(id.to_owned());
                    }
                }
                Some(4) => {
                    out.severity = Some(v.as_u64().and_then(Severity::from_code).ok_or(
                        DecodeError::InvalidValue {
                            at: AT,
                            reason: "severity must be 0..=4",
                        },
                    )?)
                }
                Some(5) => out.author = Some(v.as_text().ok_or(wrong("author text"))?.to_owned()),
                Some(6) => {
                    out.reboot = match v.value {
                        Value::Bool(b) => b,
                        _ => return Err(wrong("reboot bool")),
                    }
                }
                Some(7) => out.notes = Some(v.as_text().ok_or(wrong("notes text"))?.to_owned()),
                Some(8) => {
                    out.author_signature =
                        Some(v.as_bytes().ok_or(wrong("author signature bstr"))?.to_vec())
                }
                Some(key) => return Err(DecodeError::UnknownMember { at: AT, key }),
                None => return Err(wrong("integer keys")),
            }
        }
        if !have_type {
            return Err(DecodeError::MissingMember { at: AT, member: 1 });
        }
        Ok(out)
    }

    pub(crate) fn to_value(&self) -> ciborium::Value {
        use ciborium::Value as V;
        let int = |n: u64| V::Integer(n.into());
        let mut m = vec![(int(1), int(self.update_type.code()))];
        if !self.categories.is_empty() {
            m.push((
                int(2),
                V::Array(self.categories.iter().map(|c| int(c.code())).collect()),
            ));
        }
        if !self.cves.is_empty() {
            m.push((
                int(3),
                V::Array(self.cves.iter().map(|c| V::Text(c.clone())).collect()),
            ));
        }
        if let Some(s) = self.severity {
            m.push((int(4), int(s.code())));
        }
        if let Some(a) = &self.author {
            m.push((int(5), V::Text(a.clone())));
        }
        if self.reboot {
            m.push((int(6), V::Bool(true)));
        }
        if let Some(n) = &self.notes {
            m.push((int(7), V::Text(n.clone())));
        }
        if let Some(s) = &self.author_signature {
            m.push((int(8), V::Bytes(s.clone())));
        }
        V::Map(m)
    }
}

/// Whether `id` has the shape `CVE-YYYY-NNNN` (four or more digits in the last part).
pub fn is_cve_id(id: &str) -> bool {
    let mut parts = id.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("CVE"), Some(y), Some(n), None)
            if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit())
                && (4..=12).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_shapes() {
        assert!(is_cve_id("CVE-2024-12345"));
        assert!(!is_cve_id("CVE-24-1234"));
        assert!(!is_cve_id("CVE-2024-12a4"));
        assert!(!is_cve_id("cve-2024-1234-1"));
    }

    #[test]
    fn roundtrip() {
        let mut m = IcsMetadata::new(UpdateType::T3);
        m.categories = vec![Category::Security, Category::Bugfix];
        m.cves = vec!["CVE-2026-0001".into()];
        m.severity = Some(Severity::High);
        m.reboot = true;
        m.author = Some("ACME libs".into());
        m.author_signature = Some(vec![1, 2, 3]);
        let bytes = crate::cbor::encode(&m.to_value());
        let item = crate::cbor::decode(&bytes, &Default::default()).unwrap();
        assert_eq!(IcsMetadata::decode(&item).unwrap(), m);
    }
}
