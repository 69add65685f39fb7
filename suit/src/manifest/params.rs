//! Parameters (draft-ietf-suit-manifest §8.4.8): typed values where this implementation
//! uses them, and their strict decoding and encoding.

use uuid::Uuid;

use super::digest::SuitDigest;
use super::version::{VersionMatch, decode_version_match};
use crate::cbor::{self, Item, Value};
use crate::consts::{param, tag};
use crate::error::DecodeError;
use crate::limits::Limits;

/// A vendor identifier: an RFC 4122 UUID, or a CBOR-PEN (tag 112).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorId {
    /// UUID (§8.4.8.2).
    Uuid(Uuid),
    /// Private Enterprise Number as a relative OID (tag 112).
    Pen(Vec<u8>),
}

impl std::fmt::Display for VendorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VendorId::Uuid(u) => write!(f, "{u}"),
            VendorId::Pen(p) => write!(f, "pen:{}", hex::encode(p)),
        }
    }
}

/// A parameter value (§8.4.8), typed where this implementation uses it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// vendor-id.
    Vendor(VendorId),
    /// class-id, device-id.
    Uuid(Uuid),
    /// image-digest.
    Digest(SuitDigest),
    /// image-size, component-slot, source-component, use-before, ...
    Uint(u64),
    /// strict-order, soft-failure.
    Bool(bool),
    /// uri.
    Text(String),
    /// content, fetch-arguments, invoke-args.
    Bytes(Vec<u8>),
    /// encryption-info: the encoded COSE_Encrypt / COSE_Encrypt0 (parsed when used).
    EncryptionInfo(Vec<u8>),
    /// version (update-management).
    Version(VersionMatch),
    /// Anything else, kept for inspection.
    Other(ciborium::Value),
}

/// A parameter map: `{+ label => value}`.
pub type Parameters = Vec<(i64, Param)>;

pub(super) fn decode_params(item: &Item<'_>, limits: &Limits) -> Result<Parameters, DecodeError> {
    const AT: &str = "parameters";
    let wrong = |expected| DecodeError::WrongType { at: AT, expected };
    let map = item.as_map().ok_or(wrong("map"))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = k.as_i64().ok_or(wrong("integer parameter labels"))?;
        let p = match key {
            param::VENDOR_IDENTIFIER => match &v.value {
                Value::Bytes(b) => Param::Vendor(VendorId::Uuid(
                    Uuid::from_slice(b).map_err(|_| wrong("16-byte UUID vendor-id"))?,
                )),
                Value::Tag(tag::CBOR_PEN, inner) => Param::Vendor(VendorId::Pen(
                    inner.as_bytes().ok_or(wrong("CBOR-PEN bstr"))?.to_vec(),
                )),
                _ => return Err(wrong("vendor-id as UUID bstr or CBOR-PEN")),
            },
            param::CLASS_IDENTIFIER | param::DEVICE_IDENTIFIER => Param::Uuid(
                v.as_bytes()
                    .and_then(|b| Uuid::from_slice(b).ok())
                    .ok_or(wrong("16-byte UUID"))?,
            ),
            param::IMAGE_DIGEST => Param::Digest(SuitDigest::decode_bstr(
                v.as_bytes().ok_or(wrong("bstr .cbor SUIT_Digest"))?,
                limits,
            )?),
            param::IMAGE_SIZE
            | param::COMPONENT_SLOT
            | param::SOURCE_COMPONENT
            | param::USE_BEFORE
            | param::MINIMUM_BATTERY => Param::Uint(v.as_u64().ok_or(wrong("uint"))?),
            param::STRICT_ORDER | param::SOFT_FAILURE => match v.value {
                Value::Bool(b) => Param::Bool(b),
                _ => return Err(wrong("bool")),
            },
            param::URI => Param::Text(v.as_text().ok_or(wrong("tstr uri"))?.to_owned()),
            param::CONTENT | param::FETCH_ARGUMENTS | param::INVOKE_ARGS => {
                Param::Bytes(v.as_bytes().ok_or(wrong("bstr"))?.to_vec())
            }
            param::ENCRYPTION_INFO => {
                let b = v
                    .as_bytes()
                    .ok_or(wrong("bstr .cbor SUIT_Encryption_Info"))?;
                // Well-formedness now; algorithms are checked when decryption needs them.
                cbor::decode(b, limits)?;
                Param::EncryptionInfo(b.to_vec())
            }
            param::VERSION => {
                let b = v.as_bytes().ok_or(wrong("bstr .cbor version match"))?;
                Param::Version(decode_version_match(&cbor::decode(b, limits)?)?)
            }
            _ => Param::Other(v.to_owned_value()),
        };
        out.push((key, p));
    }
    Ok(out)
}

pub(super) fn params_to_value(p: &Parameters) -> ciborium::Value {
    use ciborium::Value as V;
    V::Map(
        p.iter()
            .map(|(k, v)| {
                let val = match v {
                    Param::Vendor(VendorId::Uuid(u)) | Param::Uuid(u) => {
                        V::Bytes(u.as_bytes().to_vec())
                    }
                    Param::Vendor(VendorId::Pen(b)) => {
                        V::Tag(tag::CBOR_PEN, Box::new(V::Bytes(b.clone())))
                    }
                    Param::Digest(d) => V::Bytes(d.encode()),
                    Param::Uint(n) => V::Integer((*n).into()),
                    Param::Bool(b) => V::Bool(*b),
                    Param::Text(t) => V::Text(t.clone()),
                    Param::Bytes(b) | Param::EncryptionInfo(b) => V::Bytes(b.clone()),
                    Param::Version(vm) => V::Bytes(cbor::encode(&vm.to_value())),
                    Param::Other(o) => o.clone(),
                };
                (V::Integer((*k).into()), val)
            })
            .collect(),
    )
}
