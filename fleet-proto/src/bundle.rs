//! The provisioning bundle a dispatcher produces at enrolment (`dispatcher devices add`) and a
//! device reads once (`device-sim provision`). JSON, one per device; it holds the device's
//! OSCORE master secrets, so whoever writes it uses mode 0600, and it should be deleted after
//! use.
//!
//! ```json
//! {
//!   "format": "ics-device-bundle/2",
//!   "identity": { "name": "plc-7", "vendor_id": "…", "class_id": "…", "device_id": "…" },
//!   "trust": {
//!     "store": "[[key]]\nkid = \"acme-2026\"\nrole = \"manufacturer\"\n…",
//!     "require_approval": true, "require_author": true
//!   },
//!   "oscore": { "master_secret_hex": "…", "master_salt_hex": "…",
//!               "sender_id_hex": "01", "recipient_id_hex": "00" },
//!   "uplink": { "master_secret_hex": "…", "sender_id_hex": "0107", "recipient_id_hex": "00" },
//!   "dispatcher": "coap://127.0.0.1:5683",
//!   "factory_version": "1.0.0"
//! }
//! ```
//!
//! `oscore` has the shape of the `oscore` crate's context files (`docs/transport.md`), seen
//! from the device: its sender id is the dispatcher's recipient id and vice versa. It protects
//! the push direction (the dispatcher is the client, the device the server).
//!
//! `uplink` (optional; bundles without it still read) has the same shape and protects the
//! device → dispatcher direction (check-in, pull, reports), with a different master secret,
//! so that the device as client and the device as server never share a sender sequence
//! number space. Its `sender_id_hex` is the device's kid on the dispatcher's uplink server,
//! unique among the dispatcher's devices.
//!
//! `trust.store` is the device's trust store in the project's one format
//! (`docs/trust-store.md`), as TOML text: the same parser as every other call site reads it.
//! Version 2 of the format; version 1 carried per-role key lists.

use serde::{Serialize, Serializer};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::{Error, Kind};
use crate::json::{self, Node, Read};
use crate::limits;
use crate::text::{self, CoapUri, Rule};

/// The format tag this version reads and writes.
pub const FORMAT: &str = "ics-device-bundle/2";

/// Who the device is (`identity.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Name ([`text::valid_device_name`]): unique at its dispatcher, which names a directory
    /// after it.
    pub name: String,
    /// Vendor-id (SUIT condition 1).
    pub vendor_id: Uuid,
    /// Class-id (SUIT condition 2).
    pub class_id: Uuid,
    /// Device-id (SUIT condition 24).
    pub device_id: Uuid,
}

fn uuid_field(r: Read, at: &str, n: &Node) -> Result<Uuid, Error> {
    let s = r.text(at, n, 36, |_| true, Rule::Uuid)?;
    text::parse_uuid(s).ok_or_else(|| r.invalid(at, Rule::Uuid))
}

impl Identity {
    /// Decodes `identity.json` (at most [`limits::MAX_IDENTITY`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Identity, Error> {
        let r = Read {
            kind: Kind::Identity,
        };
        Identity::from_node(r, json::TOP, &json::parse(r.kind, bytes)?)
    }

    /// Encodes compactly, refusing an identity its own decoder would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::Identity, |b| Identity::decode(b).map(drop))
    }

    pub(crate) fn from_node(r: Read, at: &str, n: &Node) -> Result<Identity, Error> {
        let o = r.object(at, n, &["name", "vendor_id", "class_id", "device_id"])?;
        Ok(Identity {
            name: r.owned(
                &o.path("name"),
                o.req("name")?,
                limits::MAX_NAME,
                text::valid_device_name,
                Rule::DeviceName,
            )?,
            vendor_id: uuid_field(r, &o.path("vendor_id"), o.req("vendor_id")?)?,
            class_id: uuid_field(r, &o.path("class_id"), o.req("class_id")?)?,
            device_id: uuid_field(r, &o.path("device_id"), o.req("device_id")?)?,
        })
    }
}

