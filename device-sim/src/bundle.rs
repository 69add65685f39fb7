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
//!   "dispatcher": "coap://127.0.0.1:5683",
//!   "factory_version": "1.0.0"
//! }
//! ```
//!
//! `oscore` has the same shape as the `oscore` crate's context files (issue 3), seen from the
//! device: its sender id is the dispatcher's recipient id and vice versa.

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

/// A provisioning bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// Identity.
    pub identity: Identity,
    /// Trust anchors.
    pub trust: Trust,
    /// OSCORE context with the dispatcher.
    pub oscore: OscoreParams,
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
        let hexv = |name: &str, v: &str, min: usize, max: usize| match hex::decode(v) {
            Ok(b) if (min..=max).contains(&b.len()) => Ok(()),
            _ => Err(format!("oscore.{name} must be hex of {min}..={max} bytes")),
        };
        hexv("master_secret_hex", &self.oscore.master_secret_hex, 16, 64)?;
        hexv("sender_id_hex", &self.oscore.sender_id_hex, 0, 7)?;
        hexv("recipient_id_hex", &self.oscore.recipient_id_hex, 0, 7)?;
        if let Some(s) = &self.oscore.master_salt_hex {
            hexv("master_salt_hex", s, 0, 64)?;
        }
        if let Some(s) = &self.oscore.id_context_hex {
            hexv("id_context_hex", s, 0, 64)?;
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
