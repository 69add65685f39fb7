//! Version matching (draft-ietf-suit-update-management §4.6): the comparison a manifest
//! states, how installed versions satisfy it, and the `X.Y.Z` text form.

use crate::cbor::{self, Item};
use crate::consts::version_cmp;
use crate::error::DecodeError;
use crate::limits::Limits;

/// A version comparison: `[comparison-type, [+int]]` (draft-ietf-suit-update-management §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMatch {
    /// 1 greater, 2 greater-equal, 3 equal, 4 lesser-equal, 5 lesser.
    pub comparison: u64,
    /// Version components, most significant first.
    pub version: Vec<i64>,
}

impl VersionMatch {
    /// Whether `installed` satisfies this comparison.
    pub fn satisfied_by(&self, installed: &[i64]) -> bool {
        use std::cmp::Ordering::*;
        let ord = compare_versions(installed, &self.version);
        match self.comparison {
            version_cmp::GREATER => ord == Greater,
            version_cmp::GREATER_EQUAL => ord != Less,
            version_cmp::EQUAL => ord == Equal,
            version_cmp::LESSER_EQUAL => ord != Greater,
            version_cmp::LESSER => ord == Less,
            _ => false,
        }
    }

    /// The comparison as text, e.g. `>= 1.2.0`.
    pub fn describe(&self) -> String {
        let op = match self.comparison {
            version_cmp::GREATER => ">",
            version_cmp::GREATER_EQUAL => ">=",
            version_cmp::EQUAL => "==",
            version_cmp::LESSER_EQUAL => "<=",
            version_cmp::LESSER => "<",
            _ => "?",
        };
        format!("{op} {}", format_version(&self.version))
    }

    pub(super) fn to_value(&self) -> ciborium::Value {
        use ciborium::Value as V;
        V::Array(vec![
            V::Integer(self.comparison.into()),
            V::Array(
                self.version
                    .iter()
                    .map(|v| V::Integer((*v).into()))
                    .collect(),
            ),
        ])
    }
}

/// Compares versions component by component; missing trailing components count as 0.
pub fn compare_versions(a: &[i64], b: &[i64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => continue,
            o => return o,
        }
    }
    std::cmp::Ordering::Equal
}

/// Parses `X.Y.Z` (one or more non-negative integers separated by dots).
pub fn parse_version(s: &str) -> Option<Vec<i64>> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    s.split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<i64>().ok()
            }
        })
        .collect()
}

/// Formats a version as `X.Y.Z`.
pub fn format_version(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(".")
}

pub(super) fn decode_version_match(item: &Item<'_>) -> Result<VersionMatch, DecodeError> {
    let wrong = DecodeError::WrongType {
        at: "version match",
        expected: "[comparison, [+int]]",
    };
    let a = item.as_array().ok_or(wrong.clone())?;
    let [cmp, ver] = a else { return Err(wrong) };
    let comparison =
        cmp.as_u64()
            .filter(|c| (1..=5).contains(c))
            .ok_or(DecodeError::InvalidValue {
                at: "version match",
                reason: "comparison type must be 1..=5",
            })?;
    let version = ver
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or(wrong.clone())?
        .iter()
        .map(|i| i.as_i64().ok_or(wrong.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VersionMatch {
        comparison,
        version,
    })
}

/// Decodes the content of the manifest's set-version member (update-management:
/// SUIT_Condition_Version_Comparison_Value = [+int]) as an equality match.
pub(super) fn decode_set_version(
    bytes: &[u8],
    limits: &Limits,
) -> Result<VersionMatch, DecodeError> {
    let wrong = |expected| DecodeError::WrongType {
        at: "manifest",
        expected,
    };
    let inner = cbor::decode(bytes, limits)?;
    let version = inner
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or(wrong("[+int] set-version"))?
        .iter()
        .map(|i| i.as_i64().ok_or(wrong("int version component")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VersionMatch {
        comparison: version_cmp::EQUAL,
        version,
    })
}

/// Encodes a set-version value `[+int]`.
pub(crate) fn encode_set_version(v: &[i64]) -> Vec<u8> {
    cbor::encode(&ciborium::Value::Array(
        v.iter()
            .map(|x| ciborium::Value::Integer((*x).into()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compare() {
        assert_eq!(parse_version("1.2.3"), Some(vec![1, 2, 3]));
        assert_eq!(parse_version("1..3"), None);
        assert_eq!(parse_version("1.a"), None);
        let ge = VersionMatch {
            comparison: version_cmp::GREATER_EQUAL,
            version: vec![1, 2],
        };
        assert!(ge.satisfied_by(&[1, 2, 0]));
        assert!(ge.satisfied_by(&[1, 10]));
        assert!(!ge.satisfied_by(&[1, 1, 9]));
    }
}
