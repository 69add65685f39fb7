//! SUIT_Envelope decoding and encoding (draft-ietf-suit-manifest §8.2, §8.3).
//!
//! The decoded [`Envelope`] keeps the received bytes of everything that is digested or
//! signed: the manifest bstr (with its CBOR head), the encoded SUIT_Digest that the
//! authentication blocks sign, and each envelope member, so that adding an approval
//! signature changes nothing but the authentication wrapper.

use sha2::{Digest, Sha256};

use crate::cbor::{self, Item, Value};
use crate::consts::{envelope as ek, tag};
use crate::cose::AuthBlock;
use crate::error::{DecodeError, Error};
use crate::limits::Limits;
use crate::manifest::{CommandSequence, Manifest, Severable, SuitDigest};

/// An authentication block as received: its bytes and its parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedAuthBlock {
    /// The COSE object bytes (content of the bstr in the authentication wrapper).
    pub bytes: Vec<u8>,
    /// Parsed.
    pub block: AuthBlock,
}

/// A decoded, **not yet accepted** SUIT envelope: read-only, for inspection. Use
/// [`crate::accept`] to obtain a [`crate::Accepted`] before acting on anything in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The manifest digest claimed by the authentication wrapper.
    pub(crate) digest: SuitDigest,
    /// Encoded SUIT_Digest as received: the detached payload of every authentication block.
    pub(crate) digest_bytes: Vec<u8>,
    /// Authentication blocks, in order.
    pub(crate) auth_blocks: Vec<ReceivedAuthBlock>,
    /// The manifest bstr as received, including its CBOR head (what the digest covers).
    pub(crate) manifest_bstr: Vec<u8>,
    /// The decoded manifest.
    pub(crate) manifest: Manifest,
    /// Integrated payloads (tstr keys), by key.
    pub(crate) integrated_payloads: Vec<(String, Vec<u8>)>,
    /// Envelope members other than the authentication wrapper: (raw key, raw value).
    members: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Envelope {
    /// Decodes an envelope strictly within `limits`. Severed members carried by the
    /// envelope must match their digests in the manifest (§8.4.6).
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        if bytes.len() > limits.max_envelope_len {
            return Err(DecodeError::LimitExceeded {
                what: "envelope size",
                limit: limits.max_envelope_len,
            }
            .into());
        }
        let item = cbor::decode(bytes, limits)?;
        // §8.2: SUIT_Envelope_Tagged = #6.107(SUIT_Envelope).
        let Value::Tag(tag::SUIT_ENVELOPE, inner) = &item.value else {
            return Err(DecodeError::NotEnvelope.into());
        };
        let map = inner.as_map().ok_or(DecodeError::NotEnvelope)?;
        let members = Members::sort(map)?;
        let auth = AuthWrapper::decode(members.auth, limits)?;
        let manifest_content = members.manifest.as_bytes().unwrap_or_default();
        let mut manifest = Manifest::decode(manifest_content, limits)?;
        for (key, item) in &members.severed {
            supply_severed(&mut manifest, *key, item, limits)?;
        }
        Ok(Envelope {
            digest: auth.digest,
            digest_bytes: auth.digest_bytes,
            auth_blocks: auth.blocks,
            manifest_bstr: members.manifest.raw.to_vec(),
            manifest,
            integrated_payloads: members.integrated_payloads,
            members: members.raw,
        })
    }

    /// The manifest digest claimed by the authentication wrapper.
    pub fn digest(&self) -> &SuitDigest {
        &self.digest
    }

    /// The authentication blocks as received, in order.
    pub fn auth_blocks(&self) -> &[ReceivedAuthBlock] {
        &self.auth_blocks
    }

    /// The decoded manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Integrated payloads (tstr keys), by key.
    pub fn integrated_payloads(&self) -> &[(String, Vec<u8>)] {
        &self.integrated_payloads
    }

    /// The members other than the wrapper as received: (raw key, raw value).
    #[cfg(feature = "test-corpus")]
    pub(crate) fn members_raw(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.members
    }

    /// Whether the envelope carries the member with this integer key.
    pub fn has_member(&self, key: i64) -> bool {
        let raw = cbor::encode(&ciborium::Value::Integer(key.into()));
        self.members.iter().any(|(k, _)| *k == raw)
    }

    /// Release identity: hex SHA-256 of the manifest bstr (DESIGN.md §3).
    pub fn release_id(&self) -> String {
        hex::encode(Sha256::digest(&self.manifest_bstr))
    }

    /// The SHA-256 of the manifest bstr as received.
    pub fn computed_manifest_digest(&self) -> [u8; 32] {
        Sha256::digest(&self.manifest_bstr).into()
    }

    /// The bytes every authentication block signs (the encoded SUIT_Digest).
    pub fn signed_payload(&self) -> &[u8] {
        &self.digest_bytes
    }

    /// Re-encodes the envelope with `block` appended to the authentication wrapper. Every
    /// other member keeps its received bytes, so the manifest digest is unchanged.
    pub(crate) fn encode_with_extra_block(&self, block: &[u8]) -> Vec<u8> {
        let mut blocks: Vec<&[u8]> = self.auth_blocks.iter().map(|b| &b.bytes[..]).collect();
        blocks.push(block);
        self.encode_with_blocks(&blocks)
    }

    /// Encodes the envelope with the given authentication blocks (tests build hostile
    /// envelopes with it; nothing it makes is accepted without [`crate::accept`]).
    pub fn encode_with_blocks(&self, blocks: &[&[u8]]) -> Vec<u8> {
        encode_envelope(&self.digest_bytes, blocks, &self.members)
    }
}

