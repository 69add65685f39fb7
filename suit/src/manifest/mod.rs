//! The SUIT manifest model (draft-ietf-suit-manifest §8.4) and its strict decoding.
//!
//! Everything in the drafts' CDDL (manifest -34+, trust-domains, update-management,
//! firmware-encryption) decodes, so any well-formed envelope can be inspected. Commands
//! and parameters this implementation cannot act on are kept and reported as unsupported
//! by [`crate::process`] only when processing reaches them.
//!
//! The manifest model is here; its parts live beside it, each re-exported from this
//! module: [`SuitDigest`] (`digest.rs`), the parameters (`params.rs`), the command-sequence
//! codec (`command.rs`) and version matching (`version.rs`).

mod command;
mod digest;
mod params;
mod version;

use std::collections::BTreeMap;

pub use command::{Command, CommandSequence, ComponentIndex};
pub use digest::SuitDigest;
pub use params::{Param, Parameters, VendorId};
pub(crate) use version::encode_set_version;
pub use version::{VersionMatch, compare_versions, format_version, parse_version};

use crate::cbor::{self, Item, Value};
use crate::consts::{common, manifest as mk, tag};
use crate::error::DecodeError;
use crate::ics::IcsMetadata;
use crate::limits::Limits;

/// A component identifier: an array of byte strings (§8.4.5.1).
pub type ComponentId = Vec<Vec<u8>>;

/// Renders a component id for people: `['plaintext-firmware']` or `[h'00']`.
pub fn component_id_display(id: &ComponentId) -> String {
    let parts: Vec<String> = id
        .iter()
        .map(|p| match std::str::from_utf8(p) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => format!("'{s}'"),
            _ => format!("h'{}'", hex::encode(p)),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A manifest member that may be severed (§8.4.6): the value, or only its digest.
#[derive(Debug, Clone, PartialEq)]
pub enum Severable<T> {
    /// Present in the manifest.
    Present(T),
    /// Severed: the manifest holds the digest; the envelope may carry the value.
    Severed {
        /// Digest of the envelope member's bstr (including its CBOR head).
        digest: SuitDigest,
        /// The value from the envelope, once its digest has been checked.
        value: Option<T>,
    },
}

impl<T> Severable<T> {
    /// The value, when present in the manifest or supplied (and checked) by the envelope.
    pub fn value(&self) -> Option<&T> {
        match self {
            Severable::Present(v) => Some(v),
            Severable::Severed { value, .. } => value.as_ref(),
        }
    }
}

/// SUIT_Common (§8.4.5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Common {
    /// Component identifiers.
    pub components: Vec<ComponentId>,
    /// Dependencies (trust-domains), kept opaque.
    pub dependencies: Option<ciborium::Value>,
    /// The shared sequence, run before every other sequence.
    pub shared_sequence: Option<CommandSequence>,
}

/// A decoded SUIT_Manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Monotonic sequence number (§8.4.2), used for anti-rollback.
    pub sequence_number: u64,
    /// SUIT_Common.
    pub common: Common,
    /// reference-uri.
    pub reference_uri: Option<String>,
    /// set-version (update-management): the version this manifest installs.
    pub set_version: Option<VersionMatch>,
    /// Unseverable and severable command sequences by manifest key
    /// (validate 7, load 8, invoke 9, dependency-resolution 15, payload-fetch 16,
    /// candidate-verification 18, install 20, uninstall 24).
    pub sequences: BTreeMap<i64, Severable<CommandSequence>>,
    /// SUIT_Text_Map, kept as generic CBOR (keyed by language tag, then ints or component ids).
    pub text: Option<Severable<ciborium::Value>>,
    /// CoSWID (update-management), opaque.
    pub coswid: Option<Severable<Vec<u8>>>,
    /// manifest-component-id (trust-domains), opaque.
    pub manifest_component_id: Option<ciborium::Value>,
    /// This project's ICS metadata.
    pub ics: Option<IcsMetadata>,
}

