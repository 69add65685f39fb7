//! A device's install state: the two slots, the anti-rollback counter and an install in
//! progress. The device keeps it as `state.json` (its commit point, `docs/device.md`) and
//! sends it in every check-in ([`crate::uplink::CheckIn::state`]) and status
//! ([`crate::push::Status::state`]).
//!
//! ```json
//! { "active": "a",
//!   "a": { "version": "1.0.0", "sequence": 0, "sha256": "…64 hex…", "size": 1408,
//!          "release_id": "factory" },
//!   "b": null, "counter": 0, "pending": null, "boots": 1 }
//! ```

use serde::Serialize;

use crate::error::{Error, Kind};
use crate::json::{self, Node, Read};
use crate::limits;
use crate::text::{self, Rule};

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    const WORDS: &'static [&'static str] = &["a", "b"];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Index used by the SUIT component-slot condition.
    pub fn index(self) -> u64 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    fn from_node(r: Read, at: &str, n: &Node) -> Result<Slot, Error> {
        match r.str(at, n)? {
            "a" => Ok(Slot::A),
            "b" => Ok(Slot::B),
            _ => Err(r.invalid(at, Rule::OneOf(Self::WORDS))),
        }
    }
}

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotImage {
    /// Version ([`text::valid_version`]).
    pub version: String,
    /// Manifest sequence number that installed it (0 for the factory image).
    pub sequence: u64,
    /// SHA-256 of the image, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Release id (64 lowercase hex digits), or `factory`.
    pub release_id: String,
}

/// The release id of the factory image in [`SlotImage::release_id`].
pub const FACTORY: &str = "factory";

impl SlotImage {
    fn from_node(r: Read, at: &str, n: &Node) -> Result<SlotImage, Error> {
        let o = r.object(
            at,
            n,
            &["version", "sequence", "sha256", "size", "release_id"],
        )?;
        let f = |name: &str| o.path(name);
        Ok(SlotImage {
            version: r.owned(
                &f("version"),
                o.req("version")?,
                limits::MAX_VERSION,
                text::valid_version,
                Rule::Version,
            )?,
            sequence: r.uint(&f("sequence"), o.req("sequence")?, 0, u64::MAX)?,
            sha256: r.owned(
                &f("sha256"),
                o.req("sha256")?,
                64,
                text::valid_sha256,
                Rule::Sha256,
            )?,
            size: r.uint(&f("size"), o.req("size")?, 0, u64::MAX)?,
            release_id: r.owned(
                &f("release_id"),
                o.req("release_id")?,
                64,
                |s| s == FACTORY || text::valid_release_id(s),
                Rule::SlotRelease,
            )?,
        })
    }
}

/// Where an interrupted install stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The image is written and checked in the inactive slot; not yet switched.
    Written,
    /// The device switched to the new slot and has not confirmed it yet.
    Switched,
}

impl Phase {
    const WORDS: &'static [&'static str] = &["written", "switched"];

    fn from_node(r: Read, at: &str, n: &Node) -> Result<Phase, Error> {
        match r.str(at, n)? {
            "written" => Ok(Phase::Written),
            "switched" => Ok(Phase::Switched),
            _ => Err(r.invalid(at, Rule::OneOf(Self::WORDS))),
        }
    }
}

/// An install in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// Release id.
    pub release_id: String,
    /// The slot being installed.
    pub slot: Slot,
    /// Phase reached.
    pub phase: Phase,
}

impl Pending {
    fn from_node(r: Read, at: &str, n: &Node) -> Result<Pending, Error> {
        let o = r.object(at, n, &["release_id", "slot", "phase"])?;
        Ok(Pending {
            release_id: r.owned(
                &o.path("release_id"),
                o.req("release_id")?,
                64,
                text::valid_release_id,
                Rule::ReleaseId,
            )?,
            slot: Slot::from_node(r, &o.path("slot"), o.req("slot")?)?,
            phase: Phase::from_node(r, &o.path("phase"), o.req("phase")?)?,
        })
    }
}

/// The install state (`state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    /// The slot the device boots.
    pub active: Slot,
    /// Slot A contents (None: empty or invalid).
    pub a: Option<SlotImage>,
    /// Slot B contents.
    pub b: Option<SlotImage>,
    /// Anti-rollback counter: the sequence number of the last confirmed install. It only
    /// moves forward, and only after confirmation.
    pub counter: u64,
    /// An install in progress.
    pub pending: Option<Pending>,
    /// Number of boots.
    pub boots: u64,
}

