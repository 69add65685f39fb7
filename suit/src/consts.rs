//! Registry numbers used by this crate, in one place.
//!
//! Sources: draft-ietf-suit-manifest-34 §11 (IANA), draft-ietf-suit-firmware-encryption,
//! draft-ietf-suit-update-management, draft-ietf-suit-trust-domains, RFC 9052/9053, RFC 9864.
#![allow(missing_docs)]

/// CBOR tags.
pub mod tag {
    pub const SUIT_ENVELOPE: u64 = 107;
    pub const SUIT_MANIFEST: u64 = 1070;
    pub const COSE_SIGN1: u64 = 18;
    pub const COSE_MAC0: u64 = 17;
    pub const COSE_SIGN: u64 = 98;
    pub const COSE_MAC: u64 = 97;
    pub const COSE_ENCRYPT: u64 = 96;
    pub const COSE_ENCRYPT0: u64 = 16;
    pub const CBOR_PEN: u64 = 112;
}

/// SUIT_Envelope members (draft-ietf-suit-manifest §8.2).
pub mod envelope {
    pub const DELEGATION: i64 = 1;
    pub const AUTHENTICATION_WRAPPER: i64 = 2;
    pub const MANIFEST: i64 = 3;
    pub const DEPENDENCY_RESOLUTION: i64 = 15;
    pub const PAYLOAD_FETCH: i64 = 16;
    pub const CANDIDATE_VERIFICATION: i64 = 18;
    pub const INSTALL: i64 = 20;
    pub const TEXT: i64 = 23;
}

/// SUIT_Manifest members (draft-ietf-suit-manifest §8.4, trust-domains, update-management).
pub mod manifest {
    pub const VERSION: i64 = 1;
    pub const SEQUENCE_NUMBER: i64 = 2;
    pub const COMMON: i64 = 3;
    pub const REFERENCE_URI: i64 = 4;
    pub const MANIFEST_COMPONENT_ID: i64 = 5;
    pub const SET_VERSION: i64 = 6;
    pub const VALIDATE: i64 = 7;
    pub const LOAD: i64 = 8;
    pub const INVOKE: i64 = 9;
    pub const COSWID: i64 = 14;
    pub const DEPENDENCY_RESOLUTION: i64 = 15;
    pub const PAYLOAD_FETCH: i64 = 16;
    pub const CANDIDATE_VERIFICATION: i64 = 18;
    pub const INSTALL: i64 = 20;
    pub const TEXT: i64 = 23;
    pub const UNINSTALL: i64 = 24;
    /// This project's ICS metadata (Private Use range: less than -255). See docs/envelope.md.
    pub const ICS_METADATA: i64 = -1000;
}

/// SUIT_Common members.
pub mod common {
    pub const DEPENDENCIES: i64 = 1;
    pub const COMPONENTS: i64 = 2;
    pub const SHARED_SEQUENCE: i64 = 4;
}

/// Commands: conditions and directives (draft-ietf-suit-manifest §8.4.9/§8.4.10 + extensions).
pub mod cmd {
    pub const VENDOR_IDENTIFIER: i64 = 1;
    pub const CLASS_IDENTIFIER: i64 = 2;
    pub const IMAGE_MATCH: i64 = 3;
    pub const USE_BEFORE: i64 = 4;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const CHECK_CONTENT: i64 = 6;
    pub const DEPENDENCY_INTEGRITY: i64 = 7;
    pub const IS_DEPENDENCY: i64 = 8;
    pub const PROCESS_DEPENDENCY: i64 = 11;
    pub const SET_COMPONENT_INDEX: i64 = 12;
    pub const ABORT: i64 = 14;
    pub const TRY_EACH: i64 = 15;
    pub const WRITE: i64 = 18;
    pub const SET_PARAMETERS: i64 = 19;
    pub const OVERRIDE_PARAMETERS: i64 = 20;
    pub const FETCH: i64 = 21;
    pub const COPY: i64 = 22;
    pub const INVOKE: i64 = 23;
    pub const DEVICE_IDENTIFIER: i64 = 24;
    pub const IMAGE_NOT_MATCH: i64 = 25;
    pub const MINIMUM_BATTERY: i64 = 26;
    pub const UPDATE_AUTHORIZED: i64 = 27;
    pub const VERSION: i64 = 28;
    pub const WAIT: i64 = 29;
    pub const SWAP: i64 = 31;
    pub const RUN_SEQUENCE: i64 = 32;
    pub const UNLINK: i64 = 33;
    pub const OVERRIDE_MULTIPLE: i64 = 34;
    pub const COPY_PARAMS: i64 = 35;
}

/// Parameters (draft-ietf-suit-manifest §8.4.8 + extensions).
pub mod param {
    pub const VENDOR_IDENTIFIER: i64 = 1;
    pub const CLASS_IDENTIFIER: i64 = 2;
    pub const IMAGE_DIGEST: i64 = 3;
    pub const USE_BEFORE: i64 = 4;
    pub const COMPONENT_SLOT: i64 = 5;
    pub const STRICT_ORDER: i64 = 12;
    pub const SOFT_FAILURE: i64 = 13;
    pub const IMAGE_SIZE: i64 = 14;
    pub const CONTENT: i64 = 18;
    pub const ENCRYPTION_INFO: i64 = 19;
    pub const URI: i64 = 21;
    pub const SOURCE_COMPONENT: i64 = 22;
    pub const INVOKE_ARGS: i64 = 23;
    pub const DEVICE_IDENTIFIER: i64 = 24;
    pub const FETCH_ARGUMENTS: i64 = 25;
    pub const MINIMUM_BATTERY: i64 = 26;
    pub const UPDATE_PRIORITY: i64 = 27;
    pub const VERSION: i64 = 28;
    pub const WAIT_INFO: i64 = 29;
    pub const COMPONENT_METADATA: i64 = 30;
}

/// COSE algorithms (RFC 9053, RFC 9864, draft-ietf-suit-firmware-encryption).
pub mod alg {
    pub const SHA256: i64 = -16;
    pub const ES256: i64 = -7;
    pub const ESP256: i64 = -9;
    pub const HMAC_256_256: i64 = 5;
    pub const A128GCM: i64 = 1;
    pub const A192GCM: i64 = 2;
    pub const A256GCM: i64 = 3;
    pub const A128KW: i64 = -3;
    pub const A192KW: i64 = -4;
    pub const A256KW: i64 = -5;
    pub const ECDH_ES_A128KW: i64 = -29;
    pub const A128CTR: i64 = -65534;
}

/// Version comparison types (draft-ietf-suit-update-management §4.6).
pub mod version_cmp {
    pub const GREATER: u64 = 1;
    pub const GREATER_EQUAL: u64 = 2;
    pub const EQUAL: u64 = 3;
    pub const LESSER_EQUAL: u64 = 4;
    pub const LESSER: u64 = 5;
}