const AT: &str = "envelope";

fn wrong(expected: &'static str) -> DecodeError {
    DecodeError::WrongType { at: AT, expected }
}

/// The members of an envelope map (§8.2), sorted by what they are. Each member but the
/// authentication wrapper is also kept as received.
struct Members<'a> {
    /// The content of the authentication wrapper bstr.
    auth: &'a [u8],
    /// The manifest bstr.
    manifest: Item<'a>,
    /// Severed members carried by the envelope: (envelope key, bstr).
    severed: Vec<(i64, Item<'a>)>,
    /// §7.6: integrated payloads, keyed by text.
    integrated_payloads: Vec<(String, Vec<u8>)>,
    /// Every member but the authentication wrapper: (raw key, raw value).
    raw: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Members<'a> {
    /// Sorts the members; unknown keys, wrong types and a missing wrapper or manifest are
    /// errors.
    fn sort(map: &[(Item<'a>, Item<'a>)]) -> Result<Self, DecodeError> {
        let mut auth = None;
        let mut manifest = None;
        let mut severed = Vec::new();
        let mut integrated_payloads = Vec::new();
        let mut raw = Vec::new();
        for (k, v) in map {
            if let Some(name) = k.as_text() {
                // §7.6: integrated payloads are keyed by text.
                let b = v.as_bytes().ok_or(wrong("bstr integrated payload"))?;
                integrated_payloads.push((name.to_owned(), b.to_vec()));
                raw.push((k.raw.to_vec(), v.raw.to_vec()));
                continue;
            }
            let key = k.as_i64().ok_or(wrong("integer or text member keys"))?;
            match key {
                ek::AUTHENTICATION_WRAPPER => {
                    auth = Some(v.as_bytes().ok_or(wrong("bstr authentication wrapper"))?)
                }
                ek::MANIFEST => {
                    v.as_bytes().ok_or(wrong("bstr manifest"))?;
                    manifest = Some(v.clone());
                    raw.push((k.raw.to_vec(), v.raw.to_vec()));
                }
                ek::PAYLOAD_FETCH
                | ek::INSTALL
                | ek::TEXT
                | ek::DEPENDENCY_RESOLUTION
                | ek::CANDIDATE_VERIFICATION => {
                    v.as_bytes().ok_or(wrong("bstr severed member"))?;
                    severed.push((key, v.clone()));
                    raw.push((k.raw.to_vec(), v.raw.to_vec()));
                }
                // Delegation chains (trust-domains) are kept for inspection, not processed.
                ek::DELEGATION => raw.push((k.raw.to_vec(), v.raw.to_vec())),
                _ => return Err(DecodeError::UnknownMember { at: AT, key }),
            }
        }
        Ok(Members {
            auth: auth.ok_or(DecodeError::MissingMember {
                at: AT,
                member: ek::AUTHENTICATION_WRAPPER,
            })?,
            manifest: manifest.ok_or(DecodeError::MissingMember {
                at: AT,
                member: ek::MANIFEST,
            })?,
            severed,
            integrated_payloads,
            raw,
        })
    }
}

/// The decoded authentication wrapper.
struct AuthWrapper {
    digest: SuitDigest,
    digest_bytes: Vec<u8>,
    blocks: Vec<ReceivedAuthBlock>,
}

