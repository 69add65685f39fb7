//! The one JSON reader behind every decoder, in two steps:
//!
//! 1. [`parse`]: bytes → a [`Node`] tree. The size is checked first; `serde_json` does the
//!    syntax (UTF-8, escapes, numbers, no trailing bytes); our visitor bounds nesting and the
//!    number of values, and keeps every object member in order, duplicates included.
//! 2. The message's `from_node`: walks the tree with [`object`] (unknown and duplicate
//!    fields refused), and the typed getters below (wrong types, ranges, lengths, rules), so
//!    every refusal names the field and the rule.
//!
//! Strings are held in [`Zeroizing`] buffers, so a secret read from a bundle does not stay in
//! freed memory once the tree is dropped.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::error::{Error, Kind, sanitize_name};
use crate::limits::{MAX_DEPTH, MAX_VALUES};
use crate::text::Rule;

/// A parsed JSON value.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    NegInt(i64),
    /// A number with a fraction or exponent, or an integer beyond 64 bits.
    Float(f64),
    Str(Zeroizing<String>),
    List(Vec<Node>),
    /// Members in order; duplicates kept (refused by [`object`]).
    Object(Vec<(String, Node)>),
}

#[derive(Debug, Clone, Copy)]
enum Violation {
    Depth,
    Values,
}

#[derive(Debug)]
struct Budget {
    left: Cell<usize>,
    violation: Cell<Option<Violation>>,
}

impl Budget {
    fn new() -> Self {
        Budget {
            left: Cell::new(MAX_VALUES),
            violation: Cell::new(None),
        }
    }

    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => self.fail(Violation::Values),
        }
    }

    fn fail<T, E: de::Error>(&self, v: Violation) -> Result<T, E> {
        self.violation.set(Some(v));
        Err(E::custom("limit exceeded"))
    }
}

/// Builds a [`Node`]; `depth` is the number of arrays and objects around the value.
struct NodeSeed<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        self.budget.take()?;
        d.deserialize_any(self)
    }
}

impl NodeSeed<'_> {
    fn inner<E: de::Error>(&self) -> Result<NodeSeed<'_>, E> {
        if self.depth >= MAX_DEPTH {
            return self.budget.fail(Violation::Depth);
        }
        Ok(NodeSeed {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::NegInt(v), Node::UInt))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(Zeroizing::new(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element_seed(self.inner()?)? {
            out.push(n);
        }
        Ok(Node::List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let inner = self.inner()?;
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            self.budget.take()?;
            let v = map.next_value_seed(NodeSeed {
                budget: inner.budget,
                depth: inner.depth,
            })?;
            out.push((k, v));
        }
        Ok(Node::Object(out))
    }
}

fn check_size(kind: Kind, bytes: &[u8]) -> Result<(), Error> {
    let limit = kind.max_size();
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            kind,
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}

fn json_error(kind: Kind, e: &serde_json::Error, violation: Option<Violation>) -> Error {
    match violation {
        Some(Violation::Depth) => Error::TooDeep {
            kind,
            limit: MAX_DEPTH,
        },
        Some(Violation::Values) => Error::TooManyValues {
            kind,
            limit: MAX_VALUES,
        },
        None if e.is_eof() => Error::Truncated { kind },
        None => Error::Syntax {
            kind,
            line: e.line(),
            column: e.column(),
        },
    }
}

/// Bytes → tree, for a message of `kind` (size checked first).
pub(crate) fn parse(kind: Kind, bytes: &[u8]) -> Result<Node, Error> {
    check_size(kind, bytes)?;
    let budget = Budget::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let node = NodeSeed {
        budget: &budget,
        depth: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| json_error(kind, &e, budget.violation.get()))?;
    de.end().map_err(|e| json_error(kind, &e, None))?;
    Ok(node)
}

