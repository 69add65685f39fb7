//! The device → dispatcher direction (`docs/transport.md`, "Device uplink"): check-in and its
//! reply, and the install report (also the answer to a push, `PUT suit/blob`).
//!
//! The bodies carry no device identity: the dispatcher identifies a device by the OSCORE kid
//! that verified the request, and the decoders refuse unknown fields, so a device cannot
//! claim to be another.

use serde::Serialize;

use crate::error::{Error, Kind};
use crate::json::{self, Node, Read};
use crate::limits;
use crate::state::State;
use crate::text::{self, Rule};

fn release_id(r: Read, at: &str, n: &Node) -> Result<String, Error> {
    r.owned(at, n, 64, text::valid_release_id, Rule::ReleaseId)
}

fn version(r: Read, at: &str, n: &Node) -> Result<String, Error> {
    r.owned(
        at,
        n,
        limits::MAX_VERSION,
        text::valid_version,
        Rule::Version,
    )
}

/// `POST d/checkin`: what a device tells the dispatcher about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckIn {
    /// UDP port of the device's own CoAP server (1-65535); the dispatcher combines it with
    /// the request's source address to push to the device.
    pub coap_port: u16,
    /// Running version.
    pub version: String,
    /// Anti-rollback counter: the manifest sequence number of the last confirmed install.
    pub sequence: u64,
    /// Release id of the running image (None: the factory image).
    pub release_id: Option<String>,
    /// The device's install state (`state.json`).
    pub state: State,
    /// Number of boots.
    pub boots: u64,
}

impl CheckIn {
    /// Decodes a check-in (at most [`limits::MAX_CHECKIN`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<CheckIn, Error> {
        let r = Read {
            kind: Kind::CheckIn,
        };
        let n = json::parse(r.kind, bytes)?;
        let o = r.object(
            json::TOP,
            &n,
            &[
                "coap_port",
                "version",
                "sequence",
                "release_id",
                "state",
                "boots",
            ],
        )?;
        let port = r.uint("coap_port", o.req("coap_port")?, 1, u16::MAX.into())?;
        Ok(CheckIn {
            coap_port: u16::try_from(port).unwrap_or(u16::MAX),
            version: version(r, "version", o.req("version")?)?,
            sequence: r.uint("sequence", o.req("sequence")?, 0, u64::MAX)?,
            release_id: o
                .opt("release_id")
                .map(|n| release_id(r, "release_id", n))
                .transpose()?,
            state: State::from_node(r, "state", o.req("state")?)?,
            boots: r.uint("boots", o.req("boots")?, 0, u64::MAX)?,
        })
    }

    /// Encodes, refusing a check-in the dispatcher would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::CheckIn, |b| CheckIn::decode(b).map(drop))
    }
}

/// A release offered to a device in a check-in reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Release id (64 lowercase hex digits).
    pub release_id: String,
    /// Size of the approved envelope in bytes.
    pub envelope_size: u64,
    /// Size of the encrypted blob in bytes.
    pub blob_size: u64,
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckInReply {
    /// Seconds until the next check-in, within [`limits::CHECKIN_INTERVAL_S`] (the device
    /// adds jitter).
    pub next_checkin_s: u32,
    /// A release the device should pull and install now, if any.
    pub pending: Option<Pending>,
}

