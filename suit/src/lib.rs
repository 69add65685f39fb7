//! SUIT envelopes for the ICS software-update system: decode, verify, encrypt, build.
//!
//! Implements draft-ietf-suit-manifest (-34+), draft-ietf-suit-firmware-encryption and the
//! parts of draft-ietf-suit-update-management the profile uses, with COSE (RFC 9052/9053)
//! through `coset`. No I/O, no clock, no global RNG: bytes in, values and bytes out;
//! randomness is a parameter.
//!
//! ```
//! use suit::{Rules, TrustStore, TrustAnchor, Role, PublicKey};
//!
//! // The IETF example envelope (draft-ietf-suit-manifest, Appendix A, example 0).
//! let envelope = std::fs::read("../../shared/vectors/suit-manifest/manifest-spec/example0.signed.cbor")
//!     .or_else(|_| std::fs::read("../shared/vectors/suit-manifest/manifest-spec/example0.signed.cbor"))
//!     .unwrap();
//! let pem = std::fs::read_to_string("../shared/vectors/suit-manifest/keys/spec-example-signing-key.p256.pub.pem")
//!     .or_else(|_| std::fs::read_to_string("../../shared/vectors/suit-manifest/keys/spec-example-signing-key.p256.pub.pem"))
//!     .unwrap();
//! let mut trust = TrustStore::new();
//! // The spec examples carry no kid, so this key is tried against any signature.
//! trust.add(TrustAnchor::new(PublicKey::from_pem(&pem).unwrap(), Role::Manufacturer).matching_any_kid());
//! // The vectors are not releases of this project's profile: accept them as generic SUIT.
//! let accepted = suit::accept(&envelope, &trust, &Rules::generic(), 0).unwrap();
//! assert_eq!(accepted.manifest().sequence_number, 0);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accept;
pub mod cbor;
pub mod consts;
#[cfg(feature = "test-corpus")]
pub mod corpus;
pub mod cose;
pub mod encryption;
pub mod envelope;
pub mod error;
pub mod gcm;
pub mod ics;
pub mod inspect;
pub mod limits;
pub mod manifest;
pub mod process;
pub mod profile;
pub mod release;
pub mod resolve;
pub mod trust;

pub use accept::{
    Accepted, ApprovalRule, AuthorRule, AuthorStatus, Profile, Rules, Signer, accept, approve,
};
pub use cose::{PublicKey, SigningKey};
pub use encryption::{EncryptionInfo, PayloadDecryptor, PayloadEncryptor, ReleaseKey};
pub use envelope::Envelope;
pub use error::{ConditionError, DecodeError, Error};
pub use ics::{Category, IcsMetadata, Severity, UpdateType};
pub use limits::Limits;
pub use manifest::{Manifest, SuitDigest};
pub use process::{DeviceState, Plan, evaluate};
pub use profile::Release;
pub use release::{ImageInfo, ReleaseParams};
pub use trust::{KeyStanding, Role, TrustAnchor, TrustFile, TrustStore, UnixTime};
