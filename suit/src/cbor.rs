//! Strict, bounded CBOR reading that keeps the received bytes of every item.
//!
//! SUIT digests and COSE signatures are computed over *received* bytes (the manifest bstr
//! including its CBOR head, the encoded SUIT_Digest, protected headers), so the decoder must
//! hand back the exact byte span of each item. `ciborium` decodes values but drops spans and
//! silently accepts duplicate map keys, so this module walks the item structure itself and
//! uses `ciborium-ll` only to decode each item head (RFC 8949 §3).
//!
//! Strictness (each a typed [`DecodeError`]):
//! * no trailing bytes after the top-level item;
//! * no duplicate map keys (RFC 8949 §5.6: a map with duplicate keys is not valid);
//! * no `undefined` or unassigned simple values;
//! * definite lengths only (Off-spec for generic CBOR, but SUIT and COSE objects are always
//!   definite-length and deterministic encoding requires it, RFC 8949 §4.2.1);
//! * nesting depth, collection sizes and total item count bounded by [`Limits`].

use ciborium_ll::{Decoder, Header};

use crate::error::DecodeError;
use crate::limits::Limits;

/// A decoded CBOR item borrowing from the input, with the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    /// The decoded value.
    pub value: Value<'a>,
    /// The exact encoded bytes of this item (head and content).
    pub raw: &'a [u8],
}

/// A CBOR value (RFC 8949 §3.1 major types).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    Uint(u64),
    /// A negative integer `-1 - n`, stored as `n`.
    Nint(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Item<'a>>),
    Map(Vec<(Item<'a>, Item<'a>)>),
    Tag(u64, Box<Item<'a>>),
    Bool(bool),
    Null,
    Float(f64),
}

impl<'a> Item<'a> {
    /// The value as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Uint(n) => i64::try_from(n).ok(),
            Value::Nint(n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    /// The value as a `u64`, if it is an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self.value {
            Value::Uint(n) => Some(n),
            _ => None,
        }
    }

    /// The content of a byte string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The content of a text string.
    pub fn as_text(&self) -> Option<&'a str> {
        match self.value {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Item<'a>]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entries of a map.
    pub fn as_map(&self) -> Option<&[(Item<'a>, Item<'a>)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A short name of the item's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Uint(_) => "uint",
            Value::Nint(_) => "nint",
            Value::Bytes(_) => "bstr",
            Value::Text(_) => "tstr",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tag(..) => "tag",
            Value::Bool(_) => "bool",
            Value::Null => "null",
            Value::Float(_) => "float",
        }
    }

    /// Converts to an owned `ciborium::Value` (for inspection output and re-encoding).
    pub fn to_owned_value(&self) -> ciborium::Value {
        use ciborium::Value as V;
        match &self.value {
            Value::Uint(n) => V::Integer((*n).into()),
            Value::Nint(n) => V::Integer((-1 - i128::from(*n)).try_into().unwrap_or(0.into())),
            Value::Bytes(b) => V::Bytes(b.to_vec()),
            Value::Text(t) => V::Text((*t).to_owned()),
            Value::Array(a) => V::Array(a.iter().map(Item::to_owned_value).collect()),
            Value::Map(m) => V::Map(
                m.iter()
                    .map(|(k, v)| (k.to_owned_value(), v.to_owned_value()))
                    .collect(),
            ),
            Value::Tag(t, i) => V::Tag(*t, Box::new(i.to_owned_value())),
            Value::Bool(b) => V::Bool(*b),
            Value::Null => V::Null,
            Value::Float(f) => V::Float(*f),
        }
    }
}

/// Decodes exactly one CBOR item from `input`; trailing bytes are an error.
pub fn decode<'a>(input: &'a [u8], limits: &Limits) -> Result<Item<'a>, DecodeError> {
    let mut r = Reader {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let item = r.item(0)?;
    if r.pos != input.len() {
        return Err(DecodeError::TrailingBytes {
            count: input.len() - r.pos,
        });
    }
    Ok(item)
}

struct Reader<'a, 'l> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: &'l Limits,
}