impl CheckInReply {
    /// Decodes a check-in reply (at most [`limits::MAX_CHECKIN_REPLY`] bytes). Unknown
    /// fields are refused here too: a dispatcher that needs more says so with a new message,
    /// not with fields an old device would silently ignore.
    pub fn decode(bytes: &[u8]) -> Result<CheckInReply, Error> {
        let r = Read {
            kind: Kind::CheckInReply,
        };
        let n = json::parse(r.kind, bytes)?;
        let o = r.object(json::TOP, &n, &["next_checkin_s", "pending"])?;
        let (lo, hi) = limits::CHECKIN_INTERVAL_S;
        let next = r.uint(
            "next_checkin_s",
            o.req("next_checkin_s")?,
            lo.into(),
            hi.into(),
        )?;
        let pending = match o.opt("pending") {
            None => None,
            Some(n) => {
                let p = r.object("pending", n, &["release_id", "envelope_size", "blob_size"])?;
                Some(Pending {
                    release_id: release_id(r, "pending.release_id", p.req("release_id")?)?,
                    envelope_size: r.uint(
                        "pending.envelope_size",
                        p.req("envelope_size")?,
                        0,
                        u64::MAX,
                    )?,
                    blob_size: r.uint("pending.blob_size", p.req("blob_size")?, 0, u64::MAX)?,
                })
            }
        };
        Ok(CheckInReply {
            next_checkin_s: u32::try_from(next).unwrap_or(hi),
            pending,
        })
    }

    /// Encodes, refusing a reply a device would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::CheckInReply, |b| {
            CheckInReply::decode(b).map(drop)
        })
    }
}

/// How an install attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallOutcome {
    /// Installed, switched, self-tested and confirmed.
    Installed,
    /// Refused by a security or applicability check (do not retry without operator action).
    Rejected,
    /// Switched, failed its self-test, reverted to the previous image.
    Reverted,
}

impl InstallOutcome {
    const WORDS: &'static [&'static str] = &["installed", "rejected", "reverted"];

    /// The wire word: `installed`, `rejected` or `reverted`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallOutcome::Installed => "installed",
            InstallOutcome::Rejected => "rejected",
            InstallOutcome::Reverted => "reverted",
        }
    }
}

/// The install report a device sends after every attempt: the answer to `PUT suit/blob`, and
/// the body of `POST d/report` after a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Release id, when the envelope could be decoded.
    pub release_id: Option<String>,
    /// Outcome.
    pub outcome: InstallOutcome,
    /// The failed check ([`text::valid_check_code`]: `suit::Error::code`, or a device-level
    /// code such as `too-large`), when rejected or reverted.
    pub check: Option<String>,
    /// Human-readable detail, at most [`limits::MAX_MESSAGE`] bytes
    /// ([`text::clip_message`] makes any text fit).
    pub message: String,
    /// Running version before the attempt.
    pub version_before: String,
    /// Running version after the attempt.
    pub version_after: String,
}

impl Report {
    /// Decodes a report (at most [`limits::MAX_REPORT`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Report, Error> {
        let r = Read { kind: Kind::Report };
        let n = json::parse(r.kind, bytes)?;
        let o = r.object(
            json::TOP,
            &n,
            &[
                "release_id",
                "outcome",
                "check",
                "message",
                "version_before",
                "version_after",
            ],
        )?;
        let outcome = match r.str("outcome", o.req("outcome")?)? {
            "installed" => InstallOutcome::Installed,
            "rejected" => InstallOutcome::Rejected,
            "reverted" => InstallOutcome::Reverted,
            _ => {
                return Err(r.invalid("outcome", Rule::OneOf(InstallOutcome::WORDS)));
            }
        };
        Ok(Report {
            release_id: o
                .opt("release_id")
                .map(|n| release_id(r, "release_id", n))
                .transpose()?,
            outcome,
            check: o
                .opt("check")
                .map(|n| {
                    r.owned(
                        "check",
                        n,
                        limits::MAX_CHECK,
                        text::valid_check_code,
                        Rule::CheckCode,
                    )
                })
                .transpose()?,
            message: r.owned(
                "message",
                o.req("message")?,
                limits::MAX_MESSAGE,
                text::valid_message,
                Rule::Message,
            )?,
            version_before: version(r, "version_before", o.req("version_before")?)?,
            version_after: version(r, "version_after", o.req("version_after")?)?,
        })
    }

    /// Encodes, refusing a report the dispatcher would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::Report, |b| Report::decode(b).map(drop))
    }
}