/// A top-level JSON array of at most `max` messages, each turned into a `T` by `element` as
/// soon as it is read (one element's tree at a time in memory; each has its own value
/// budget).
pub(crate) fn parse_list<T>(
    kind: Kind,
    bytes: &[u8],
    max: usize,
    element: impl FnMut(usize, Node) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    check_size(kind, bytes)?;
    let seed = ListSeed {
        kind,
        max,
        element: RefCell::new(element),
        failure: RefCell::new(None),
        violation: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = (&seed).deserialize(&mut de);
    let failure = seed.failure.borrow_mut().take();
    let out = match (out, failure) {
        (_, Some(e)) => return Err(e),
        (Ok(v), None) => v,
        (Err(e), None) if e.is_data() && seed.violation.get().is_none() => {
            return Err(Error::WrongType {
                kind,
                at: TOP.into(),
                expected: "an array",
            });
        }
        (Err(e), None) => return Err(json_error(kind, &e, seed.violation.get())),
    };
    de.end().map_err(|e| json_error(kind, &e, None))?;
    Ok(out)
}

struct ListSeed<F> {
    kind: Kind,
    max: usize,
    element: RefCell<F>,
    /// A typed refusal of an element (the serde error only carries it out of the parser).
    failure: RefCell<Option<Error>>,
    violation: Cell<Option<Violation>>,
}

impl<'de, T, F: FnMut(usize, Node) -> Result<T, Error>> DeserializeSeed<'de> for &ListSeed<F> {
    type Value = Vec<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, F: FnMut(usize, Node) -> Result<T, Error>> Visitor<'de> for &ListSeed<F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        loop {
            let budget = Budget::new();
            let next = seq.next_element_seed(NodeSeed {
                budget: &budget,
                depth: 1,
            });
            let node = match next {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(out),
                Err(e) => {
                    self.violation.set(budget.violation.get());
                    return Err(e);
                }
            };
            if out.len() >= self.max {
                *self.failure.borrow_mut() = Some(Error::TooLong {
                    kind: self.kind,
                    at: TOP.into(),
                    max: self.max,
                    unit: "entries",
                });
                return Err(de::Error::custom("refused"));
            }
            match (self.element.borrow_mut())(out.len(), node) {
                Ok(v) => out.push(v),
                Err(e) => {
                    *self.failure.borrow_mut() = Some(e);
                    return Err(de::Error::custom("refused"));
                }
            }
        }
    }
}

/// How the top level is named in errors.
pub(crate) const TOP: &str = "(top level)";

/// `at.name`, or `name` at the top level.
pub(crate) fn join(at: &str, name: &str) -> String {
    if at == TOP || at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

/// `at[i]`.
pub(crate) fn index(at: &str, i: usize) -> String {
    if at == TOP || at.is_empty() {
        format!("[{i}]")
    } else {
        format!("{at}[{i}]")
    }
}

/// The members of a JSON object whose fields are `fields`: any other field, and any field
/// given twice, is refused.
#[derive(Debug)]
pub(crate) struct Obj<'a> {
    kind: Kind,
    at: String,
    entries: &'a [(String, Node)],
}

pub(crate) fn object<'a>(
    kind: Kind,
    at: &str,
    node: &'a Node,
    fields: &[&str],
) -> Result<Obj<'a>, Error> {
    let Node::Object(entries) = node else {
        return Err(Error::WrongType {
            kind,
            at: at.to_owned(),
            expected: "an object",
        });
    };
    for (i, (k, _)) in entries.iter().enumerate() {
        if !fields.contains(&k.as_str()) {
            return Err(Error::UnknownField {
                kind,
                at: at.to_owned(),
                field: sanitize_name(k),
            });
        }
        if entries[..i].iter().any(|(seen, _)| seen == k) {
            return Err(Error::DuplicateField {
                kind,
                at: at.to_owned(),
                field: sanitize_name(k),
            });
        }
    }
    Ok(Obj {
        kind,
        at: at.to_owned(),
        entries,
    })
}

impl<'a> Obj<'a> {
    /// The path of a member.
    pub(crate) fn path(&self, name: &str) -> String {
        join(&self.at, name)
    }

    /// A member; None when absent or `null` (an optional field may be either).
    pub(crate) fn opt(&self, name: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Node::Null))
    }

    /// A required member (absent or `null`: refused).
    pub(crate) fn req(&self, name: &str) -> Result<&'a Node, Error> {
        self.opt(name).ok_or_else(|| Error::MissingField {
            kind: self.kind,
            at: self.path(name),
        })
    }
}

