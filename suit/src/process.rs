//! Evaluation of a verified manifest's conditions against a device's identity and state
//! (draft-ietf-suit-manifest §6.4 command sequence processing, §8.4.9 conditions,
//! §8.4.10 directives, §8.4.2 anti-rollback; update-management §4.6 version conditions).
//!
//! No I/O: directives that would touch storage or the network (fetch, copy, write, swap,
//! invoke) are not performed, they are returned as the steps of a [`Plan`]; conditions that
//! need image bytes (image-match, check-content) are returned as deferred checks. Anything
//! else this processor cannot act on fails with [`ConditionError::Unsupported`] when
//! processing reaches it (not at parse time).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::accept::Accepted;
use crate::consts::{cmd, manifest as mk, param};
use crate::error::{ConditionError, Error};
use crate::limits::Limits;
use crate::manifest::{
    Command, CommandSequence, ComponentIndex, Param, VendorId, VersionMatch, format_version,
};

/// What the device knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// Vendor-id.
    pub vendor_id: Uuid,
    /// Class-id.
    pub class_id: Uuid,
    /// Device-id, if the device has one.
    pub device_id: Option<Uuid>,
    /// Sequence number of the installed manifest (anti-rollback counter); `None` when
    /// nothing was installed by a manifest yet.
    pub installed_sequence: Option<u64>,
    /// Installed version per component index.
    pub versions: BTreeMap<usize, Vec<i64>>,
    /// The slot an update would be written to, per component (for condition-component-slot).
    pub target_slots: BTreeMap<usize, u64>,
}

impl DeviceState {
    /// A device with identity only.
    pub fn new(vendor_id: Uuid, class_id: Uuid) -> Self {
        Self {
            vendor_id,
            class_id,
            device_id: None,
            installed_sequence: None,
            versions: BTreeMap::new(),
            target_slots: BTreeMap::new(),
        }
    }
}

/// A directive to carry out, with the parameters in force for its component.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Directive id (fetch 21, copy 22, write 18, invoke 23, swap 31, unlink 33).
    pub directive: i64,
    /// Component index.
    pub component: usize,
    /// Parameters in force.
    pub params: BTreeMap<i64, Param>,
}

/// The outcome of a successful evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The manifest's sequence number (to record after a confirmed install).
    pub sequence_number: u64,
    /// Directives in order.
    pub steps: Vec<Step>,
    /// Conditions that need image bytes: (component, condition id, parameters in force).
    pub deferred: Vec<(usize, i64, BTreeMap<i64, Param>)>,
    /// The version the manifest installs (set-version), if declared.
    pub new_version: Option<Vec<i64>>,
}

struct Machine<'a> {
    device: &'a DeviceState,
    components: usize,
    params: Vec<BTreeMap<i64, Param>>,
    current: Vec<usize>,
    executed: usize,
    limits: &'a Limits,
    steps: Vec<Step>,
    deferred: Vec<(usize, i64, BTreeMap<i64, Param>)>,
}

/// Evaluates the manifest against the device: anti-rollback first, then the shared
/// sequence, payload-fetch, install and validate sequences.
pub fn evaluate(verified: &Accepted, device: &DeviceState, limits: &Limits) -> Result<Plan, Error> {
    let manifest = verified.manifest();
    // §8.4.2: the sequence number must be strictly greater than the installed one.
    if let Some(installed) = device.installed_sequence
        && manifest.sequence_number <= installed
    {
        return Err(ConditionError::RollbackRejected {
            installed,
            offered: manifest.sequence_number,
        }
        .into());
    }
    let components = manifest.common.components.len();
    let mut m = Machine {
        device,
        components,
        params: vec![BTreeMap::new(); components],
        // §8.4.10.1: with one component, index 0 is selected by default. With several,
        // 0 is also the initial index (draft-ietf-suit-manifest §6.4).
        current: vec![0],
        executed: 0,
        limits,
        steps: Vec::new(),
        deferred: Vec::new(),
    };
    let shared = manifest.common.shared_sequence.clone().unwrap_or_default();
    for key in [mk::PAYLOAD_FETCH, mk::INSTALL, mk::VALIDATE] {
        let Some(seq) = manifest.sequence(key) else {
            continue;
        };
        // §6.4: each sequence starts from the state the shared sequence leaves.
        m.params = vec![BTreeMap::new(); components];
        m.current = vec![0];
        m.run(&shared, 0)?;
        m.run(seq, 0)?;
    }
    if manifest.sequences.is_empty() {
        m.run(&shared, 0)?;
    }
    Ok(Plan {
        sequence_number: manifest.sequence_number,
        steps: m.steps,
        deferred: m.deferred,
        new_version: manifest.set_version.as_ref().map(|v| v.version.clone()),
    })
}