impl AuthWrapper {
    /// §8.3: SUIT_Authentication = [bstr .cbor SUIT_Digest, * bstr .cbor auth block]
    fn decode(auth: &[u8], limits: &Limits) -> Result<Self, Error> {
        let auth_item = cbor::decode(auth, limits)?;
        let parts = auth_item
            .as_array()
            .ok_or(wrong("authentication wrapper array"))?;
        let (first, rest) = parts
            .split_first()
            .ok_or(wrong("authentication wrapper with a digest"))?;
        let digest_bytes = first.as_bytes().ok_or(wrong("bstr digest"))?;
        let digest = SuitDigest::decode_bstr(digest_bytes, limits)?;
        if rest.len() > limits.max_auth_blocks {
            return Err(DecodeError::LimitExceeded {
                what: "authentication blocks",
                limit: limits.max_auth_blocks,
            }
            .into());
        }
        let mut blocks = Vec::with_capacity(rest.len());
        for b in rest {
            let bytes = b.as_bytes().ok_or(wrong("bstr authentication block"))?;
            // Well-formed and within limits before coset sees it.
            cbor::decode(bytes, limits)?;
            blocks.push(ReceivedAuthBlock {
                bytes: bytes.to_vec(),
                block: AuthBlock::parse(bytes)?,
            });
        }
        Ok(AuthWrapper {
            digest,
            digest_bytes: digest_bytes.to_vec(),
            blocks,
        })
    }
}

/// §8.4.6: a severed member carried by the envelope must match the digest the manifest
/// holds for it; it then supplies the member's value.
fn supply_severed(
    manifest: &mut Manifest,
    key: i64,
    item: &Item<'_>,
    limits: &Limits,
) -> Result<(), Error> {
    let content = item.as_bytes().unwrap_or_default();
    let slot_err = DecodeError::InvalidValue {
        at: AT,
        reason: "severed member present but the manifest holds no digest for it",
    };
    let matches = |d: &SuitDigest| -> Result<(), Error> {
        if d.matches_sha256(&Sha256::digest(item.raw).into())? {
            Ok(())
        } else {
            Err(DecodeError::SeveredDigestMismatch { member: key }.into())
        }
    };
    if key == ek::TEXT {
        match &mut manifest.text {
            Some(Severable::Severed { digest, value }) => {
                matches(digest)?;
                *value = Some(cbor::decode(content, limits)?.to_owned_value());
            }
            _ => return Err(slot_err.into()),
        }
    } else {
        match manifest.sequences.get_mut(&key) {
            Some(Severable::Severed { digest, value }) => {
                matches(digest)?;
                *value = Some(CommandSequence::decode_bstr(content, limits)?);
            }
            _ => return Err(slot_err.into()),
        }
    }
    Ok(())
}

/// Encodes `#6.107({2: bstr(auth), members...})`, members given as raw (key, value) bytes.
pub(crate) fn encode_envelope(
    digest_bytes: &[u8],
    blocks: &[&[u8]],
    members: &[(Vec<u8>, Vec<u8>)],
) -> Vec<u8> {
    // SUIT_Authentication = [bstr digest, * bstr block]
    let mut auth = array_head(1 + blocks.len());
    auth.extend_from_slice(&cbor::bstr_wrap(digest_bytes));
    for b in blocks {
        auth.extend_from_slice(&cbor::bstr_wrap(b));
    }
    let mut out = vec![0xd8, tag::SUIT_ENVELOPE as u8];
    out.extend_from_slice(&map_head(1 + members.len()));
    out.push(ek::AUTHENTICATION_WRAPPER as u8);
    out.extend_from_slice(&cbor::bstr_wrap(&auth));
    for (k, v) in members {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

/// The encoded SUIT_Digest that authentication blocks sign for a manifest's content:
/// `[-16, sha-256(bstr(content))]`.
pub fn manifest_digest(manifest_content: &[u8]) -> Vec<u8> {
    SuitDigest::sha256(&cbor::bstr_wrap(manifest_content)).encode()
}

fn head(major: u8, len: usize) -> Vec<u8> {
    let mut h = cbor::bstr_head(len);
    h[0] = (h[0] & 0x1f) | (major << 5);
    h
}

fn array_head(len: usize) -> Vec<u8> {
    head(4, len)
}

fn map_head(len: usize) -> Vec<u8> {
    head(5, len)
}

/// Encodes a fresh envelope from a manifest's content (the bytes inside the manifest bstr),
/// authentication blocks (each signing [`manifest_digest`] of that content), and optional
/// severed members (envelope key, bstr content).
pub fn build_envelope(
    manifest_content: &[u8],
    blocks: &[&[u8]],
    severed: &[(i64, Vec<u8>)],
) -> Vec<u8> {
    let manifest_bstr = cbor::bstr_wrap(manifest_content);
    let digest = SuitDigest::sha256(&manifest_bstr);
    let mut members = vec![(vec![ek::MANIFEST as u8], manifest_bstr)];
    for (k, content) in severed {
        members.push((
            cbor::encode(&ciborium::Value::Integer((*k).into())),
            cbor::bstr_wrap(content),
        ));
    }
    encode_envelope(&digest.encode(), blocks, &members)
}