/// Trust anchors (DESIGN.md §4; `trust.json`): the device's trust store in the project's one
/// format (`docs/trust-store.md`, read by `suit::TrustStore::from_toml` like every other call
/// site's), and whether the domain's approval is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trust {
    /// The trust store, TOML: the manufacturer's (at least one), third-party, internal and
    /// author keys of the device's vendor, and the dispatcher's approval key. Keys inline.
    pub store: String,
    /// Require the approval signature (true except on a bench).
    pub require_approval: bool,
    /// Require a verified author signature on T3 releases (else it is checked when the
    /// author key is in the store). Optional on the wire, default false.
    pub require_author: bool,
}

impl Trust {
    /// A device's trust from a trust file.
    pub fn new(file: &suit::TrustFile, require_approval: bool) -> Trust {
        Trust {
            store: file.to_toml(),
            require_approval,
            require_author: false,
        }
    }

    /// Requires verified T3 author signatures.
    pub fn requiring_author(mut self, yes: bool) -> Trust {
        self.require_author = yes;
        self
    }

    /// A device's trust from `(role, kid, SPKI PEM)` keys, publisher keys scoped to `vendor`.
    pub fn from_keys(
        vendor: Uuid,
        keys: &[(suit::Role, &str, &str)],
        require_approval: bool,
    ) -> Trust {
        let keys = keys
            .iter()
            .map(|(role, kid, pem)| suit::trust::KeyEntry {
                vendors: role.is_publisher().then(|| vec![vendor.to_string()]),
                ..suit::trust::KeyEntry::new(kid, *role, pem)
            })
            .collect();
        Trust::new(&suit::TrustFile { keys }, require_approval)
    }

    /// Decodes `trust.json` (at most [`limits::MAX_TRUST`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Trust, Error> {
        let r = Read { kind: Kind::Trust };
        Trust::from_node(r, json::TOP, &json::parse(r.kind, bytes)?)
    }

    /// Encodes compactly, refusing anchors their own decoder would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::Trust, |b| Trust::decode(b).map(drop))
    }

    /// The trust file (checked when decoded).
    pub fn file(&self) -> Result<suit::TrustFile, suit::trust::TrustFileError> {
        suit::TrustFile::parse(&self.store)
    }

    /// The store `suit::accept` uses.
    pub fn trust_store(&self) -> Result<suit::TrustStore, suit::trust::TrustFileError> {
        self.file()?.to_store(&mut suit::trust::no_key_files)
    }

    pub(crate) fn from_node(r: Read, at: &str, n: &Node) -> Result<Trust, Error> {
        let o = r.object(at, n, &["store", "require_approval", "require_author"])?;
        let path = o.path("store");
        let t = Trust {
            store: r.owned(
                &path,
                o.req("store")?,
                limits::MAX_TRUST,
                text::valid_message,
                Rule::TrustStore,
            )?,
            require_approval: r.boolean(&o.path("require_approval"), o.req("require_approval")?)?,
            require_author: o
                .opt("require_author")
                .map(|n| r.boolean(&o.path("require_author"), n))
                .transpose()?
                .unwrap_or(false),
        };
        // The one trust-store parser: every entry valid, keys inline.
        let store = t
            .trust_store()
            .map_err(|_| r.invalid(&path, Rule::TrustStore))?;
        let has = |role| store.anchors().iter().any(|a| a.role() == role);
        if !has(suit::Role::Manufacturer) {
            return Err(r.invalid(&path, Rule::AtLeastOneKey));
        }
        if t.require_approval && !has(suit::Role::Approver) {
            return Err(r.invalid(&path, Rule::ApproverRequired));
        }
        Ok(t)
    }
}

/// An OSCORE master secret as hex (lowercase when made here), zeroised on drop, redacted in `Debug`, compared
/// in constant time.
#[derive(Clone)]
pub struct SecretHex(Zeroizing<String>);

