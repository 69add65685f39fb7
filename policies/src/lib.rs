//! Operator update policies: which releases install automatically, which wait for a person,
//! which are only noted or refused; when (maintenance windows) and how (staged rollouts).
//!
//! A policy is a TOML file (see `examples/plant.toml`). Rules are matched in order; the first
//! rule whose `match` fits the release and the device group decides. Parsing is strict:
//! unknown keys, unknown names and invalid values are refused with the file, line and
//! reason, so a running dispatcher can keep its last good policy ([`LivePolicy`]).
//!
//! ```
//! use policies::{Policy, ReleaseFacts, Action};
//! use suit::{UpdateType, Role};
//!
//! let policy = Policy::from_toml(r#"
//!     [defaults]
//!     action = "hold"
//!
//!     [[rule]]
//!     name = "apps install automatically"
//!     match = { type = ["T1"] }
//!     action = "install"
//! "#, "inline.toml").unwrap();
//! let app = ReleaseFacts::new(UpdateType::T1, Role::ThirdParty);
//! assert_eq!(policy.decide(&app, None).action, Action::Install);
//! let firmware = ReleaseFacts::new(UpdateType::T2, Role::Manufacturer);
//! assert_eq!(policy.decide(&firmware, None).action, Action::Hold);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod parse;
mod schedule;

use std::path::Path;
use std::sync::Arc;

use suit::{Category, Role, Severity, UpdateType};
use uuid::Uuid;

pub use parse::PolicyError;
pub use schedule::{Rollout, Size, Window};

/// What to do with a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Install automatically (in the rule's window, with its rollout).
    Install,
    /// Hold for operator approval.
    Hold,
    /// Notify operators; do not install.
    Notify,
    /// Record in the audit log only.
    Log,
    /// Refuse the release.
    Reject,
}

/// The facts about a release that rules match on (all from the verified manifest and the
/// trust store entry of its signer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// T1/T2/T3.
    pub update_type: UpdateType,
    /// Categories.
    pub categories: Vec<Category>,
    /// CVE identifiers.
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Option<Severity>,
    /// Role of the publisher key that signed it.
    pub publisher_role: Role,
    /// Vendor-id.
    pub vendor: Option<Uuid>,
    /// Class-id.
    pub class: Option<Uuid>,
}

impl ReleaseFacts {
    /// Facts with only a type and a publisher role.
    pub fn new(update_type: UpdateType, publisher_role: Role) -> Self {
        Self {
            update_type,
            categories: Vec::new(),
            cves: Vec::new(),
            severity: None,
            publisher_role,
            vendor: None,
            class: None,
        }
    }
}

/// A rule's conditions; every condition given must hold (lists mean "any of").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Update types.
    pub types: Option<Vec<UpdateType>>,
    /// At least one of these categories.
    pub categories: Option<Vec<Category>>,
    /// Severity at least this.
    pub severity_at_least: Option<Severity>,
    /// Whether the release names any CVE.
    pub has_cve: Option<bool>,
    /// At least one of these CVE ids.
    pub cves: Option<Vec<String>>,
    /// Publisher roles.
    pub publisher_roles: Option<Vec<Role>>,
    /// Vendor-ids.
    pub vendors: Option<Vec<Uuid>>,
    /// Class-ids.
    pub classes: Option<Vec<Uuid>>,
    /// Device groups.
    pub device_groups: Option<Vec<String>>,
}

fn any_of<T: PartialEq>(wanted: &Option<Vec<T>>, have: impl Fn(&T) -> bool) -> bool {
    wanted.as_ref().is_none_or(|w| w.iter().any(have))
}

impl Match {
    /// Whether the release (for devices in `group`) satisfies every condition.
    pub fn matches(&self, r: &ReleaseFacts, group: Option<&str>) -> bool {
        let names_a_cve = !r.cves.is_empty();
        any_of(&self.types, |t| *t == r.update_type)
            && any_of(&self.categories, |c| r.categories.contains(c))
            && self
                .severity_at_least
                .is_none_or(|min| r.severity.is_some_and(|s| s >= min))
            && self.has_cve.is_none_or(|wanted| wanted == names_a_cve)
            && any_of(&self.cves, |c| r.cves.contains(c))
            && any_of(&self.publisher_roles, |p| *p == r.publisher_role)
            && any_of(&self.vendors, |v| Some(*v) == r.vendor)
            && any_of(&self.classes, |c| Some(*c) == r.class)
            && any_of(&self.device_groups, |g| Some(g.as_str()) == group)
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Name, shown to operators and in the audit log.
    pub name: String,
    /// Conditions.
    pub when: Match,
    /// Action.
    pub action: Action,
    /// Maintenance window the installation waits for.
    pub window: Option<Arc<Window>>,
    /// Staged rollout.
    pub rollout: Option<Arc<Rollout>>,
    /// Line in the policy file.
    pub line: usize,
}

/// The outcome of a policy for one release and device group.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The rule that decided, or `"defaults"`.
    pub rule: String,
    /// Action.
    pub action: Action,
    /// Window, if any.
    pub window: Option<Arc<Window>>,
    /// Rollout, if any.
    pub rollout: Option<Arc<Rollout>>,
}

/// A parsed, checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Where it came from.
    pub source: String,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Action when no rule matches.
    pub default_action: Action,
    /// Window used when no rule matches.
    pub default_window: Option<Arc<Window>>,
    /// Rollout used when no rule matches.
    pub default_rollout: Option<Arc<Rollout>>,
    /// Named windows.
    pub windows: Vec<Arc<Window>>,
    /// Named rollouts.
    pub rollouts: Vec<Arc<Rollout>>,
}

impl Policy {
    /// Parses a policy; `source` names the file in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Policy, PolicyError> {
        parse::parse(text, source)
    }

    /// Reads and parses a policy file (at most 1 MiB).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| PolicyError::io(&name, &e))?;
        if meta.len() > 1 << 20 {
            return Err(PolicyError::at(
                &name,
                0,
                0,
                "policy file is larger than 1 MiB",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(&name, &e))?;
        Self::from_toml(&text, &name)
    }

    /// The decision for a release on devices of `group` (first matching rule wins).
    pub fn decide(&self, r: &ReleaseFacts, group: Option<&str>) -> Decision {
        match self.rules.iter().find(|rule| rule.when.matches(r, group)) {
            Some(rule) => Decision {
                rule: rule.name.clone(),
                action: rule.action,
                window: rule.window.clone(),
                rollout: rule.rollout.clone(),
            },
            None => Decision {
                rule: "defaults".into(),
                action: self.default_action,
                window: self.default_window.clone(),
                rollout: self.default_rollout.clone(),
            },
        }
    }
}

/// A policy that can be reloaded while in use: a failed reload keeps the last good policy.
#[derive(Debug, Clone)]
pub struct LivePolicy {
    current: Arc<Policy>,
}

impl LivePolicy {
    /// Starts from a good policy.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: Arc::new(policy),
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current.clone()
    }

    /// Reloads from `path`; on error the policy in force is unchanged and the error says why.
    pub fn reload(&mut self, path: &Path) -> Result<(), PolicyError> {
        let p = Policy::load(path)?;
        self.current = Arc::new(p);
        Ok(())
    }
}
