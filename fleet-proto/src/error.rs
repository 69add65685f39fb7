//! Errors: one enum for every message kind, naming the message, the field and the rule that
//! failed, never the value (a value may be a secret, or text chosen by an attacker).

use std::fmt;

use crate::text::Rule;

/// Which message a decoder (or the check inside an encoder) was reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `POST d/checkin` body ([`crate::uplink::CheckIn`]).
    CheckIn,
    /// The answer to a check-in ([`crate::uplink::CheckInReply`]).
    CheckInReply,
    /// An install report ([`crate::uplink::Report`]): `POST d/report` and the answer to
    /// `PUT suit/blob`.
    Report,
    /// `POST suit/pull` body ([`crate::push::PullNotice`]).
    PullNotice,
    /// The answer to `GET status` ([`crate::push::Status`]).
    Status,
    /// A provisioning bundle ([`crate::bundle::Bundle`]).
    Bundle,
    /// A JSON array of provisioning bundles (`device-sim fleet --provision`).
    BundleList,
    /// A device identity ([`crate::bundle::Identity`], `identity.json`).
    Identity,
    /// Trust anchors ([`crate::bundle::Trust`], `trust.json`).
    Trust,
    /// A device's install state ([`crate::state::State`], `state.json`).
    State,
}

impl Kind {
    /// Every kind, for tests and fuzzing.
    pub const ALL: [Kind; 10] = [
        Kind::CheckIn,
        Kind::CheckInReply,
        Kind::Report,
        Kind::PullNotice,
        Kind::Status,
        Kind::Bundle,
        Kind::BundleList,
        Kind::Identity,
        Kind::Trust,
        Kind::State,
    ];

    /// The name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CheckIn => "check-in",
            Kind::CheckInReply => "check-in reply",
            Kind::Report => "install report",
            Kind::PullNotice => "pull notice",
            Kind::Status => "status",
            Kind::Bundle => "bundle",
            Kind::BundleList => "bundle list",
            Kind::Identity => "identity",
            Kind::Trust => "trust anchors",
            Kind::State => "device state",
        }
    }

    /// The largest encoded message of this kind, in bytes; checked before parsing.
    pub fn max_size(self) -> usize {
        use crate::limits as l;
        match self {
            Kind::CheckIn => l::MAX_CHECKIN,
            Kind::CheckInReply => l::MAX_CHECKIN_REPLY,
            Kind::Report => l::MAX_REPORT,
            Kind::PullNotice => l::MAX_PULL_NOTICE,
            Kind::Status => l::MAX_STATUS,
            Kind::Bundle => l::MAX_BUNDLE,
            Kind::BundleList => l::MAX_BUNDLE_LIST,
            Kind::Identity => l::MAX_IDENTITY,
            Kind::Trust => l::MAX_TRUST,
            Kind::State => l::MAX_STATE,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a message was refused. `at` is the path of the field (`pending.release_id`,
/// `trust.manufacturer[0].pem`, or `(top level)`); no variant carries a field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Larger than [`Kind::max_size`]; refused before parsing.
    #[error("{kind} too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Message.
        kind: Kind,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or JSON followed by more bytes.
    #[error("malformed {kind}: not JSON (line {line}, column {column})")]
    Syntax {
        /// Message.
        kind: Kind,
        /// Line of the error (1-based).
        line: usize,
        /// Column of the error (1-based).
        column: usize,
    },
    /// The JSON ends early.
    #[error("malformed {kind}: truncated")]
    Truncated {
        /// Message.
        kind: Kind,
    },
    /// Arrays and objects nested deeper than the limit.
    #[error("malformed {kind}: nested deeper than {limit} levels")]
    TooDeep {
        /// Message.
        kind: Kind,
        /// The limit.
        limit: usize,
    },
    /// More JSON values (and object keys) than the limit.
    #[error("malformed {kind}: more than {limit} values")]
    TooManyValues {
        /// Message.
        kind: Kind,
        /// The limit.
        limit: usize,
    },
    /// A field the message does not define.
    #[error("malformed {kind}: unknown field {field:?} in {at}")]
    UnknownField {
        /// Message.
        kind: Kind,
        /// The object that holds it.
        at: String,
        /// The field name, cut to 32 characters, anything but `A-Z a-z 0-9 _ -` as `?`.
        field: String,
    },
    /// A field given twice (JSON parsers disagree on which one wins, so neither does).
    #[error("malformed {kind}: duplicate field {field:?} in {at}")]
    DuplicateField {
        /// Message.
        kind: Kind,
        /// The object that holds it.
        at: String,
        /// The field name.
        field: String,
    },
    /// A required field is absent.
    #[error("malformed {kind}: missing field {at}")]
    MissingField {
        /// Message.
        kind: Kind,
        /// The field.
        at: String,
    },
    /// A field of the wrong JSON type.
    #[error("malformed {kind}: {at}: expected {expected}")]
    WrongType {
        /// Message.
        kind: Kind,
        /// The field.
        at: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A number outside its range (negative, overflowing, or outside the protocol's bounds).
    #[error("malformed {kind}: {at}: out of range {min}..={max}")]
    OutOfRange {
        /// Message.
        kind: Kind,
        /// The field.
        at: String,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A text or list longer than its bound.
    #[error("malformed {kind}: {at}: longer than {max} {unit}")]
    TooLong {
        /// Message.
        kind: Kind,
        /// The field.
        at: String,
        /// The bound.
        max: usize,
        /// `bytes` or `entries`.
        unit: &'static str,
    },
    /// The value could not be serialised (an encoder's failure, not the peer's).
    #[error("{kind} cannot be encoded")]
    Unencodable {
        /// Message.
        kind: Kind,
    },
    /// A field that breaks its rule (syntax of a release id, version, name, key, …, or a
    /// rule between fields).
    #[error("malformed {kind}: {at}: must be {rule}")]
    Invalid {
        /// Message.
        kind: Kind,
        /// The field.
        at: String,
        /// The rule.
        rule: Rule,
    },
}

impl Error {
    /// The message kind the error is about.
    pub fn kind(&self) -> Kind {
        match self {
            Error::TooLarge { kind, .. }
            | Error::Syntax { kind, .. }
            | Error::Truncated { kind }
            | Error::TooDeep { kind, .. }
            | Error::TooManyValues { kind, .. }
            | Error::UnknownField { kind, .. }
            | Error::DuplicateField { kind, .. }
            | Error::MissingField { kind, .. }
            | Error::WrongType { kind, .. }
            | Error::OutOfRange { kind, .. }
            | Error::TooLong { kind, .. }
            | Error::Unencodable { kind }
            | Error::Invalid { kind, .. } => *kind,
        }
    }

    /// Whether the message was refused for its size alone (CoAP 4.13 rather than 4.00).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. })
    }
}

/// A field name from the input, made safe to print: at most 32 characters, anything but
/// `A-Z a-z 0-9 _ -` replaced by `?`.
pub(crate) fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if name.chars().nth(32).is_some() {
        out.push('…');
    }
    out
}
