//! Typed errors. Every rejection names the check that failed; [`Error::code`] is the one
//! place where errors map to stable wire codes (SUIT report reasons, problem-detail types).

// Each variant is documented by its `#[error]` message.
#![allow(missing_docs)]
use thiserror::Error;

/// Failures while decoding untrusted bytes (CBOR well-formedness, limits, structure).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("input ends before the CBOR item is complete (truncated)")]
    Truncated,
    #[error("{count} trailing byte(s) after the CBOR item")]
    TrailingBytes { count: usize },
    #[error("malformed CBOR at byte {offset}")]
    Malformed { offset: usize },
    #[error("indefinite-length CBOR item at byte {offset} (only definite lengths are accepted)")]
    IndefiniteLength { offset: usize },
    #[error("non-minimal CBOR encoding at byte {offset} (preferred serialization required)")]
    NonMinimal { offset: usize },
    #[error("duplicate map key at byte {offset}")]
    DuplicateKey { offset: usize },
    #[error("invalid UTF-8 in text string at byte {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: usize },
    #[error("not a SUIT envelope (expected CBOR tag 107 around a map)")]
    NotEnvelope,
    #[error("{at}: expected {expected}")]
    WrongType {
        at: &'static str,
        expected: &'static str,
    },
    #[error("{at}: required member {member} is missing")]
    MissingMember { at: &'static str, member: i64 },
    #[error("{at}: unknown critical member {key}")]
    UnknownMember { at: &'static str, key: i64 },
    #[error("{at}: {reason}")]
    InvalidValue {
        at: &'static str,
        reason: &'static str,
    },
    #[error("unsupported manifest version {0} (this implementation reads version 1)")]
    UnsupportedManifestVersion(u64),
    #[error("severed member {member} does not match the digest in the manifest")]
    SeveredDigestMismatch { member: i64 },
}

/// Failures of the manifest's conditions against a device (draft-ietf-suit-manifest §8.4.9).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConditionError {
    #[error("vendor-id mismatch: manifest is for {expected}, device is {actual}")]
    VendorMismatch { expected: String, actual: String },
    #[error("class-id mismatch: manifest is for {expected}, device is {actual}")]
    ClassMismatch { expected: String, actual: String },
    #[error("device-id mismatch: manifest is for {expected}, device is {actual}")]
    DeviceMismatch { expected: String, actual: String },
    #[error("rollback rejected: installed sequence number {installed}, offered {offered}")]
    RollbackRejected { installed: u64, offered: u64 },
    #[error(
        "version precondition failed on component {component}: installed {installed}, required {required}"
    )]
    VersionPrecondition {
        component: usize,
        installed: String,
        required: String,
    },
    #[error("component slot condition failed on component {component}")]
    SlotMismatch { component: usize },
    #[error("condition {condition} needs parameter {parameter}, which is not set")]
    MissingParameter { condition: i64, parameter: i64 },
    #[error("component index {index} is out of range ({count} components)")]
    ComponentIndex { index: u64, count: usize },
    #[error("the manifest aborted processing (condition-abort)")]
    Aborted,
    #[error("no try-each alternative succeeded")]
    TryEachExhausted,
    #[error("unsupported {what} {id}: this processor cannot act on it")]
    Unsupported { what: &'static str, id: i64 },
    #[error("processing limit exceeded: {0}")]
    Limit(&'static str),
}

/// Every way that reading, verifying, decrypting or evaluating a release can fail.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("decoding: {0}")]
    Decode(#[from] DecodeError),
    #[error(
        "envelope is not authenticated (no COSE_Sign1 or COSE_Mac0 in the authentication wrapper)"
    )]
    Unauthenticated,
    #[error("unsupported digest algorithm {0}")]
    UnsupportedDigestAlgorithm(i64),
    #[error("manifest digest mismatch: the manifest was modified after signing")]
    ManifestDigestMismatch,
    #[error("unsupported COSE algorithm {alg} in {at}")]
    UnsupportedAlgorithm { at: &'static str, alg: i64 },
    #[error("signature by kid {kid} is invalid")]
    SignatureInvalid { kid: String },
    #[error("MAC is invalid")]
    MacInvalid,
    #[error("no signature by a trusted key (kids present: {kids})")]
    NoTrustedSignature { kids: String },
    #[error("approval signature by the domain dispatcher is missing")]
    ApprovalMissing,
    #[error("signer {kid} is revoked")]
    SignerRevoked { kid: String },
    #[error("signer {kid} is not valid yet (before its valid_from)")]
    SignerNotYetValid { kid: String },
    #[error("signer {kid} has expired (after its valid_until)")]
    SignerExpired { kid: String },
    #[error("more than one authentication block by {kid}")]
    DuplicateSignature { kid: String },
    #[error("parameter {parameter} of component {component} is given two different values")]
    ParameterConflict { component: usize, parameter: i64 },
    #[error("signer {kid} is not authorised: {reason}")]
    SignerNotAuthorized { kid: String, reason: String },
    #[error("T3 release carries no author signature")]
    AuthorSignatureMissing,
    #[error("author signature is invalid or not by a trusted author key")]
    AuthorSignatureInvalid,
    #[error("manifest has no {0}")]
    ProfileViolation(&'static str),
    #[error("release key kid {actual} does not match the envelope's recipient kid {expected}")]
    WrongKeyId { expected: String, actual: String },
    #[error("key unwrap failed: wrong release key (KEK)")]
    KeyUnwrapFailed,
    #[error("payload decryption failed: ciphertext or tag was modified")]
    DecryptionFailed,
    #[error("ciphertext size mismatch: manifest says {expected} bytes, got {actual}")]
    CiphertextSizeMismatch { expected: u64, actual: u64 },
    #[error("ciphertext digest mismatch: payload does not match the signed manifest")]
    CiphertextDigestMismatch,
    #[error("plaintext size mismatch: manifest says {expected} bytes, got {actual}")]
    PlaintextSizeMismatch { expected: u64, actual: u64 },
    #[error("plaintext digest mismatch: decrypted image does not match the signed digest")]
    PlaintextDigestMismatch,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("condition failed: {0}")]
    Condition(#[from] ConditionError),
    #[error("invalid release parameters: {0}")]
    InvalidInput(String),
}

impl Error {
    /// A stable, short code naming the failed check, for reports, problem details and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Decode(_) => "malformed-envelope",
            Error::Unauthenticated => "unauthenticated",
            Error::UnsupportedDigestAlgorithm(_) | Error::UnsupportedAlgorithm { .. } => {
                "unsupported-algorithm"
            }
            Error::ManifestDigestMismatch => "manifest-digest-mismatch",
            Error::SignatureInvalid { .. } => "signature-invalid",
            Error::MacInvalid => "mac-invalid",
            Error::NoTrustedSignature { .. } => "untrusted-signer",
            Error::ApprovalMissing => "approval-missing",
            Error::SignerNotAuthorized { .. } => "signer-not-authorized",
            Error::SignerRevoked { .. } => "signer-revoked",
            Error::SignerNotYetValid { .. } => "signer-not-yet-valid",
            Error::SignerExpired { .. } => "signer-expired",
            Error::DuplicateSignature { .. } => "duplicate-signature",
            Error::ParameterConflict { .. } => "parameter-conflict",
            Error::AuthorSignatureMissing => "author-signature-missing",
            Error::AuthorSignatureInvalid => "author-signature-invalid",
            Error::ProfileViolation(_) => "profile-violation",
            Error::WrongKeyId { .. } | Error::KeyUnwrapFailed => "wrong-release-key",
            Error::DecryptionFailed => "decryption-failed",
            Error::CiphertextSizeMismatch { .. } | Error::CiphertextDigestMismatch => {
                "ciphertext-digest-mismatch"
            }
            Error::PlaintextSizeMismatch { .. } | Error::PlaintextDigestMismatch => {
                "plaintext-digest-mismatch"
            }
            Error::InvalidKey(_) => "invalid-key",
            Error::InvalidInput(_) => "invalid-input",
            Error::Condition(c) => match c {
                ConditionError::VendorMismatch { .. } => "wrong-vendor",
                ConditionError::ClassMismatch { .. } => "wrong-class",
                ConditionError::DeviceMismatch { .. } => "wrong-device",
                ConditionError::RollbackRejected { .. } => "rollback",
                ConditionError::VersionPrecondition { .. } => "version-precondition",
                ConditionError::Unsupported { .. } => "unsupported",
                _ => "condition-failed",
            },
        }
    }

    /// Whether the failure is a security rejection (an attack or a mis-targeted release),
    /// as opposed to a malformed or unsupported input. Dispatchers must not retry these.
    pub fn is_security_rejection(&self) -> bool {
        !matches!(
            self,
            Error::Decode(_)
                | Error::UnsupportedAlgorithm { .. }
                | Error::UnsupportedDigestAlgorithm(_)
                | Error::InvalidInput(_)
                | Error::Condition(ConditionError::Unsupported { .. })
                | Error::Condition(ConditionError::Limit(_))
        )
    }
}