/// Typed reads of one node, for one message kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read {
    pub(crate) kind: Kind,
}

impl Read {
    fn wrong(&self, at: &str, expected: &'static str) -> Error {
        Error::WrongType {
            kind: self.kind,
            at: at.to_owned(),
            expected,
        }
    }

    pub(crate) fn invalid(&self, at: &str, rule: Rule) -> Error {
        Error::Invalid {
            kind: self.kind,
            at: at.to_owned(),
            rule,
        }
    }

    pub(crate) fn object<'a>(
        &self,
        at: &str,
        node: &'a Node,
        fields: &[&str],
    ) -> Result<Obj<'a>, Error> {
        object(self.kind, at, node, fields)
    }

    pub(crate) fn boolean(&self, at: &str, node: &Node) -> Result<bool, Error> {
        match node {
            Node::Bool(b) => Ok(*b),
            _ => Err(self.wrong(at, "true or false")),
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn uint(&self, at: &str, node: &Node, min: u64, max: u64) -> Result<u64, Error> {
        let range = || Error::OutOfRange {
            kind: self.kind,
            at: at.to_owned(),
            min,
            max,
        };
        match node {
            Node::UInt(v) if (min..=max).contains(v) => Ok(*v),
            Node::UInt(_) | Node::NegInt(_) => Err(range()),
            // An integer beyond 64 bits arrives as a float (2^64 and up, or below -2^63).
            Node::Float(f)
                if f.fract() == 0.0
                    && (*f >= 18_446_744_073_709_551_616.0
                        || *f < -9_223_372_036_854_775_808.0) =>
            {
                Err(range())
            }
            _ => Err(self.wrong(at, "an integer")),
        }
    }

    pub(crate) fn str<'a>(&self, at: &str, node: &'a Node) -> Result<&'a str, Error> {
        match node {
            Node::Str(s) => Ok(s.as_str()),
            _ => Err(self.wrong(at, "a string")),
        }
    }

    /// Text of at most `max` bytes that passes `ok`.
    pub(crate) fn text<'a>(
        &self,
        at: &str,
        node: &'a Node,
        max: usize,
        ok: impl Fn(&str) -> bool,
        rule: Rule,
    ) -> Result<&'a str, Error> {
        let s = self.str(at, node)?;
        if s.len() > max {
            return Err(Error::TooLong {
                kind: self.kind,
                at: at.to_owned(),
                max,
                unit: "bytes",
            });
        }
        if !ok(s) {
            return Err(self.invalid(at, rule));
        }
        Ok(s)
    }

    /// An array of at most `max` entries.
    pub(crate) fn list<'a>(
        &self,
        at: &str,
        node: &'a Node,
        max: usize,
    ) -> Result<&'a [Node], Error> {
        let Node::List(items) = node else {
            return Err(self.wrong(at, "an array"));
        };
        if items.len() > max {
            return Err(Error::TooLong {
                kind: self.kind,
                at: at.to_owned(),
                max,
                unit: "entries",
            });
        }
        Ok(items)
    }

    /// A string member turned into an owned `String`.
    pub(crate) fn owned(
        &self,
        at: &str,
        node: &Node,
        max: usize,
        ok: impl Fn(&str) -> bool,
        rule: Rule,
    ) -> Result<String, Error> {
        self.text(at, node, max, ok, rule).map(str::to_owned)
    }
}

/// A tree as a `serde_json::Value` (for free-form parts such as status events); duplicates
/// are refused at every level, as everywhere else.
pub(crate) fn to_value(r: Read, at: &str, node: &Node) -> Result<serde_json::Value, Error> {
    use serde_json::Value;
    Ok(match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::UInt(v) => Value::from(*v),
        Node::NegInt(v) => Value::from(*v),
        Node::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| r.wrong(at, "a finite number"))?,
        Node::Str(s) => Value::String(s.to_string()),
        Node::List(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| to_value(r, &index(at, i), n))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                let child = join(at, &sanitize_name(k));
                if map.contains_key(k) {
                    return Err(Error::DuplicateField {
                        kind: r.kind,
                        at: at.to_owned(),
                        field: sanitize_name(k),
                    });
                }
                map.insert(k.clone(), to_value(r, &child, v)?);
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests;