impl Machine<'_> {
    fn run(&mut self, seq: &CommandSequence, depth: usize) -> Result<(), Error> {
        if depth > self.limits.max_sequence_depth {
            return Err(ConditionError::Limit("command sequence nesting").into());
        }
        for c in &seq.0 {
            self.executed += 1;
            if self.executed > self.limits.max_commands_executed {
                return Err(ConditionError::Limit("commands executed").into());
            }
            self.step(c, depth)?;
        }
        Ok(())
    }

    fn step(&mut self, c: &Command, depth: usize) -> Result<(), Error> {
        match c {
            Command::SetComponentIndex(ix) => {
                let list = match ix {
                    ComponentIndex::One(n) => vec![*n],
                    ComponentIndex::All => (0..self.components as u64).collect(),
                    ComponentIndex::Many(v) => v.clone(),
                };
                for &n in &list {
                    if n as usize >= self.components {
                        return Err(ConditionError::ComponentIndex {
                            index: n,
                            count: self.components,
                        }
                        .into());
                    }
                }
                self.current = list.into_iter().map(|n| n as usize).collect();
            }
            Command::OverrideParameters(p) => {
                for &i in &self.current {
                    for (k, v) in p {
                        self.params[i].insert(*k, v.clone());
                    }
                }
            }
            Command::SetParameters(p) => {
                for &i in &self.current {
                    for (k, v) in p {
                        self.params[i].entry(*k).or_insert_with(|| v.clone());
                    }
                }
            }
            Command::TryEach {
                alternatives,
                allow_none,
            } => {
                // §8.4.10.2: run each alternative on a copy of the state; the first that
                // completes wins; if none does, try-each fails (unless it ends with nil).
                let mut last = None;
                for alt in alternatives {
                    let saved = (self.params.clone(), self.current.clone(), self.steps.len());
                    match self.run(alt, depth + 1) {
                        Ok(()) => return Ok(()),
                        Err(Error::Condition(ConditionError::Limit(l))) => {
                            return Err(ConditionError::Limit(l).into());
                        }
                        Err(e) => {
                            (self.params, self.current) = (saved.0, saved.1);
                            self.steps.truncate(saved.2);
                            last = Some(e);
                        }
                    }
                }
                if !allow_none {
                    return Err(last.unwrap_or(ConditionError::TryEachExhausted.into()));
                }
            }
            Command::RunSequence(s) => self.run(s, depth + 1)?,
            Command::Condition { id, .. } => {
                for i in self.current.clone() {
                    self.condition(*id, i)?;
                }
            }
            Command::Directive { id, .. } => match *id {
                cmd::FETCH | cmd::COPY | cmd::WRITE | cmd::INVOKE | cmd::SWAP | cmd::UNLINK => {
                    for &i in &self.current {
                        self.steps.push(Step {
                            directive: *id,
                            component: i,
                            params: self.params[i].clone(),
                        });
                    }
                }
                other => {
                    return Err(ConditionError::Unsupported {
                        what: "directive",
                        id: other,
                    }
                    .into());
                }
            },
            Command::Other { id, .. } => {
                return Err(ConditionError::Unsupported {
                    what: "command",
                    id: *id,
                }
                .into());
            }
        }
        Ok(())
    }

    fn param(&self, i: usize, condition: i64, key: i64) -> Result<&Param, Error> {
        self.params[i].get(&key).ok_or_else(|| {
            ConditionError::MissingParameter {
                condition,
                parameter: key,
            }
            .into()
        })
    }

    fn condition(&mut self, id: i64, i: usize) -> Result<(), Error> {
        let d = self.device;
        match id {
            // §8.4.9.1 vendor identifier
            cmd::VENDOR_IDENTIFIER => match self.param(i, id, param::VENDOR_IDENTIFIER)? {
                Param::Vendor(VendorId::Uuid(u)) if *u == d.vendor_id => Ok(()),
                Param::Vendor(v) => Err(ConditionError::VendorMismatch {
                    expected: v.to_string(),
                    actual: d.vendor_id.to_string(),
                }
                .into()),
                _ => Err(unsupported(id)),
            },
            // §8.4.9.1 class identifier
            cmd::CLASS_IDENTIFIER => match self.param(i, id, param::CLASS_IDENTIFIER)? {
                Param::Uuid(u) if *u == d.class_id => Ok(()),
                Param::Uuid(u) => Err(ConditionError::ClassMismatch {
                    expected: u.to_string(),
                    actual: d.class_id.to_string(),
                }
                .into()),
                _ => Err(unsupported(id)),
            },
            // §8.4.9.1 device identifier
            cmd::DEVICE_IDENTIFIER => match self.param(i, id, param::DEVICE_IDENTIFIER)? {
                Param::Uuid(u) if Some(*u) == d.device_id => Ok(()),
                Param::Uuid(u) => Err(ConditionError::DeviceMismatch {
                    expected: u.to_string(),
                    actual: d
                        .device_id
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "(none)".into()),
                }
                .into()),
                _ => Err(unsupported(id)),
            },
            // §8.4.9.4 component slot
            cmd::COMPONENT_SLOT => match self.param(i, id, param::COMPONENT_SLOT)? {
                Param::Uint(slot) => match d.target_slots.get(&i) {
                    Some(t) if t == slot => Ok(()),
                    Some(_) => Err(ConditionError::SlotMismatch { component: i }.into()),
                    None => Err(unsupported(id)),
                },
                _ => Err(unsupported(id)),
            },
            // update-management §4.6: version precondition
            cmd::VERSION => match self.param(i, id, param::VERSION)? {
                Param::Version(vm) => check_version(vm, d.versions.get(&i), i),
                _ => Err(unsupported(id)),
            },
            // §8.4.9.5 abort
            cmd::ABORT => Err(ConditionError::Aborted.into()),
            // §8.4.9.2 image match, §8.4.9.6 check content: need the bytes.
            cmd::IMAGE_MATCH | cmd::CHECK_CONTENT | cmd::IMAGE_NOT_MATCH => {
                self.deferred.push((i, id, self.params[i].clone()));
                Ok(())
            }
            other => Err(unsupported(other)),
        }
    }
}

fn unsupported(id: i64) -> Error {
    ConditionError::Unsupported {
        what: "condition",
        id,
    }
    .into()
}

fn check_version(vm: &VersionMatch, installed: Option<&Vec<i64>>, i: usize) -> Result<(), Error> {
    match installed {
        Some(v) if vm.satisfied_by(v) => Ok(()),
        other => Err(ConditionError::VersionPrecondition {
            component: i,
            installed: other
                .map(|v| format_version(v))
                .unwrap_or_else(|| "(none)".into()),
            required: vm.describe(),
        }
        .into()),
    }
}
