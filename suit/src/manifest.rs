//! The SUIT manifest model (draft-ietf-suit-manifest §8.4) and its strict decoding.
//!
//! Everything in the drafts' CDDL (manifest -34+, trust-domains, update-management,
//! firmware-encryption) decodes, so any well-formed envelope can be inspected. Commands
//! and parameters this implementation cannot act on are kept and reported as unsupported
//! by [`crate::process`] only when processing reaches them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cbor::{self, Item, Value};
use crate::consts::{alg, cmd, common, manifest as mk, param, tag, version_cmp};
use crate::error::{DecodeError, Error};
use crate::ics::IcsMetadata;
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

    fn to_value(&self) -> ciborium::Value {
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

fn decode_params(item: &Item<'_>, limits: &Limits) -> Result<Parameters, DecodeError> {
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

fn decode_version_match(item: &Item<'_>) -> Result<VersionMatch, DecodeError> {
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

/// The argument of set-component-index: one index, all components (`true`), or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentIndex {
    /// One component.
    One(u64),
    /// All components.
    All,
    /// Several components.
    Many(Vec<u64>),
}

/// One command of a command sequence (§8.4.9 conditions, §8.4.10 directives).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// A condition (argument: reporting policy).
    Condition {
        /// Condition id.
        id: i64,
        /// Reporting policy bits.
        policy: u64,
    },
    /// directive-set-component-index (12).
    SetComponentIndex(ComponentIndex),
    /// directive-try-each (15): alternatives, and whether a trailing nil allows none.
    TryEach {
        /// Alternatives, tried in order.
        alternatives: Vec<CommandSequence>,
        /// A trailing nil: succeed even when no alternative does.
        allow_none: bool,
    },
    /// directive-run-sequence (32).
    RunSequence(CommandSequence),
    /// directive-override-parameters (20).
    OverrideParameters(Parameters),
    /// directive-set-parameters (19, trust-domains).
    SetParameters(Parameters),
    /// A directive taking a reporting policy: fetch, copy, write, invoke, swap, unlink, ...
    Directive {
        /// Directive id.
        id: i64,
        /// Reporting policy bits.
        policy: u64,
    },
    /// A command whose argument this implementation keeps opaque.
    Other {
        /// Command id.
        id: i64,
        /// The argument.
        arg: ciborium::Value,
    },
}

/// A decoded SUIT_Command_Sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandSequence(pub Vec<Command>);

fn is_condition(id: i64) -> bool {
    matches!(
        id,
        cmd::VENDOR_IDENTIFIER
            | cmd::CLASS_IDENTIFIER
            | cmd::IMAGE_MATCH
            | cmd::USE_BEFORE
            | cmd::COMPONENT_SLOT
            | cmd::CHECK_CONTENT
            | cmd::DEPENDENCY_INTEGRITY
            | cmd::IS_DEPENDENCY
            | cmd::ABORT
            | cmd::DEVICE_IDENTIFIER
            | cmd::IMAGE_NOT_MATCH
            | cmd::MINIMUM_BATTERY
            | cmd::UPDATE_AUTHORIZED
            | cmd::VERSION
    )
}

fn is_policy_directive(id: i64) -> bool {
    matches!(
        id,
        cmd::PROCESS_DEPENDENCY
            | cmd::WRITE
            | cmd::FETCH
            | cmd::COPY
            | cmd::INVOKE
            | cmd::SWAP
            | cmd::UNLINK
    )
}

impl CommandSequence {
    /// Decodes `bstr .cbor SUIT_Command_Sequence` content.
    pub fn decode_bstr(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        Self::decode_bstr_at(bytes, limits, 0)
    }

    fn decode_bstr_at(bytes: &[u8], limits: &Limits, depth: usize) -> Result<Self, DecodeError> {
        if depth > limits.max_sequence_depth {
            return Err(DecodeError::LimitExceeded {
                what: "command sequence nesting",
                limit: limits.max_sequence_depth,
            });
        }
        const AT: &str = "command sequence";
        let wrong = |expected| DecodeError::WrongType { at: AT, expected };
        let item = cbor::decode(bytes, limits)?;
        let arr = item.as_array().ok_or(wrong("array"))?;
        if arr.is_empty() || arr.len() % 2 != 0 {
            return Err(DecodeError::InvalidValue {
                at: AT,
                reason: "must hold one or more (command, argument) pairs",
            });
        }
        let mut out = Vec::with_capacity(arr.len() / 2);
        for pair in arr.chunks_exact(2) {
            let id = pair[0].as_i64().ok_or(wrong("integer command id"))?;
            let arg = &pair[1];
            let command = if is_condition(id) || is_policy_directive(id) {
                let policy = arg.as_u64().ok_or(wrong("uint reporting policy"))?;
                if is_condition(id) {
                    Command::Condition { id, policy }
                } else {
                    Command::Directive { id, policy }
                }
            } else {
                match id {
                    cmd::SET_COMPONENT_INDEX => Command::SetComponentIndex(match &arg.value {
                        Value::Uint(n) => ComponentIndex::One(*n),
                        Value::Bool(true) => ComponentIndex::All,
                        Value::Array(a) if !a.is_empty() => ComponentIndex::Many(
                            a.iter()
                                .map(|i| i.as_u64().ok_or(wrong("uint component index")))
                                .collect::<Result<_, _>>()?,
                        ),
                        _ => return Err(wrong("component index: uint, true or [+uint]")),
                    }),
                    cmd::TRY_EACH => {
                        let alts = arg.as_array().ok_or(wrong("try-each array"))?;
                        let (alts, allow_none) = match alts.split_last() {
                            Some((last, rest)) if last.value == Value::Null => (rest, true),
                            _ => (alts, false),
                        };
                        if alts.is_empty() {
                            return Err(DecodeError::InvalidValue {
                                at: AT,
                                reason: "try-each needs at least one alternative",
                            });
                        }
                        let alternatives = alts
                            .iter()
                            .map(|a| {
                                Self::decode_bstr_at(
                                    a.as_bytes().ok_or(wrong("bstr command sequence"))?,
                                    limits,
                                    depth + 1,
                                )
                            })
                            .collect::<Result<_, _>>()?;
                        Command::TryEach {
                            alternatives,
                            allow_none,
                        }
                    }
                    cmd::RUN_SEQUENCE => Command::RunSequence(Self::decode_bstr_at(
                        arg.as_bytes().ok_or(wrong("bstr command sequence"))?,
                        limits,
                        depth + 1,
                    )?),
                    cmd::OVERRIDE_PARAMETERS => {
                        Command::OverrideParameters(decode_params(arg, limits)?)
                    }
                    cmd::SET_PARAMETERS => Command::SetParameters(decode_params(arg, limits)?),
                    _ => Command::Other {
                        id,
                        arg: arg.to_owned_value(),
                    },
                }
            };
            out.push(command);
        }
        Ok(CommandSequence(out))
    }

    /// Encodes as the content of a `bstr .cbor SUIT_Command_Sequence`.
    pub fn encode(&self) -> Vec<u8> {
        use ciborium::Value as V;
        let int = |n: i64| V::Integer(n.into());
        let mut arr = Vec::new();
        for c in &self.0 {
            match c {
                Command::Condition { id, policy } | Command::Directive { id, policy } => {
                    arr.push(int(*id));
                    arr.push(V::Integer((*policy).into()));
                }
                Command::SetComponentIndex(ix) => {
                    arr.push(int(cmd::SET_COMPONENT_INDEX));
                    arr.push(match ix {
                        ComponentIndex::One(n) => V::Integer((*n).into()),
                        ComponentIndex::All => V::Bool(true),
                        ComponentIndex::Many(v) => {
                            V::Array(v.iter().map(|n| V::Integer((*n).into())).collect())
                        }
                    });
                }
                Command::TryEach {
                    alternatives,
                    allow_none,
                } => {
                    arr.push(int(cmd::TRY_EACH));
                    let mut alts: Vec<V> =
                        alternatives.iter().map(|s| V::Bytes(s.encode())).collect();
                    if *allow_none {
                        alts.push(V::Null);
                    }
                    arr.push(V::Array(alts));
                }
                Command::RunSequence(s) => {
                    arr.push(int(cmd::RUN_SEQUENCE));
                    arr.push(V::Bytes(s.encode()));
                }
                Command::OverrideParameters(p) | Command::SetParameters(p) => {
                    let id = if matches!(c, Command::OverrideParameters(_)) {
                        cmd::OVERRIDE_PARAMETERS
                    } else {
                        cmd::SET_PARAMETERS
                    };
                    arr.push(int(id));
                    arr.push(params_to_value(p));
                }
                Command::Other { id, arg } => {
                    arr.push(int(*id));
                    arr.push(arg.clone());
                }
            }
        }
        cbor::encode(&V::Array(arr))
    }
}

fn params_to_value(p: &Parameters) -> ciborium::Value {
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
                    let inner = cbor::decode(b, limits)?;
                    // update-management: SUIT_Condition_Version_Comparison_Value = [+int]
                    let version = inner
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or(wrong("[+int] set-version"))?
                        .iter()
                        .map(|i| i.as_i64().ok_or(wrong("int version component")))
                        .collect::<Result<Vec<_>, _>>()?;
                    m.set_version = Some(VersionMatch {
                        comparison: version_cmp::EQUAL,
                        version,
                    });
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

    #[test]
    fn command_sequence_roundtrip() {
        let seq = CommandSequence(vec![
            Command::SetComponentIndex(ComponentIndex::One(1)),
            Command::OverrideParameters(vec![
                (param::IMAGE_SIZE, Param::Uint(46)),
                (param::URI, Param::Text("coaps://x/y".into())),
            ]),
            Command::Directive {
                id: cmd::FETCH,
                policy: 15,
            },
            Command::TryEach {
                alternatives: vec![CommandSequence(vec![Command::Condition {
                    id: cmd::ABORT,
                    policy: 0,
                }])],
                allow_none: true,
            },
        ]);
        let again = CommandSequence::decode_bstr(&seq.encode(), &Limits::default()).unwrap();
        assert_eq!(again, seq);
    }

    #[test]
    fn odd_command_sequence_is_rejected() {
        let bytes = cbor::encode(&ciborium::Value::Array(vec![ciborium::Value::Integer(
            1.into(),
        )]));
        assert!(CommandSequence::decode_bstr(&bytes, &Limits::default()).is_err());
    }
}
