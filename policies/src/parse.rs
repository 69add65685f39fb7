//! TOML → [`Policy`], strict: unknown keys, unknown names and invalid values are errors
//! that carry the file, line, column and reason.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use suit::{Category, Role, Severity, UpdateType};
use toml::Spanned;
use uuid::Uuid;

use crate::schedule::{Rollout, Size, Window, parse_duration};
use crate::{Action, Match, Policy, Rule};

/// A refused policy: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {reason}")]
pub struct PolicyError {
    /// File name as given.
    pub file: String,
    /// 1-based line (0 when the whole file is concerned).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

impl PolicyError {
    pub(crate) fn at(file: &str, line: usize, column: usize, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(file: &str, e: &std::io::Error) -> Self {
        Self::at(file, 0, 0, format!("cannot read: {e}"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: Option<Spanned<Defaults>>,
    #[serde(default)]
    window: Vec<Spanned<WindowSpec>>,
    #[serde(default)]
    rollout: Vec<Spanned<RolloutSpec>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    action: String,
    window: Option<String>,
    rollout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    name: String,
    schedule: String,
    duration: String,
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutSpec {
    name: String,
    batches: Vec<String>,
    pause: Option<String>,
    failure_threshold: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(rename = "match", default)]
    when: MatchSpec,
    action: String,
    window: Option<String>,
    rollout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    #[serde(rename = "type")]
    types: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    severity_at_least: Option<String>,
    has_cve: Option<bool>,
    cves: Option<Vec<String>>,
    publisher_role: Option<Vec<String>>,
    vendor: Option<Vec<String>>,
    class: Option<Vec<String>>,
    device_group: Option<Vec<String>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn pos(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn err(&self, offset: usize, reason: impl Into<String>) -> PolicyError {
        let (line, column) = self.pos(offset);
        PolicyError::at(self.file, line, column, reason)
    }
}

fn list<T>(
    values: &Option<Vec<String>>,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, String> {
    values
        .as_ref()
        .map(|v| {
            if v.is_empty() {
                return Err(format!(
                    "match.{what} is empty: remove it or name at least one"
                ));
            }
            v.iter()
                .map(|s| parse(s).ok_or_else(|| format!("match.{what}: {s:?} is not valid")))
                .collect()
        })
        .transpose()
}

fn action(s: &str) -> Result<Action, String> {
    match s {
        "install" => Ok(Action::Install),
        "hold" => Ok(Action::Hold),
        "notify" => Ok(Action::Notify),
        "log" => Ok(Action::Log),
        "reject" => Ok(Action::Reject),
        _ => Err(format!(
            "action {s:?} must be one of install, hold, notify, log, reject"
        )),
    }
}

pub(crate) fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let ctx = Ctx { file, text };
    let f: File = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ctx.err(offset, e.message().to_owned())
    })?;
    let named = Named {
        ctx: &ctx,
        windows: windows(&ctx, &f.window)?,
        rollouts: rollouts(&ctx, &f.rollout)?,
    };
    let (default_action, default_window, default_rollout) = match &f.defaults {
        Some(d) => {
            let at = d.span().start;
            let spec = d.get_ref();
            (
                action(&spec.action).map_err(|m| ctx.err(at, format!("defaults: {m}")))?,
                named.find(&named.windows, &spec.window, at, "defaults")?,
                named.find(&named.rollouts, &spec.rollout, at, "defaults")?,
            )
        }
        // Without [defaults], anything no rule names waits for a person.
        None => (Action::Hold, None, None),
    };
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(f.rule.len());
    for r in &f.rule {
        rules.push(rule(&named, r, &mut names)?);
    }
    Ok(Policy {
        source: file.to_owned(),
        rules,
        default_action,
        default_window,
        default_rollout,
        windows: named.windows,
        rollouts: named.rollouts,
    })
}

/// The `[[window]]` tables, in order; names are unique.
fn windows(ctx: &Ctx<'_>, specs: &[Spanned<WindowSpec>]) -> Result<Vec<Arc<Window>>, PolicyError> {
    let mut windows: Vec<Arc<Window>> = Vec::new();
    for w in specs {
        let at = w.span().start;
        let spec = w.get_ref();
        if windows.iter().any(|x| x.name == spec.name) {
            return Err(ctx.err(at, format!("window {:?} is defined twice", spec.name)));
        }
        let tz = match &spec.timezone {
            Some(z) => chrono_tz::Tz::from_str(z)
                .map_err(|_| ctx.err(at, format!("window {:?}: unknown time zone {z:?} (use an IANA name like Europe/Berlin)", spec.name)))?,
            None => chrono_tz::UTC,
        };
        let duration = parse_duration(&spec.duration)
            .map_err(|e| ctx.err(at, format!("window {:?}: duration {e}", spec.name)))?;
        let window = Window::new(&spec.name, &spec.schedule, duration, tz)
            .map_err(|e| ctx.err(at, format!("window {:?}: {e}", spec.name)))?;
        windows.push(Arc::new(window));
    }
    Ok(windows)
}

/// The `[[rollout]]` tables, in order; names are unique.
fn rollouts(
    ctx: &Ctx<'_>,
    specs: &[Spanned<RolloutSpec>],
) -> Result<Vec<Arc<Rollout>>, PolicyError> {
    let mut rollouts: Vec<Arc<Rollout>> = Vec::new();
    for r in specs {
        let at = r.span().start;
        let spec = r.get_ref();
        let e = |m: String| ctx.err(at, format!("rollout {:?}: {m}", spec.name));
        if rollouts.iter().any(|x| x.name == spec.name) {
            return Err(e("defined twice".into()));
        }
        if spec.batches.is_empty() {
            return Err(e("batches must list at least one size".into()));
        }
        let batches = spec
            .batches
            .iter()
            .map(|b| Size::parse(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        let pause = spec
            .pause
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|m| e(format!("pause {m}")))?
            .unwrap_or_default();
        let failure_threshold = Size::parse(&spec.failure_threshold)
            .map_err(|m| e(format!("failure_threshold {m}")))?;
        rollouts.push(Arc::new(Rollout {
            name: spec.name.clone(),
            batches,
            pause,
            failure_threshold,
        }));
    }
    Ok(rollouts)
}

/// The windows and rollouts the defaults and rules refer to by name.
struct Named<'a> {
    ctx: &'a Ctx<'a>,
    windows: Vec<Arc<Window>>,
    rollouts: Vec<Arc<Rollout>>,
}

/// What a rule or the defaults refer to by name.
trait ByName {
    /// What it is called in errors.
    const KIND: &'static str;
    fn name(&self) -> &str;
}

impl ByName for Window {
    const KIND: &'static str = "window";
    fn name(&self) -> &str {
        &self.name
    }
}

impl ByName for Rollout {
    const KIND: &'static str = "rollout";
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named<'_> {
    /// The item of `items` called `name`, when a name is given; an error naming `owner` when
    /// there is none of that name.
    fn find<T: ByName>(
        &self,
        items: &[Arc<T>],
        name: &Option<String>,
        at: usize,
        owner: &str,
    ) -> Result<Option<Arc<T>>, PolicyError> {
        name.as_ref()
            .map(|n| {
                items
                    .iter()
                    .find(|x| x.name() == n)
                    .cloned()
                    .ok_or_else(|| {
                        self.ctx
                            .err(at, format!("{owner}: no {} named {n:?}", T::KIND))
                    })
            })
            .transpose()
    }
}

/// One `[[rule]]`; its name must not be in `names` (it is added).
fn rule(
    named: &Named<'_>,
    r: &Spanned<RuleSpec>,
    names: &mut HashSet<String>,
) -> Result<Rule, PolicyError> {
    let at = r.span().start;
    let spec = r.get_ref();
    let owner = format!("rule {:?}", spec.name);
    let e = |m: String| named.ctx.err(at, format!("{owner}: {m}"));
    if !names.insert(spec.name.clone()) {
        return Err(e("a rule with this name already exists".into()));
    }
    let when = match_of(&spec.when).map_err(e)?;
    let action = action(&spec.action).map_err(e)?;
    let window = named.find(&named.windows, &spec.window, at, &owner)?;
    let rollout = named.find(&named.rollouts, &spec.rollout, at, &owner)?;
    if window.is_some() && !matches!(action, Action::Install | Action::Hold) {
        return Err(e(format!(
            "a window applies to install or hold, not to {:?}",
            spec.action
        )));
    }
    Ok(Rule {
        name: spec.name.clone(),
        when,
        action,
        window,
        rollout,
        line: named.ctx.pos(at).0,
    })
}

/// A rule's `match` table; the error names the field.
fn match_of(m: &MatchSpec) -> Result<Match, String> {
    Ok(Match {
        types: list(&m.types, "type", UpdateType::parse)?,
        categories: list(&m.categories, "categories", Category::parse)?,
        severity_at_least: m
            .severity_at_least
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    format!(
                        "match.severity_at_least {s:?} must be none, low, medium, high or critical"
                    )
                })
            })
            .transpose()?,
        has_cve: m.has_cve,
        cves: list(&m.cves, "cves", |s| {
            suit::ics::is_cve_id(s).then(|| s.to_owned())
        })?,
        publisher_roles: list(&m.publisher_role, "publisher_role", |s| {
            Role::parse(s)
                .filter(|r| matches!(r, Role::Manufacturer | Role::ThirdParty | Role::Internal))
        })?,
        vendors: list(&m.vendor, "vendor", |s| Uuid::parse_str(s).ok())?,
        classes: list(&m.class, "class", |s| Uuid::parse_str(s).ok())?,
        device_groups: list(&m.device_group, "device_group", |s| {
            (!s.is_empty()).then(|| s.to_owned())
        })?,
    })
}
