//! CoAP resource paths and Content-Formats of both directions, in one place. Every request
//! is OSCORE-protected (`docs/transport.md`); the paths here travel inside OSCORE.

/// CoAP Content-Format numbers (RFC 7252 §12.3, RFC 9052 §11).
pub mod content_format {
    /// `text/plain; charset=utf-8`: diagnostics of error replies.
    pub const TEXT: u32 = 0;
    /// `application/octet-stream`: envelopes and blobs.
    pub const OCTET_STREAM: u32 = 42;
    /// `application/json`: every message of this crate.
    pub const JSON: u32 = 50;
    /// `application/cose-key`: the release key.
    pub const COSE_KEY: u32 = 101;
}

/// Resources of a device (the dispatcher is the client).
pub mod device {
    /// `PUT`: the approved envelope.
    pub const ENVELOPE: &str = "suit/envelope";
    /// `PUT`: the release key (COSE_Key).
    pub const KEY: &str = "suit/key";
    /// `PUT` (Block1): the encrypted blob; answered with an install report.
    pub const BLOB: &str = "suit/blob";
    /// `GET`: the device's status.
    pub const STATUS: &str = "status";
    /// `POST`: a pull notice.
    pub const PULL: &str = "suit/pull";
}

/// Resources of the dispatcher's uplink server (the device is the client).
pub mod dispatcher {
    /// `POST`: a check-in.
    pub const CHECKIN: &str = "d/checkin";
    /// `POST`: an install report.
    pub const REPORT: &str = "d/report";
}

/// One artifact of a release, pulled by a device from `d/releases/{release_id}/{artifact}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// The envelope with the dispatcher's approval signature.
    Envelope,
    /// The release key (COSE_Key bytes).
    Key,
    /// The encrypted blob.
    Blob,
}

impl Artifact {
    /// The last path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Artifact::Envelope => "envelope",
            Artifact::Key => "key",
            Artifact::Blob => "blob",
        }
    }

    /// The artifact a path segment names.
    pub fn from_segment(s: &str) -> Option<Artifact> {
        match s {
            "envelope" => Some(Artifact::Envelope),
            "key" => Some(Artifact::Key),
            "blob" => Some(Artifact::Blob),
            _ => None,
        }
    }

    /// Its Content-Format.
    pub fn content_format(self) -> u32 {
        match self {
            Artifact::Key => content_format::COSE_KEY,
            Artifact::Envelope | Artifact::Blob => content_format::OCTET_STREAM,
        }
    }

    /// `d/releases/{release_id}/{segment}`. The caller checks `release_id`
    /// ([`crate::text::valid_release_id`]) before it goes into a path.
    pub fn path(self, release_id: &str) -> String {
        format!("d/releases/{release_id}/{}", self.segment())
    }
}

/// What an uplink request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkResource<'a> {
    /// `d/checkin`.
    CheckIn,
    /// `d/report`.
    Report,
    /// `d/releases/{release_id}/{artifact}`; `release_id` is as received, not yet checked.
    Release {
        /// The path's release id segment.
        release_id: &'a str,
        /// The artifact.
        artifact: Artifact,
    },
    /// Anything else (4.04).
    Unknown,
}

impl<'a> UplinkResource<'a> {
    /// Parses a request path (segments joined by `/`).
    pub fn parse(path: &'a str) -> UplinkResource<'a> {
        if path == dispatcher::CHECKIN {
            return UplinkResource::CheckIn;
        }
        if path == dispatcher::REPORT {
            return UplinkResource::Report;
        }
        let mut s = path.split('/');
        match (s.next(), s.next(), s.next(), s.next(), s.next()) {
            (Some("d"), Some("releases"), Some(id), Some(which), None) => {
                match Artifact::from_segment(which) {
                    Some(artifact) => UplinkResource::Release {
                        release_id: id,
                        artifact,
                    },
                    None => UplinkResource::Unknown,
                }
            }
            _ => UplinkResource::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_paths() {
        let id = "ab".repeat(32);
        for a in [Artifact::Envelope, Artifact::Key, Artifact::Blob] {
            let p = a.path(&id);
            assert_eq!(
                UplinkResource::parse(&p),
                UplinkResource::Release {
                    release_id: &id,
                    artifact: a
                }
            );
        }
        assert_eq!(UplinkResource::parse("d/checkin"), UplinkResource::CheckIn);
        assert_eq!(UplinkResource::parse("d/report"), UplinkResource::Report);
        for other in [
            "",
            "d",
            "d/checkin/x",
            "d/releases/x",
            "d/releases/x/manifest",
            "d/releases/x/blob/y",
            "x/releases/a/blob",
        ] {
            assert_eq!(
                UplinkResource::parse(other),
                UplinkResource::Unknown,
                "{other}"
            );
        }
    }
}