impl<'a> Reader<'a, '_> {
    fn head(&mut self) -> Result<Header, DecodeError> {
        let rest = &self.input[self.pos..];
        if rest.is_empty() {
            return Err(DecodeError::Truncated);
        }
        let mut dec = Decoder::from(rest);
        let header = dec.pull().map_err(|e| match e {
            ciborium_ll::Error::Io(_) => DecodeError::Truncated,
            ciborium_ll::Error::Syntax(at) => DecodeError::Malformed {
                offset: self.pos + at,
            },
        })?;
        let used = dec.offset();
        // RFC 8949 §4.2.1 (preferred serialization): the argument uses the shortest form.
        // Accepting longer forms would let anyone re-encode unsigned parts of an envelope
        // (e.g. the authentication wrapper's bstr head) into different bytes that still verify.
        let argument = match header {
            Header::Positive(n) | Header::Negative(n) | Header::Tag(n) => Some(n),
            Header::Bytes(Some(n))
            | Header::Text(Some(n))
            | Header::Array(Some(n))
            | Header::Map(Some(n)) => Some(n as u64),
            _ => None,
        };
        if let Some(n) = argument {
            let shortest = match n {
                0..=23 => 1,
                24..=0xff => 2,
                0x100..=0xffff => 3,
                0x1_0000..=0xffff_ffff => 5,
                _ => 9,
            };
            if used != shortest {
                return Err(DecodeError::NonMinimal { offset: self.pos });
            }
        }
        self.pos += used;
        Ok(header)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(DecodeError::Truncated)?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn count(&mut self, len: usize, what: &'static str) -> Result<(), DecodeError> {
        if len > self.limits.max_collection_len {
            return Err(DecodeError::LimitExceeded {
                what,
                limit: self.limits.max_collection_len,
            });
        }
        // Each element takes at least one byte; reject lengths the input cannot hold before
        // allocating (an attacker-controlled length must not drive allocation).
        if len > self.input.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    fn item(&mut self, depth: usize) -> Result<Item<'a>, DecodeError> {
        if depth > self.limits.max_depth {
            return Err(DecodeError::LimitExceeded {
                what: "nesting depth",
                limit: self.limits.max_depth,
            });
        }
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(DecodeError::LimitExceeded {
                what: "number of CBOR items",
                limit: self.limits.max_items,
            });
        }
        let start = self.pos;
        let value = match self.head()? {
            Header::Positive(n) => Value::Uint(n),
            Header::Negative(n) => Value::Nint(n),
            Header::Float(f) => Value::Float(f),
            Header::Simple(20) => Value::Bool(false),
            Header::Simple(21) => Value::Bool(true),
            Header::Simple(22) => Value::Null,
            // `undefined` and unassigned simple values never occur in SUIT or COSE, and
            // ciborium (hence coset) reads `undefined` as null: accepting it would let
            // anyone turn a COSE nil payload (0xf6) into 0xf7 and still verify.
            Header::Simple(_) => return Err(DecodeError::Malformed { offset: start }),
            Header::Break => return Err(DecodeError::Malformed { offset: start }),
            Header::Bytes(None) | Header::Text(None) | Header::Array(None) | Header::Map(None) => {
                return Err(DecodeError::IndefiniteLength { offset: start });
            }
            Header::Bytes(Some(len)) => {
                if len > self.limits.max_bstr_len {
                    return Err(DecodeError::LimitExceeded {
                        what: "byte string length",
                        limit: self.limits.max_bstr_len,
                    });
                }
                Value::Bytes(self.take(len)?)
            }
            Header::Text(Some(len)) => {
                if len > self.limits.max_text_len {
                    return Err(DecodeError::LimitExceeded {
                        what: "text string length",
                        limit: self.limits.max_text_len,
                    });
                }
                let bytes = self.take(len)?;
                Value::Text(
                    std::str::from_utf8(bytes)
                        .map_err(|_| DecodeError::InvalidUtf8 { offset: start })?,
                )
            }
            Header::Array(Some(len)) => {
                self.count(len, "array length")?;
                let mut v = Vec::with_capacity(len);
                for _ in 0..len {
                    v.push(self.item(depth + 1)?);
                }
                Value::Array(v)
            }
            Header::Map(Some(len)) => {
                self.count(len, "map length")?;
                let mut v: Vec<(Item<'a>, Item<'a>)> = Vec::with_capacity(len);
                for _ in 0..len {
                    let key_at = self.pos;
                    let k = self.item(depth + 1)?;
                    // RFC 8949 §5.6: duplicate keys make the map invalid. Integer keys are
                    // compared by value (so a non-minimal encoding cannot hide a duplicate),
                    // other keys by their encoding.
                    if v.iter().any(|(old, _)| same_key(old, &k)) {
                        return Err(DecodeError::DuplicateKey { offset: key_at });
                    }
                    let val = self.item(depth + 1)?;
                    v.push((k, val));
                }
                Value::Map(v)
            }
            Header::Tag(t) => Value::Tag(t, Box::new(self.item(depth + 1)?)),
        };
        Ok(Item {
            value,
            raw: &self.input[start..self.pos],
        })
    }
}