impl SecretHex {
    /// The secret `bytes`, hex-encoded without an intermediate copy outside zeroising
    /// buffers.
    pub fn from_bytes(bytes: &[u8]) -> SecretHex {
        let mut buf = Zeroizing::new(vec![0u8; bytes.len() * 2]);
        // The buffer is exactly twice the input: encoding cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut buf);
        let mut s = Zeroizing::new(String::with_capacity(buf.len()));
        s.extend(buf.iter().map(|&b| char::from(b)));
        SecretHex(s)
    }

    /// The hex text (a secret: do not log it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret bytes.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; self.0.len() / 2]);
        // Valid hex by construction (from_bytes or the decoder).
        if hex::decode_to_slice(self.0.as_bytes(), &mut out).is_err() {
            out.clear();
        }
        out
    }
}

impl std::fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHex(redacted)")
    }
}

impl PartialEq for SecretHex {
    fn eq(&self, other: &Self) -> bool {
        // As bytes: the same secret in hex of another case is the same secret.
        self.to_bytes().ct_eq(&other.to_bytes()).into()
    }
}

impl Eq for SecretHex {}

impl Serialize for SecretHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// OSCORE security context parameters (RFC 8613 §3.2), hex-encoded: the `oscore` crate's
/// context-file shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OscoreParams {
    /// Master secret, 16-64 bytes.
    pub master_secret_hex: SecretHex,
    /// Master salt, 0-64 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_salt_hex: Option<String>,
    /// The sender id of whoever holds these parameters, 0-7 bytes.
    pub sender_id_hex: String,
    /// The peer's sender id, 0-7 bytes, different from `sender_id_hex`.
    pub recipient_id_hex: String,
    /// ID context, 0-64 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_context_hex: Option<String>,
}

impl OscoreParams {
    /// The same context seen from the peer: sender and recipient ids swapped.
    pub fn peer_view(&self) -> OscoreParams {
        OscoreParams {
            sender_id_hex: self.recipient_id_hex.clone(),
            recipient_id_hex: self.sender_id_hex.clone(),
            ..self.clone()
        }
    }

    fn from_node(r: Read, at: &str, n: &Node) -> Result<OscoreParams, Error> {
        let o = r.object(
            at,
            n,
            &[
                "master_secret_hex",
                "master_salt_hex",
                "sender_id_hex",
                "recipient_id_hex",
                "id_context_hex",
            ],
        )?;
        let hex_field = |name: &str, (min, max): (usize, usize), n: &Node| {
            r.owned(
                &o.path(name),
                n,
                2 * max,
                |s| text::valid_hex(s, min, max),
                Rule::Hex { min, max },
            )
        };
        let secret = {
            let (min, max) = limits::MASTER_SECRET_BYTES;
            let at = o.path("master_secret_hex");
            let s = r.text(
                &at,
                o.req("master_secret_hex")?,
                2 * max,
                |s| text::valid_hex(s, min, max),
                Rule::Hex { min, max },
            )?;
            SecretHex(Zeroizing::new(s.to_owned()))
        };
        let p = OscoreParams {
            master_secret_hex: secret,
            master_salt_hex: o
                .opt("master_salt_hex")
                .map(|n| hex_field("master_salt_hex", limits::SALT_BYTES, n))
                .transpose()?,
            sender_id_hex: hex_field("sender_id_hex", limits::ID_BYTES, o.req("sender_id_hex")?)?,
            recipient_id_hex: hex_field(
                "recipient_id_hex",
                limits::ID_BYTES,
                o.req("recipient_id_hex")?,
            )?,
            id_context_hex: o
                .opt("id_context_hex")
                .map(|n| hex_field("id_context_hex", limits::SALT_BYTES, n))
                .transpose()?,
        };
        // RFC 8613 §3.3: sender and recipient ids of one context differ (as bytes: hex of
        // either case).
        if p.sender_id_hex.eq_ignore_ascii_case(&p.recipient_id_hex) {
            return Err(r.invalid(&o.path("sender_id_hex"), Rule::DistinctIds));
        }
        Ok(p)
    }
}

