//! SUIT_Digest (draft-ietf-suit-manifest §10): decoding, encoding and constant-time matching.

use sha2::{Digest, Sha256};

use crate::cbor::{self, Item};
use crate::consts::alg;
use crate::error::{DecodeError, Error};
use crate::limits::Limits;

/// SUIT_Digest = [algorithm-id, bytes] (draft-ietf-suit-manifest §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuitDigest {
    /// COSE algorithm id; -16 = SHA-256.
    pub alg: i64,
    /// Digest bytes.
    pub bytes: Vec<u8>,
}

impl SuitDigest {
    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(data).into())
    }

    /// Wraps a SHA-256 value.
    pub fn from_sha256(d: [u8; 32]) -> Self {
        Self {
            alg: alg::SHA256,
            bytes: d.to_vec(),
        }
    }

    pub(crate) fn decode(item: &Item<'_>) -> Result<Self, DecodeError> {
        const AT: &str = "SUIT_Digest";
        let a = item.as_array().ok_or(DecodeError::WrongType {
            at: AT,
            expected: "[alg, bstr]",
        })?;
        match a {
            // Extensions after the two fields are allowed by the CDDL ($$SUIT_Digest-extensions).
            [alg, bytes, ..] => Ok(Self {
                alg: alg.as_i64().ok_or(DecodeError::WrongType {
                    at: AT,
                    expected: "integer algorithm id",
                })?,
                bytes: bytes
                    .as_bytes()
                    .ok_or(DecodeError::WrongType {
                        at: AT,
                        expected: "bstr digest",
                    })?
                    .to_vec(),
            }),
            _ => Err(DecodeError::WrongType {
                at: AT,
                expected: "[alg, bstr]",
            }),
        }
    }

    pub(crate) fn decode_bstr(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        Self::decode(&cbor::decode(bytes, limits)?)
    }

    /// Encoded `[alg, h'..']`.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    pub(crate) fn to_value(&self) -> ciborium::Value {
        ciborium::Value::Array(vec![
            ciborium::Value::Integer(self.alg.into()),
            ciborium::Value::Bytes(self.bytes.clone()),
        ])
    }

    /// Whether `data` has this digest, in constant time. Only SHA-256 is supported.
    pub fn matches(&self, data: &[u8]) -> Result<bool, Error> {
        self.matches_sha256(&Sha256::digest(data).into())
    }

    /// Whether a precomputed SHA-256 value equals this digest, in constant time.
    pub fn matches_sha256(&self, sha256: &[u8; 32]) -> Result<bool, Error> {
        use subtle::ConstantTimeEq;
        if self.alg != alg::SHA256 {
            return Err(Error::UnsupportedDigestAlgorithm(self.alg));
        }
        Ok(self.bytes.len() == 32 && bool::from(self.bytes.ct_eq(sha256)))
    }
}

impl std::fmt::Display for SuitDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.alg == alg::SHA256 {
            "sha-256".to_owned()
        } else {
            format!("alg {}", self.alg)
        };
        write!(f, "{name}:{}", hex::encode(&self.bytes))
    }
}
