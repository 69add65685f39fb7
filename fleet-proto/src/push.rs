//! The dispatcher → device direction (`docs/device.md`, "CoAP resources of a device"): the
//! pull notice and the device's status. The push itself (`PUT suit/envelope`, `suit/key`,
//! `suit/blob`) carries the release's own bytes, and its answer is an install report
//! ([`crate::uplink::Report`]).

use serde::Serialize;

use crate::bundle::Identity;
use crate::error::{Error, Kind};
use crate::json::{self, Read};
use crate::limits;
use crate::state::State;
use crate::text::{self, Rule};

/// `POST suit/pull`: the dispatcher asks the device to pull a release now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullNotice {
    /// The release to pull (64 lowercase hex digits).
    pub release_id: String,
}

impl PullNotice {
    /// Decodes a pull notice (at most [`limits::MAX_PULL_NOTICE`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<PullNotice, Error> {
        let r = Read {
            kind: Kind::PullNotice,
        };
        let n = json::parse(r.kind, bytes)?;
        let o = r.object(json::TOP, &n, &["release_id"])?;
        Ok(PullNotice {
            release_id: r.owned(
                "release_id",
                o.req("release_id")?,
                64,
                text::valid_release_id,
                Rule::ReleaseId,
            )?,
        })
    }

    /// Encodes, refusing a notice the device would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::PullNotice, |b| PullNotice::decode(b).map(drop))
    }
}

/// The answer to `GET status` (and what `device-sim status --json` prints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Identity.
    pub identity: Identity,
    /// Running version.
    pub version: String,
    /// Install state.
    pub state: State,
    /// The last events of the install log, oldest first, at most [`limits::MAX_EVENTS`]:
    /// free-form JSON objects for people (the dispatcher reads none of them), bounded by the
    /// message's size, depth and value limits, with duplicate keys refused at every level.
    pub recent_events: Vec<serde_json::Value>,
}

impl Status {
    /// Decodes a status (at most [`limits::MAX_STATUS`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Status, Error> {
        let r = Read { kind: Kind::Status };
        let n = json::parse(r.kind, bytes)?;
        let o = r.object(
            json::TOP,
            &n,
            &["identity", "version", "state", "recent_events"],
        )?;
        let events = r.list("recent_events", o.req("recent_events")?, limits::MAX_EVENTS)?;
        let recent_events = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = json::index("recent_events", i);
                // An object, whatever its members (checked for duplicates by to_value).
                if !matches!(e, json::Node::Object(_)) {
                    r.object(&at, e, &[])?;
                }
                json::to_value(r, &at, e)
            })
            .collect::<Result<_, _>>()?;
        Ok(Status {
            identity: Identity::from_node(r, "identity", o.req("identity")?)?,
            version: r.owned(
                "version",
                o.req("version")?,
                limits::MAX_VERSION,
                text::valid_version,
                Rule::Version,
            )?,
            state: State::from_node(r, "state", o.req("state")?)?,
            recent_events,
        })
    }

    /// Encodes, refusing a status the dispatcher would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::Status, |b| Status::decode(b).map(drop))
    }
}
