//! The one parameter resolver of the release profile (`docs/acceptance.md`): every
//! parameter of every component has exactly one value, whichever command sequence or
//! try-each alternative a processor follows.

use std::collections::BTreeMap;

use crate::consts::param;
use crate::error::Error;
use crate::limits::Limits;
use crate::manifest::{Command, CommandSequence, ComponentIndex, Manifest, Param, VendorId};

/// The parameters of every component, as the one resolver found them: each parameter has
/// exactly one value over the shared sequence and every command sequence of the manifest,
/// try-each alternatives included.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    params: Vec<BTreeMap<i64, Param>>,
    /// Conditions the shared sequence applies to each component, outside try-each.
    pub(crate) shared_conditions: Vec<Vec<i64>>,
}

impl Resolved {
    /// The parameters of `component`.
    pub fn component(&self, component: usize) -> Option<&BTreeMap<i64, Param>> {
        self.params.get(component)
    }

    pub(crate) fn vendors(&self) -> Vec<VendorId> {
        let mut out = Vec::new();
        for p in &self.params {
            if let Some(Param::Vendor(v)) = p.get(&param::VENDOR_IDENTIFIER)
                && !out.contains(v)
            {
                out.push(v.clone());
            }
        }
        out
    }
}

/// The one parameter resolver (release profile). Walks the shared sequence and every
/// command sequence (validate, load, invoke, dependency-resolution, payload-fetch,
/// candidate-verification, install, uninstall), following set-component-index and entering
/// try-each alternatives and run-sequence, and refuses a parameter that is given two
/// different values for one component (`parameter-conflict`). A device processing the
/// manifest therefore sees the same digest, size, identifiers and encryption info whatever
/// path it takes, and so do the author check and the payload check.
pub fn resolve(manifest: &Manifest, limits: &Limits) -> Result<Resolved, Error> {
    let n = manifest.common.components.len();
    let mut r = Resolver {
        n,
        params: vec![BTreeMap::new(); n],
        conditions: vec![Vec::new(); n],
        visited: 0,
        limits,
    };
    if let Some(shared) = &manifest.common.shared_sequence {
        r.walk(shared, &mut vec![0], 0, true)?;
    }
    for seq in manifest.sequences.values() {
        if let Some(seq) = seq.value() {
            // Off-spec strictness: with several components, each sequence names its
            // component first, so no reading of where the index starts (§6.4) can change
            // which component a command applies to.
            if n > 1 && !matches!(seq.0.first(), None | Some(Command::SetComponentIndex(_))) {
                return Err(Error::ProfileViolation(
                    "each command sequence starts with set-component-index",
                ));
            }
            r.walk(seq, &mut vec![0], 0, false)?;
        }
    }
    Ok(Resolved {
        params: r.params,
        shared_conditions: r.conditions,
    })
}

struct Resolver<'l> {
    n: usize,
    params: Vec<BTreeMap<i64, Param>>,
    conditions: Vec<Vec<i64>>,
    visited: usize,
    limits: &'l Limits,
}

impl Resolver<'_> {
    fn walk(
        &mut self,
        seq: &CommandSequence,
        current: &mut Vec<usize>,
        depth: usize,
        top_shared: bool,
    ) -> Result<(), Error> {
        if depth > self.limits.max_sequence_depth {
            return Err(crate::error::ConditionError::Limit("command sequence nesting").into());
        }
        for c in &seq.0 {
            self.visited += 1;
            if self.visited > self.limits.max_commands_executed {
                return Err(crate::error::ConditionError::Limit("commands executed").into());
            }
            match c {
                Command::SetComponentIndex(ix) => {
                    let list: Vec<u64> = match ix {
                        ComponentIndex::One(i) => vec![*i],
                        ComponentIndex::All => (0..self.n as u64).collect(),
                        ComponentIndex::Many(v) => v.clone(),
                    };
                    if let Some(bad) = list.iter().find(|i| **i as usize >= self.n) {
                        return Err(crate::error::ConditionError::ComponentIndex {
                            index: *bad,
                            count: self.n,
                        }
                        .into());
                    }
                    *current = list.into_iter().map(|i| i as usize).collect();
                }
                Command::OverrideParameters(p) | Command::SetParameters(p) => {
                    for &i in current.iter() {
                        for (k, v) in p {
                            match self.params[i].get(k) {
                                Some(old) if old != v => {
                                    return Err(Error::ParameterConflict {
                                        component: i,
                                        parameter: *k,
                                    });
                                }
                                Some(_) => {}
                                None => {
                                    self.params[i].insert(*k, v.clone());
                                }
                            }
                        }
                    }
                }
                Command::TryEach { alternatives, .. } => {
                    for alt in alternatives {
                        let mut here = current.clone();
                        self.walk(alt, &mut here, depth + 1, false)?;
                    }
                }
                Command::RunSequence(s) => {
                    let mut here = current.clone();
                    self.walk(s, &mut here, depth + 1, false)?;
                }
                Command::Condition { id, .. } if top_shared => {
                    for &i in current.iter() {
                        self.conditions[i].push(*id);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
