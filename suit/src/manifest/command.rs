//! The command-sequence codec (draft-ietf-suit-manifest §8.4.9 conditions, §8.4.10
//! directives): SUIT_Command_Sequence to [`CommandSequence`] and back.

use super::params::{Parameters, decode_params, params_to_value};
use crate::cbor::{self, Value};
use crate::consts::cmd;
use crate::error::DecodeError;
use crate::limits::Limits;

/// The argument of set-component-index: one index, all components (`true`), or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentIndex {
    /// One component.
    One(u64),
    /// All components.
    All,
    /// Several components.
    Many(Vec<u64>),
}

/// One command of a command sequence (§8.4.9 conditions, §8.4.10 directives).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// A condition (argument: reporting policy).
    Condition {
        /// Condition id.
        id: i64,
        /// Reporting policy bits.
        policy: u64,
    },
    /// directive-set-component-index (12).
    SetComponentIndex(ComponentIndex),
    /// directive-try-each (15): alternatives, and whether a trailing nil allows none.
    TryEach {
        /// Alternatives, tried in order.
        alternatives: Vec<CommandSequence>,
        /// A trailing nil: succeed even when no alternative does.
        allow_none: bool,
    },
    /// directive-run-sequence (32).
    RunSequence(CommandSequence),
    /// directive-override-parameters (20).
    OverrideParameters(Parameters),
    /// directive-set-parameters (19, trust-domains).
    SetParameters(Parameters),
    /// A directive taking a reporting policy: fetch, copy, write, invoke, swap, unlink, ...
    Directive {
        /// Directive id.
        id: i64,
        /// Reporting policy bits.
        policy: u64,
    },
    /// A command whose argument this implementation keeps opaque.
    Other {
        /// Command id.
        id: i64,
        /// The argument.
        arg: ciborium::Value,
    },
}

/// A decoded SUIT_Command_Sequence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandSequence(pub Vec<Command>);

fn is_condition(id: i64) -> bool {
    matches!(
        id,
        cmd::VENDOR_IDENTIFIER
            | cmd::CLASS_IDENTIFIER
            | cmd::IMAGE_MATCH
            | cmd::USE_BEFORE
            | cmd::COMPONENT_SLOT
            | cmd::CHECK_CONTENT
            | cmd::DEPENDENCY_INTEGRITY
            | cmd::IS_DEPENDENCY
            | cmd::ABORT
            | cmd::DEVICE_IDENTIFIER
            | cmd::IMAGE_NOT_MATCH
            | cmd::MINIMUM_BATTERY
            | cmd::UPDATE_AUTHORIZED
            | cmd::VERSION
    )
}

fn is_policy_directive(id: i64) -> bool {
    matches!(
        id,
        cmd::PROCESS_DEPENDENCY
            | cmd::WRITE
            | cmd::FETCH
            | cmd::COPY
            | cmd::INVOKE
            | cmd::SWAP
            | cmd::UNLINK
    )
}

impl CommandSequence {
    /// Decodes `bstr .cbor SUIT_Command_Sequence` content.
    pub fn decode_bstr(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        Self::decode_bstr_at(bytes, limits, 0)
    }

