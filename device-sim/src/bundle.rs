//! The provisioning bundle a dispatcher produces at enrolment (`dispatcher devices add`) and a
//! device reads once (`device-sim provision`). JSON, one per device; it holds the device's
//! OSCORE master secret, so it is created with mode 0600 and should be deleted after use.
//!
//! ```json
//! {
//!   "format": "ics-device-bundle/1",
//!   "identity": { "name": "plc-7", "vendor_id": "…", "class_id": "…", "device_id": "…" },
//!   "trust": {
//!     "manufacturer": [ { "kid": "acme-2026", "pem": "-----BEGIN PUBLIC KEY-----…" } ],
//!     "third_party": [], "authors": [],
//!     "approver": { "kid": "dispatcher-1", "pem": "…" },
//!     "require_approval": true
//!   },
//!   "oscore": { "master_secret_hex": "…", "master_salt_hex": "…",
//!               "sender_id_hex": "01", "recipient_id_hex": "00" },
//!   "uplink": { "master_secret_hex": "…", "sender_id_hex": "0107", "recipient_id_hex": "00" },
//!   "dispatcher": "coap://127.0.0.1:5683",
//!   "factory_version": "1.0.0"
//! }
//! ```
//!
//! `oscore` has the same shape as the `oscore` crate's context files (issue 3), seen from the
//! device: its sender id is the dispatcher's recipient id and vice versa. It protects the
//! push direction (the dispatcher is the client, the device the server).
//!
//! `uplink` (optional; bundles without it still read) has the same shape and protects the
//! device → dispatcher direction (check-in, pull, reports; `docs/transport.md`, "Device
//! uplink"), with a different master secret, so that the device as client and the device as
//! server never share a sender sequence number space. Its `sender_id_hex` is the device's
//! kid on the dispatcher's uplink server: the dispatcher assigns it at enrolment, unique
//! among its devices, because it looks contexts up by it. The device stores it as
//! `uplink.json` (mode 0600), with the sequence state in `uplink.json.seq`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::DeviceError;
use crate::state::{Identity, Trust};

/// The format tag this version reads and writes.
pub const FORMAT: &str = "ics-device-bundle/1";

/// OSCORE security context parameters (RFC 8613 §3.2), hex-encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OscoreParams {
    /// Master secret (secret).
    pub master_secret_hex: String,
    /// Master salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_salt_hex: Option<String>,
    /// The device's sender id.
    pub sender_id_hex: String,
    /// The dispatcher's sender id.
    pub recipient_id_hex: String,
    /// ID context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_context_hex: Option<String>,
}

impl std::fmt::Debug for OscoreParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OscoreParams")
            .field("master_secret_hex", &"(redacted)")
            .field("sender_id_hex", &self.sender_id_hex)
            .field("recipient_id_hex", &self.recipient_id_hex)
            .finish()
    }
}

impl OscoreParams {
    /// Checks hex and lengths (RFC 8613 §3.3: ids at most 7 bytes and distinct); `name`
    /// prefixes the messages. Messages name fields, never values.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let hexv = |field: &str, v: &str, min: usize, max: usize| match hex::decode(v) {
            Ok(b) if (min..=max).contains(&b.len()) => Ok(b),
            _ => Err(format!("{name}.{field} must be hex of {min}..={max} bytes")),
        };
        Zeroizing::new(hexv("master_secret_hex", &self.master_secret_hex, 16, 64)?);
        let s = hexv("sender_id_hex", &self.sender_id_hex, 0, 7)?;
        let r = hexv("recipient_id_hex", &self.recipient_id_hex, 0, 7)?;
        if s == r {
            return Err(format!(
                "{name}.sender_id_hex and recipient_id_hex must differ"
            ));
        }
        if let Some(v) = &self.master_salt_hex {
            hexv("master_salt_hex", v, 0, 64)?;
        }
        if let Some(v) = &self.id_context_hex {
            hexv("id_context_hex", v, 0, 64)?;
        }
        Ok(())
    }
}

/// A provisioning bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<OscoreParams>,
    /// The dispatcher's CoAP URI.
    pub dispatcher: String,
    /// Version of the factory image.
    pub factory_version: String,
}

impl Bundle {
    /// Reads and validates a bundle (bounded to 1 MiB).
    pub fn read(path: &Path) -> Result<Bundle, DeviceError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| DeviceError::Io {
            what: "cannot read bundle",
            path: path.to_owned(),
            source,
        })?);
        if bytes.len() > 1 << 20 {
            return Err(DeviceError::Corrupt(format!(
                "{}: bundle larger than 1 MiB",
                path.display()
            )));
        }
        let b: Bundle = serde_json::from_slice(&bytes)
            .map_err(|e| DeviceError::Corrupt(format!("{}: {e}", path.display())))?;
        b.validate()
            .map_err(|e| DeviceError::Corrupt(format!("{}: {e}", path.display())))?;
        Ok(b)
    }

    /// Checks what JSON typing cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {:?}, expected {FORMAT:?}", self.format));
        }
        self.oscore.validate("oscore")?;
        if let Some(u) = &self.uplink {
            u.validate("uplink")?;
            let secret = |p: &OscoreParams| {
                Zeroizing::new(hex::decode(&p.master_secret_hex).unwrap_or_default())
            };
            if *secret(u) == *secret(&self.oscore) {
                return Err(
                    "uplink.master_secret_hex must differ from oscore's (separate contexts)".into(),
                );
            }
        }
        if self.trust.manufacturer.is_empty() {
            return Err("trust.manufacturer must name at least one key".into());
        }
        if self.trust.require_approval && self.trust.approver.is_none() {
            return Err("trust.require_approval without trust.approver".into());
        }
        for k in self
            .trust
            .manufacturer
            .iter()
            .chain(&self.trust.third_party)
            .chain(&self.trust.authors)
            .chain(self.trust.approver.iter())
        {
            suit::PublicKey::from_pem(&k.pem).map_err(|e| format!("trust key {}: {e}", k.kid))?;
        }
        if !self.dispatcher.starts_with("coap://") {
            return Err("dispatcher must be a coap:// URI".into());
        }
        Ok(())
    }
}
