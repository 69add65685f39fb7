//! What the dispatcher and its devices exchange — the provisioning bundle, check-in and its
//! reply, install reports, status, pull notices, and the device's install state they carry —
//! with one strict decoder. No I/O: bytes in, values out, and back.
//!
//! ```
//! use fleet_proto::uplink::{CheckIn, CheckInReply};
//! use fleet_proto::Error;
//!
//! let body = br#"{"coap_port": 5683, "version": "1.0.0", "sequence": 0, "release_id": null,
//!   "state": {"active": "a", "a": null, "b": null, "counter": 0, "pending": null, "boots": 1},
//!   "boots": 1}"#;
//! let c = CheckIn::decode(body)?;
//! assert_eq!((c.version.as_str(), c.coap_port), ("1.0.0", 5683));
//!
//! // The body carries no identity, and fields it does not define are refused: a device
//! // cannot claim to be another.
//! let claimed = br#"{"coap_port": 5683, "device_id": "plc-1"}"#;
//! assert!(matches!(CheckIn::decode(claimed), Err(Error::UnknownField { .. })));
//!
//! // Encoders check what they produce with the same decoder, so a dispatcher cannot send a
//! // reply its devices would refuse.
//! let reply = CheckInReply { next_checkin_s: 0, pending: None };
//! assert!(matches!(reply.encode(), Err(Error::OutOfRange { .. })));
//! # Ok::<(), Error>(())
//! ```
//!
//! Every message kind ([`Kind`]) has one `decode` function: the size is checked before
//! parsing ([`Kind::max_size`]); the JSON must be well-formed with nothing after it; nesting
//! and the number of values are bounded; unknown fields and duplicate keys are refused at
//! every level; numbers are range-checked (negative or overflowing values refused); text
//! fields are bounded and follow their rule ([`text`]). Errors ([`Error`]) name the message,
//! the field and the rule, never the value. Each `encode` runs the decoder over its own
//! output. The wire format is documented once, with its limits, in `docs/device.md`
//! ("Messages between the dispatcher and devices"); [`limits`] holds the numbers.
//!
//! The OSCORE master secrets of a bundle live in [`bundle::SecretHex`]: zeroised on drop,
//! redacted in `Debug`, compared in constant time.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod coap;
mod error;
mod json;
pub mod limits;
pub mod push;
pub mod state;
pub mod text;
pub mod uplink;

pub use error::{Error, Kind};
pub use text::{Rule, valid_device_name, valid_release_id};

/// Serialises `value` compactly and runs `check` (the kind's decoder) over the result.
pub(crate) fn encode<T: serde::Serialize>(
    value: &T,
    kind: Kind,
    check: impl FnOnce(&[u8]) -> Result<(), Error>,
) -> Result<Vec<u8>, Error> {
    let bytes = serde_json::to_vec(value).map_err(|_| Error::Unencodable { kind })?;
    check(&bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