impl Manifest {
    /// A command sequence, if present or supplied.
    pub fn sequence(&self, key: i64) -> Option<&CommandSequence> {
        self.sequences.get(&key).and_then(Severable::value)
    }

    pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        const AT: &str = "manifest";
        let wrong = |expected| DecodeError::WrongType { at: AT, expected };
        let item = cbor::decode(bytes, limits)?;
        // draft-ietf-suit-manifest §8.4: the manifest may be tagged SUIT_Manifest_Tagged (1070)
        // when used standalone; inside an envelope it is the bare map.
        let item = match &item.value {
            Value::Tag(tag::SUIT_MANIFEST, inner) => inner.as_ref().clone(),
            _ => item,
        };
        let map = item.as_map().ok_or(wrong("map"))?;
        let mut version = None;
        let mut m = Manifest {
            sequence_number: 0,
            common: Common::default(),
            reference_uri: None,
            set_version: None,
            sequences: BTreeMap::new(),
            text: None,
            coswid: None,
            manifest_component_id: None,
            ics: None,
        };
        let mut have_seq = false;
        for (k, v) in map {
            let key = k.as_i64().ok_or(wrong("integer member keys"))?;
            match key {
                mk::VERSION => version = Some(v.as_u64().ok_or(wrong("uint manifest version"))?),
                mk::SEQUENCE_NUMBER => {
                    m.sequence_number = v.as_u64().ok_or(wrong("uint sequence number"))?;
                    have_seq = true;
                }
                mk::COMMON => {
                    m.common = decode_common(v.as_bytes().ok_or(wrong("bstr common"))?, limits)?
                }
                mk::REFERENCE_URI => {
                    m.reference_uri = Some(v.as_text().ok_or(wrong("tstr uri"))?.to_owned())
                }
                mk::SET_VERSION => {
                    let b = v.as_bytes().ok_or(wrong("bstr set-version"))?;
                    m.set_version = Some(version::decode_set_version(b, limits)?);
                }
                mk::VALIDATE
                | mk::LOAD
                | mk::INVOKE
                | mk::DEPENDENCY_RESOLUTION
                | mk::PAYLOAD_FETCH
                | mk::CANDIDATE_VERIFICATION
                | mk::INSTALL
                | mk::UNINSTALL => {
                    let s = severable(v, limits, |b| CommandSequence::decode_bstr(b, limits))?;
                    m.sequences.insert(key, s);
                }
                mk::TEXT => {
                    m.text = Some(severable(v, limits, |b| {
                        Ok(cbor::decode(b, limits)?.to_owned_value())
                    })?)
                }
                mk::COSWID => m.coswid = Some(severable(v, limits, |b| Ok(b.to_vec()))?),
                mk::MANIFEST_COMPONENT_ID => m.manifest_component_id = Some(v.to_owned_value()),
                mk::ICS_METADATA => m.ics = Some(IcsMetadata::decode(v)?),
                // Unknown members (including other Private Use keys) are critical: a
                // processor cannot know whether ignoring them is safe.
                _ => return Err(DecodeError::UnknownMember { at: AT, key }),
            }
        }
        match version {
            Some(1) => {}
            Some(v) => return Err(DecodeError::UnsupportedManifestVersion(v)),
            None => {
                return Err(DecodeError::MissingMember {
                    at: AT,
                    member: mk::VERSION,
                });
            }
        }
        if !have_seq {
            return Err(DecodeError::MissingMember {
                at: AT,
                member: mk::SEQUENCE_NUMBER,
            });
        }
        if m.common.components.is_empty() {
            return Err(DecodeError::MissingMember {
                at: "common",
                member: common::COMPONENTS,
            });
        }
        Ok(m)
    }

    /// The parameters the shared sequence sets for `component` (override and set, in order,
    /// following set-component-index; try-each alternatives are not entered).
    pub fn shared_parameters(&self, component: usize) -> BTreeMap<i64, Param> {
        self.parameters(component, &[])
    }

    /// The parameters set for `component` by the shared sequence and then by each of the
    /// sequences named by `keys`, in order. Each sequence starts at component index 0
    /// (manifest §6.4). Used for inspection and for finding the profile's digests and
    /// encryption info; device processing uses [`crate::process::evaluate`].
    pub fn parameters(&self, component: usize, keys: &[i64]) -> BTreeMap<i64, Param> {
        let mut out = BTreeMap::new();
        let seqs = self
            .common
            .shared_sequence
            .iter()
            .chain(keys.iter().filter_map(|k| self.sequence(*k)));
        for seq in seqs {
            let mut current = vec![0usize];
            for c in &seq.0 {
                match c {
                    Command::SetComponentIndex(ComponentIndex::One(n)) => {
                        current = vec![*n as usize]
                    }
                    Command::SetComponentIndex(ComponentIndex::Many(v)) => {
                        current = v.iter().map(|n| *n as usize).collect()
                    }
                    Command::SetComponentIndex(ComponentIndex::All) => current = vec![component],
                    Command::OverrideParameters(p) if current.contains(&component) => {
                        out.extend(p.iter().cloned())
                    }
                    Command::SetParameters(p) if current.contains(&component) => {
                        for (k, v) in p {
                            out.entry(*k).or_insert_with(|| v.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

fn severable<T>(
    v: &Item<'_>,
    limits: &Limits,
    decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
) -> Result<Severable<T>, DecodeError> {
    match &v.value {
        Value::Bytes(b) => Ok(Severable::Present(decode(b)?)),
        // §8.4.6: a severed member is replaced by its SUIT_Digest.
        Value::Array(_) => Ok(Severable::Severed {
            digest: SuitDigest::decode(v)?,
            value: None,
        }),
        _ => {
            let _ = limits;
            Err(DecodeError::WrongType {
                at: "severable member",
                expected: "bstr or SUIT_Digest",
            })
        }
    }
}

fn decode_common(bytes: &[u8], limits: &Limits) -> Result<Common, DecodeError> {
    const AT: &str = "common";
    let wrong = |expected| DecodeError::WrongType { at: AT, expected };
    let item = cbor::decode(bytes, limits)?;
    let map = item.as_map().ok_or(wrong("map"))?;
    let mut c = Common::default();
    for (k, v) in map {
        match k.as_i64().ok_or(wrong("integer keys"))? {
            common::COMPONENTS => {
                let arr = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or(wrong("[+ component id]"))?;
                if arr.len() > limits.max_components {
                    return Err(DecodeError::LimitExceeded {
                        what: "number of components",
                        limit: limits.max_components,
                    });
                }
                for id in arr {
                    let parts = id
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or(wrong("component id [+bstr]"))?;
                    c.components.push(
                        parts
                            .iter()
                            .map(|p| p.as_bytes().map(<[u8]>::to_vec).ok_or(wrong("bstr")))
                            .collect::<Result<_, _>>()?,
                    );
                }
            }
            common::DEPENDENCIES => c.dependencies = Some(v.to_owned_value()),
            common::SHARED_SEQUENCE => {
                c.shared_sequence = Some(CommandSequence::decode_bstr(
                    v.as_bytes().ok_or(wrong("bstr shared sequence"))?,
                    limits,
                )?)
            }
            key => return Err(DecodeError::UnknownMember { at: AT, key }),
        }
    }
    Ok(c)
}

/// Builds the CBOR of a `Common` (for release building).
pub(crate) fn encode_common(c: &Common) -> Vec<u8> {
    use ciborium::Value as V;
    let mut m = vec![(
        V::Integer(common::COMPONENTS.into()),
        V::Array(
            c.components
                .iter()
                .map(|id| V::Array(id.iter().map(|p| V::Bytes(p.clone())).collect()))
                .collect(),
        ),
    )];
    if let Some(s) = &c.shared_sequence {
        m.push((
            V::Integer(common::SHARED_SEQUENCE.into()),
            V::Bytes(s.encode()),
        ));
    }
    cbor::encode(&V::Map(m))
}