/// A provisioning bundle (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// Identity.
    pub identity: Identity,
    /// Trust anchors.
    pub trust: Trust,
    /// OSCORE context of the push direction (device = server).
    pub oscore: OscoreParams,
    /// OSCORE context of the uplink (device = client), if the device checks in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink: Option<OscoreParams>,
    /// The dispatcher's CoAP URI ([`CoapUri`]).
    pub dispatcher: String,
    /// Version of the factory image ([`text::valid_version`]).
    pub factory_version: String,
}

impl Bundle {
    /// Decodes one bundle (at most [`limits::MAX_BUNDLE`] bytes). The input holds secrets:
    /// keep it in a zeroising buffer.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, Error> {
        let r = Read { kind: Kind::Bundle };
        Bundle::from_node(r, json::TOP, &json::parse(r.kind, bytes)?)
    }

    /// Decodes a JSON array of at most [`limits::MAX_BUNDLES`] bundles (at most
    /// [`limits::MAX_BUNDLE_LIST`] bytes; `device-sim fleet --provision`).
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Bundle>, Error> {
        let r = Read {
            kind: Kind::BundleList,
        };
        json::parse_list(r.kind, bytes, limits::MAX_BUNDLES, |i, n| {
            Bundle::from_node(r, &json::index(json::TOP, i), &n)
        })
    }

    /// Encodes compactly into a zeroising buffer, refusing a bundle its own decoder would
    /// refuse.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(4096));
        serde_json::to_writer(&mut *out, self)
            .map_err(|_| Error::Unencodable { kind: Kind::Bundle })?;
        Bundle::decode(&out)?;
        Ok(out)
    }

    /// Checks the bundle as a device would ([`Bundle::encode`] without keeping the bytes).
    pub fn validate(&self) -> Result<(), Error> {
        self.encode().map(drop)
    }

    /// The dispatcher's address (valid in a decoded bundle).
    pub fn dispatcher_uri(&self) -> Option<CoapUri> {
        CoapUri::parse(&self.dispatcher)
    }

    fn from_node(r: Read, at: &str, n: &Node) -> Result<Bundle, Error> {
        let o = r.object(
            at,
            n,
            &[
                "format",
                "identity",
                "trust",
                "oscore",
                "uplink",
                "dispatcher",
                "factory_version",
            ],
        )?;
        let format = r.owned(
            &o.path("format"),
            o.req("format")?,
            FORMAT.len(),
            |s| s == FORMAT,
            Rule::Format,
        )?;
        let b = Bundle {
            format,
            identity: Identity::from_node(r, &o.path("identity"), o.req("identity")?)?,
            trust: Trust::from_node(r, &o.path("trust"), o.req("trust")?)?,
            oscore: OscoreParams::from_node(r, &o.path("oscore"), o.req("oscore")?)?,
            uplink: o
                .opt("uplink")
                .map(|n| OscoreParams::from_node(r, &o.path("uplink"), n))
                .transpose()?,
            dispatcher: r.owned(
                &o.path("dispatcher"),
                o.req("dispatcher")?,
                limits::MAX_URI,
                |s| CoapUri::parse(s).is_some(),
                Rule::CoapUri,
            )?,
            factory_version: r.owned(
                &o.path("factory_version"),
                o.req("factory_version")?,
                limits::MAX_VERSION,
                text::valid_version,
                Rule::Version,
            )?,
        };
        if let Some(u) = &b.uplink
            && *u.master_secret_hex.to_bytes() == *b.oscore.master_secret_hex.to_bytes()
        {
            return Err(r.invalid(
                &json::join(&o.path("uplink"), "master_secret_hex"),
                Rule::SeparateSecrets,
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests;