fn same_key(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (&a.value, &b.value) {
        (Value::Uint(x), Value::Uint(y)) | (Value::Nint(x), Value::Nint(y)) => x == y,
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        _ => a.raw == b.raw,
    }
}

/// Encodes a `ciborium::Value` (definite lengths, shortest heads, order as given).
pub fn encode(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for the value types this crate builds.
    if ciborium::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// The CBOR head of a byte string of `len` bytes (RFC 8949 §3, shortest form).
pub fn bstr_head(len: usize) -> Vec<u8> {
    let len = len as u64;
    match len {
        0..=23 => vec![0x40 | len as u8],
        24..=0xff => vec![0x58, len as u8],
        0x100..=0xffff => {
            let mut v = vec![0x59];
            v.extend_from_slice(&(len as u16).to_be_bytes());
            v
        }
        0x1_0000..=0xffff_ffff => {
            let mut v = vec![0x5a];
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![0x5b];
            v.extend_from_slice(&len.to_be_bytes());
            v
        }
    }
}

/// Wraps `content` as an encoded CBOR byte string.
pub fn bstr_wrap(content: &[u8]) -> Vec<u8> {
    let mut v = bstr_head(content.len());
    v.extend_from_slice(content);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn keeps_raw_spans() {
        // {3: h'0102', 2: [1, -2]}
        let bytes = hex::decode("a203420102028201 21".replace(' ', "")).unwrap();
        let item = decode(&bytes, &lim()).unwrap();
        let m = item.as_map().unwrap();
        assert_eq!(m[0].1.raw, &[0x42, 1, 2]);
        assert_eq!(m[1].1.as_array().unwrap()[1].as_i64(), Some(-2));
    }

    #[test]
    fn rejects_trailing_bytes() {
        assert_eq!(
            decode(&[0x01, 0x02], &lim()),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn rejects_duplicate_keys_even_non_minimal() {
        // {1: 0, 1: 0} and {1: 0, (1 encoded on two bytes): 0}
        assert!(matches!(
            decode(&[0xa2, 0x01, 0x00, 0x01, 0x00], &lim()),
            Err(DecodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            decode(&[0xa2, 0x01, 0x00, 0x18, 0x01, 0x00], &lim()),
            Err(DecodeError::NonMinimal { .. })
        ));
    }

    #[test]
    fn rejects_undefined_and_simple_values() {
        // [null] is fine; [undefined] and [simple(16)] are not.
        assert!(decode(&[0x81, 0xf6], &lim()).is_ok());
        assert!(matches!(
            decode(&[0x81, 0xf7], &lim()),
            Err(DecodeError::Malformed { offset: 1 })
        ));
        assert!(decode(&[0x81, 0xf0], &lim()).is_err());
    }

    #[test]
    fn rejects_non_minimal_heads() {
        // 0x58 0x02: a two-byte bstr whose length fits in the initial byte.
        assert!(matches!(
            decode(&[0x58, 0x02, 1, 2], &lim()),
            Err(DecodeError::NonMinimal { offset: 0 })
        ));
        // The same with the shortest head is fine.
        assert!(decode(&[0x42, 1, 2], &lim()).is_ok());
        // Tag 107 as d9 00 6b instead of d8 6b.
        assert!(matches!(
            decode(&[0xd9, 0x00, 0x6b, 0x01], &lim()),
            Err(DecodeError::NonMinimal { .. })
        ));
    }

    #[test]
    fn rejects_indefinite_and_truncated() {
        assert!(matches!(
            decode(&[0x9f, 0x01, 0xff], &lim()),
            Err(DecodeError::IndefiniteLength { .. })
        ));
        assert_eq!(decode(&[0x43, 1, 2], &lim()), Err(DecodeError::Truncated));
        // A huge declared array length must not allocate.
        assert!(
            decode(
                &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                &lim()
            )
            .is_err()
        );
    }

    #[test]
    fn bounds_depth() {
        let mut deep = vec![0x81; 100];
        deep.push(0x01);
        assert!(matches!(
            decode(&deep, &lim()),
            Err(DecodeError::LimitExceeded {
                what: "nesting depth",
                ..
            })
        ));
    }

    #[test]
    fn bstr_head_matches_ciborium() {
        for len in [0usize, 23, 24, 255, 256, 65535, 65536] {
            let v = ciborium::Value::Bytes(vec![0; len]);
            let enc = encode(&v);
            assert_eq!(bstr_head(len), enc[..enc.len() - len]);
        }
    }
}
