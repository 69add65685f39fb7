//! Wire types shared by the server and the typed client (no server dependencies: the
//! publisher and the dispatcher build this with the `client` feature alone).

use serde::{Deserialize, Serialize};

/// Media type of SUIT envelopes (draft-ietf-suit-manifest §13.6).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/suit-envelope+cose";

/// ICS metadata as listed (DESIGN.md §3): the text form `publisher inspect` shows too.
pub use suit::inspect::IcsSummary;

/// Facts about the payload (component #1 of the signed manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    pub size: u64,
    /// Hex SHA-256 of the ciphertext (also the strong ETag).
    pub sha256: String,
}

/// One published release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Hex SHA-256 of the manifest bstr.
    pub release_id: String,
    pub vendor_id: String,
    pub class_id: String,
    pub sequence: u64,
    pub version: Option<String>,
    pub ics: Option<IcsSummary>,
    /// kids whose signatures verified on upload.
    pub signer_kids: Vec<String>,
    /// kid of the release key (KEK) in the key repository.
    pub release_kid: Option<String>,
    pub envelope_size: u64,
    pub payload: PayloadInfo,
    pub published_at: u64,
    /// Who uploaded it (token client id, or `mirror:URL`).
    pub published_by: String,
    /// Publication number on this server (increasing).
    pub order: u64,
}

impl ReleaseRecord {
    pub fn product(&self) -> String {
        format!("{}/{}", self.vendor_id, self.class_id)
    }
}