    fn decode_bstr_at(bytes: &[u8], limits: &Limits, depth: usize) -> Result<Self, DecodeError> {
        if depth > limits.max_sequence_depth {
            return Err(DecodeError::LimitExceeded {
                what: "command sequence nesting",
                limit: limits.max_sequence_depth,
            });
        }
        const AT: &str = "command sequence";
        let wrong = |expected| DecodeError::WrongType { at: AT, expected };
        let item = cbor::decode(bytes, limits)?;
        let arr = item.as_array().ok_or(wrong("array"))?;
        if arr.is_empty() || arr.len() % 2 != 0 {
            return Err(DecodeError::InvalidValue {
                at: AT,
                reason: "must hold one or more (command, argument) pairs",
            });
        }
        let mut out = Vec::with_capacity(arr.len() / 2);
        for pair in arr.chunks_exact(2) {
            let id = pair[0].as_i64().ok_or(wrong("integer command id"))?;
            let arg = &pair[1];
            let command = if is_condition(id) || is_policy_directive(id) {
                let policy = arg.as_u64().ok_or(wrong("uint reporting policy"))?;
                if is_condition(id) {
                    Command::Condition { id, policy }
                } else {
                    Command::Directive { id, policy }
                }
            } else {
                match id {
                    cmd::SET_COMPONENT_INDEX => Command::SetComponentIndex(match &arg.value {
                        Value::Uint(n) => ComponentIndex::One(*n),
                        Value::Bool(true) => ComponentIndex::All,
                        Value::Array(a) if !a.is_empty() => ComponentIndex::Many(
                            a.iter()
                                .map(|i| i.as_u64().ok_or(wrong("uint component index")))
                                .collect::<Result<_, _>>()?,
                        ),
                        _ => return Err(wrong("component index: uint, true or [+uint]")),
                    }),
                    cmd::TRY_EACH => {
                        let alts = arg.as_array().ok_or(wrong("try-each array"))?;
                        let (alts, allow_none) = match alts.split_last() {
                            Some((last, rest)) if last.value == Value::Null => (rest, true),
                            _ => (alts, false),
                        };
                        if alts.is_empty() {
                            return Err(DecodeError::InvalidValue {
                                at: AT,
                                reason: "try-each needs at least one alternative",
                            });
                        }
                        let alternatives = alts
                            .iter()
                            .map(|a| {
                                Self::decode_bstr_at(
                                    a.as_bytes().ok_or(wrong("bstr command sequence"))?,
                                    limits,
                                    depth + 1,
                                )
                            })
                            .collect::<Result<_, _>>()?;
                        Command::TryEach {
                            alternatives,
                            allow_none,
                        }
                    }
                    cmd::RUN_SEQUENCE => Command::RunSequence(Self::decode_bstr_at(
                        arg.as_bytes().ok_or(wrong("bstr command sequence"))?,
                        limits,
                        depth + 1,
                    )?),
                    cmd::OVERRIDE_PARAMETERS => {
                        Command::OverrideParameters(decode_params(arg, limits)?)
                    }
                    cmd::SET_PARAMETERS => Command::SetParameters(decode_params(arg, limits)?),
                    _ => Command::Other {
                        id,
                        arg: arg.to_owned_value(),
                    },
                }
            };
            out.push(command);
        }
        Ok(CommandSequence(out))
    }

    /// Encodes as the content of a `bstr .cbor SUIT_Command_Sequence`.
    pub fn encode(&self) -> Vec<u8> {
        use ciborium::Value as V;
        let int = |n: i64| V::Integer(n.into());
        let mut arr = Vec::new();
        for c in &self.0 {
            match c {
                Command::Condition { id, policy } | Command::Directive { id, policy } => {
                    arr.push(int(*id));
                    arr.push(V::Integer((*policy).into()));
                }
                Command::SetComponentIndex(ix) => {
                    arr.push(int(cmd::SET_COMPONENT_INDEX));
                    arr.push(match ix {
                        ComponentIndex::One(n) => V::Integer((*n).into()),
                        ComponentIndex::All => V::Bool(true),
                        ComponentIndex::Many(v) => {
                            V::Array(v.iter().map(|n| V::Integer((*n).into())).collect())
                        }
                    });
                }
                Command::TryEach {
                    alternatives,
                    allow_none,
                } => {
                    arr.push(int(cmd::TRY_EACH));
                    let mut alts: Vec<V> =
                        alternatives.iter().map(|s| V::Bytes(s.encode())).collect();
                    if *allow_none {
                        alts.push(V::Null);
                    }
                    arr.push(V::Array(alts));
                }
                Command::RunSequence(s) => {
                    arr.push(int(cmd::RUN_SEQUENCE));
                    arr.push(V::Bytes(s.encode()));
                }
                Command::OverrideParameters(p) | Command::SetParameters(p) => {
                    let id = if matches!(c, Command::OverrideParameters(_)) {
                        cmd::OVERRIDE_PARAMETERS
                    } else {
                        cmd::SET_PARAMETERS
                    };
                    arr.push(int(id));
                    arr.push(params_to_value(p));
                }
                Command::Other { id, arg } => {
                    arr.push(int(*id));
                    arr.push(arg.clone());
                }
            }
        }
        cbor::encode(&V::Array(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::param;
    use crate::manifest::Param;

    #[test]
    fn command_sequence_roundtrip() {
        let seq = CommandSequence(vec![
            Command::SetComponentIndex(ComponentIndex::One(1)),
            Command::OverrideParameters(vec![
                (param::IMAGE_SIZE, Param::Uint(46)),
                (param::URI, Param::Text("coaps://x/y".into())),
            ]),
            Command::Directive {
                id: cmd::FETCH,
                policy: 15,
            },
            Command::TryEach {
                alternatives: vec![CommandSequence(vec![Command::Condition {
                    id: cmd::ABORT,
                    policy: 0,
                }])],
                allow_none: true,
            },
        ]);
        let again = CommandSequence::decode_bstr(&seq.encode(), &Limits::default()).unwrap();
        assert_eq!(again, seq);
    }

    #[test]
    fn odd_command_sequence_is_rejected() {
        let bytes = cbor::encode(&ciborium::Value::Array(vec![ciborium::Value::Integer(
            1.into(),
        )]));
        assert!(CommandSequence::decode_bstr(&bytes, &Limits::default()).is_err());
    }
}