impl State {
    /// The image in `slot`.
    pub fn slot(&self, slot: Slot) -> Option<&SlotImage> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    /// Sets the image in `slot`.
    pub fn set_slot(&mut self, slot: Slot, image: Option<SlotImage>) {
        match slot {
            Slot::A => self.a = image,
            Slot::B => self.b = image,
        }
    }

    /// The running image.
    pub fn running(&self) -> Option<&SlotImage> {
        self.slot(self.active)
    }

    /// Decodes `state.json` (at most [`limits::MAX_STATE`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<State, Error> {
        let r = Read { kind: Kind::State };
        State::from_node(r, json::TOP, &json::parse(r.kind, bytes)?)
    }

    /// Encodes compactly, refusing a state its own decoder would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        crate::encode(self, Kind::State, |b| State::decode(b).map(drop))
    }

    /// Checks the state as a peer would ([`State::encode`] without keeping the bytes).
    pub fn validate(&self) -> Result<(), Error> {
        self.encode().map(drop)
    }

    pub(crate) fn from_node(r: Read, at: &str, n: &Node) -> Result<State, Error> {
        let o = r.object(at, n, &["active", "a", "b", "counter", "pending", "boots"])?;
        let image = |name: &str| {
            o.opt(name)
                .map(|n| SlotImage::from_node(r, &o.path(name), n))
                .transpose()
        };
        Ok(State {
            active: Slot::from_node(r, &o.path("active"), o.req("active")?)?,
            a: image("a")?,
            b: image("b")?,
            counter: r.uint(&o.path("counter"), o.req("counter")?, 0, u64::MAX)?,
            pending: o
                .opt("pending")
                .map(|n| Pending::from_node(r, &o.path("pending"), n))
                .transpose()?,
            boots: r.uint(&o.path("boots"), o.req("boots")?, 0, u64::MAX)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> State {
        State {
            active: Slot::B,
            a: Some(SlotImage {
                version: "1.0.0".into(),
                sequence: 0,
                sha256: "ab".repeat(32),
                size: 1408,
                release_id: FACTORY.into(),
            }),
            b: Some(SlotImage {
                version: "2.0.5".into(),
                sequence: 5,
                sha256: "cd".repeat(32),
                size: 4096,
                release_id: "ef".repeat(32),
            }),
            counter: 5,
            pending: Some(Pending {
                release_id: "ef".repeat(32),
                slot: Slot::B,
                phase: Phase::Switched,
            }),
            boots: 3,
        }
    }

    #[test]
    fn round_trip_and_the_old_pretty_form() {
        let s = sample();
        assert_eq!(State::decode(&s.encode().unwrap()).unwrap(), s);
        // What device-sim has always written (pretty, nulls present).
        let pretty = serde_json::to_vec_pretty(&s).unwrap();
        assert_eq!(State::decode(&pretty).unwrap(), s);
        // Absent optional members read as null.
        let minimal = br#"{"active":"a","counter":0,"boots":0}"#;
        let m = State::decode(minimal).unwrap();
        assert_eq!((m.a, m.b, m.pending), (None, None, None));
    }

    #[test]
    fn hostile_states() {
        let base = serde_json::to_value(sample()).unwrap();
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            edit(&mut v);
            State::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err()
        };
        assert!(matches!(
            bad(&|v| v["active"] = "c".into()),
            Error::Invalid { .. }
        ));
        assert!(matches!(
            bad(&|v| v["counter"] = (-1).into()),
            Error::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(&|v| v["extra"] = 1.into()),
            Error::UnknownField { .. }
        ));
        assert!(matches!(
            bad(&|v| v["b"]["release_id"] = "../../x".into()),
            Error::TooLong { .. } | Error::Invalid { .. }
        ));
        assert!(matches!(
            bad(&|v| v["b"]["sha256"] = "AB".repeat(32).into()),
            Error::Invalid { .. }
        ));
        assert!(matches!(
            bad(&|v| v["pending"]["phase"] = "done".into()),
            Error::Invalid { .. }
        ));
        assert!(matches!(
            bad(&|v| v["b"]["version"] = "x".repeat(129).into()),
            Error::TooLong { .. }
        ));
        let e = bad(&|v| v["b"]["size"] = "big".into());
        assert_eq!(
            e.to_string(),
            "malformed device state: b.size: expected an integer"
        );
        let dup = br#"{"active":"a","active":"b","counter":0,"boots":0}"#;
        assert!(matches!(
            State::decode(dup),
            Err(Error::DuplicateField { .. })
        ));
        assert!(matches!(
            State::decode(&vec![b' '; limits::MAX_STATE + 1]),
            Err(Error::TooLarge { .. })
        ));
    }
}
