//! Every bound the decoders apply, in one place (`docs/device.md`, "Messages between the
//! dispatcher and devices", lists them). Sizes are of the encoded JSON, checked before parsing.

/// `POST d/checkin` body.
pub const MAX_CHECKIN: usize = 8 << 10;
/// The answer to a check-in.
pub const MAX_CHECKIN_REPLY: usize = 4 << 10;
/// An install report (`POST d/report`, and the answer to `PUT suit/blob`).
pub const MAX_REPORT: usize = 8 << 10;
/// `POST suit/pull` body.
pub const MAX_PULL_NOTICE: usize = 256;
/// The answer to `GET status`.
pub const MAX_STATUS: usize = 64 << 10;
/// One provisioning bundle.
pub const MAX_BUNDLE: usize = 256 << 10;
/// A JSON array of bundles (`device-sim fleet --provision`).
pub const MAX_BUNDLE_LIST: usize = 256 << 20;
/// Bundles in one list.
pub const MAX_BUNDLES: usize = 100_000;
/// `identity.json`.
pub const MAX_IDENTITY: usize = 4 << 10;
/// `trust.json` (the `trust` member of a bundle).
pub const MAX_TRUST: usize = 192 << 10;
/// `state.json` (the `state` member of a check-in or status).
pub const MAX_STATE: usize = 16 << 10;

/// Nesting of arrays and objects.
pub const MAX_DEPTH: usize = 10;
/// JSON values and object keys in one message (in one bundle of a list).
pub const MAX_VALUES: usize = 4096;

/// A version (`X.Y.Z`; six 64-bit SUIT version components fit).
pub const MAX_VERSION: usize = 128;
/// A check code (`suit::Error::code`, or a device-level code such as `too-large`).
pub const MAX_CHECK: usize = 64;
/// A device name.
pub const MAX_NAME: usize = 64;
/// A key id (text).
pub const MAX_KID: usize = 64;
/// A public key in PEM.
pub const MAX_PEM: usize = 2048;
/// The human-readable message of a report, in bytes of UTF-8 (so that the worst-case JSON
/// escaping still fits [`MAX_REPORT`]).
pub const MAX_MESSAGE: usize = 2048;
/// The dispatcher's `coap://` URI.
pub const MAX_URI: usize = 256;
/// Keys in each list of trust anchors.
pub const MAX_KEYS: usize = 32;
/// Events in a status.
pub const MAX_EVENTS: usize = 16;

/// OSCORE master secret, bytes (RFC 8613 §3.2.1: at least 16 recommended here).
pub const MASTER_SECRET_BYTES: (usize, usize) = (16, 64);
/// OSCORE sender and recipient ids, bytes (RFC 8613 §3.3: at most 7 with the default AEAD).
pub const ID_BYTES: (usize, usize) = (0, 7);
/// OSCORE master salt and ID context, bytes.
pub const SALT_BYTES: (usize, usize) = (0, 64);

/// `next_checkin_s` of a check-in reply: 1 s to 7 days. A buggy or hostile value must not
/// make a device spin, nor go silent for months.
pub const CHECKIN_INTERVAL_S: (u32, u32) = (1, 7 * 24 * 3600);

/// Largest envelope a device takes (pushed or pulled; the `suit` decoder's default limit).
pub const MAX_ENVELOPE: usize = 1 << 20;
/// Largest release key (COSE_Key) a device takes.
pub const MAX_RELEASE_KEY: usize = 1024;
