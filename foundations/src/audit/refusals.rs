//! Refusals that no authenticated caller answers for (no token, a forged or expired one, the
//! token of a removed client), audited at a bounded rate (issue 13 item 4: 20,000 anonymous
//! requests in 3.2 s added 20,002 records to the key repository's audit log).
//!
//! Refusals are grouped by *source* (the IPv4 address, or the /64 prefix of an IPv6
//! address: one host usually holds a whole /64) and actor, in windows of
//! [`RefusalLimits::window_secs`] that start at a group's first refusal:
//!
//! * the first refusal of a window is recorded as it is (who, what, which key, from where);
//! * the others are counted, and one summary record (`action: "refusals"`, the count in
//!   `count`, first and last time in `reason`) is recorded when the window ends, or earlier
//!   when the service flushes (an audit read, shutdown);
//! * at most [`RefusalLimits::max_sources`] groups are tracked at once; refusals from any
//!   further group share one overflow group (source `*`).
//!
//! So whatever the traffic, such refusals add at most `2 × (max_sources + 1)` records per
//! window, and every refusal is still counted in the chain. Decisions are pure: the time is
//! the event's, and the caller records what comes back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::AuditEvent;

/// Source of the overflow group.
pub const OVERFLOW_SOURCE: &str = "*";
/// `action` of a summary record.
pub const SUMMARY_ACTION: &str = "refusals";

/// How refusals are grouped (a `[audit]`-style table of the service's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefusalLimits {
    /// Length of a group's window, from its first refusal.
    pub window_secs: u64,
    /// Groups (source and actor) tracked at once; further ones share the overflow group.
    pub max_sources: usize,
}

impl Default for RefusalLimits {
    fn default() -> Self {
        RefusalLimits {
            window_secs: 60,
            max_sources: 64,
        }
    }
}

impl RefusalLimits {
    /// Both positive.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_secs == 0 || self.max_sources == 0 {
            return Err("audit refusal limits must be positive".into());
        }
        Ok(())
    }
}

/// The source a refusal is grouped under: an IPv4 address as is (also when mapped into
/// IPv6), an IPv6 address as its /64 prefix.
pub fn source_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    }
}

#[derive(Debug)]
struct Group {
    /// Time of the first refusal (the one recorded as it is).
    first: u64,
    /// Time of the last counted one.
    last: u64,
    /// Refusals after the first, not recorded one by one.
    counted: u64,
    /// `result` of the first, for the summary.
    result: String,
}

/// Groups refusals; see the module documentation.
#[derive(Debug)]
pub struct RefusalAggregator {
    limits: RefusalLimits,
    groups: Mutex<HashMap<(String, String), Group>>,
}

impl RefusalAggregator {
    pub fn new(limits: RefusalLimits) -> Self {
        RefusalAggregator {
            limits,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// A refusal from `source` (see [`source_of`]) described by `event` (its `time`, its
    /// `actor`): returns the records to append now — none (counted), the event itself (the
    /// first of a window), and possibly the summary of a window that ended before it.
    pub fn refused(&self, source: &str, event: AuditEvent) -> Vec<AuditEvent> {
        let now = event.time;
        let window = self.limits.window_secs;
        let mut out = Vec::new();
        let Ok(mut groups) = self.groups.lock() else {
            // Never lose the refusal itself.
            return vec![event];
        };
        let mut key = (source.to_string(), event.actor.clone());
        if !groups.contains_key(&key) && groups.len() >= self.limits.max_sources {
            // Make room from windows that ended; else share the overflow group.
            out.extend(take_ended(&mut groups, now, window));
            if groups.len() >= self.limits.max_sources {
                key = (OVERFLOW_SOURCE.to_string(), OVERFLOW_SOURCE.to_string());
            }
        }
        match groups.get_mut(&key) {
            Some(g) if now < g.first.saturating_add(window) => {
                g.counted += 1;
                g.last = g.last.max(now);
                return out;
            }
            Some(_) => {
                if let Some(g) = groups.remove(&key) {
                    out.extend(summary(&key, g, now));
                }
            }
            None => {}
        }
        groups.insert(
            key.clone(),
            Group {
                first: now,
                last: now,
                counted: 0,
                result: event.result.clone(),
            },
        );
        let mut event = event;
        if key.0 == OVERFLOW_SOURCE {
            // Say which group it opened: later ones from other sources are counted there.
            event.reason = Some(format!(
                "first refusal of the overflow group (more than {} sources at once)",
                self.limits.max_sources
            ));
        }
        out.push(event);
        out
    }

    /// Summaries of the windows that ended by `now` (call every second or so).
    pub fn due(&self, now: u64) -> Vec<AuditEvent> {
        match self.groups.lock() {
            Ok(mut g) => take_ended(&mut g, now, self.limits.window_secs),
            Err(_) => Vec::new(),
        }
    }

    /// Summaries of every open window, which are closed (before the log is read, at
    /// shutdown): the next refusal of each group is recorded as it is again.
    pub fn flush(&self, now: u64) -> Vec<AuditEvent> {
        match self.groups.lock() {
            Ok(mut g) => {
                let mut out: Vec<_> = g
                    .drain()
                    .filter_map(|(key, group)| summary(&key, group, now))
                    .collect();
                out.sort_by_key(|e| e.time);
                out
            }
            Err(_) => Vec::new(),
        }
    }

    /// Groups tracked now (at most `max_sources + 1`).
    pub fn groups(&self) -> usize {
        self.groups.lock().map(|g| g.len()).unwrap_or(0)
    }
}

fn take_ended(
    groups: &mut HashMap<(String, String), Group>,
    now: u64,
    window: u64,
) -> Vec<AuditEvent> {
    let ended: Vec<_> = groups
        .iter()
        .filter(|(_, g)| now >= g.first.saturating_add(window))
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Vec::new();
    for key in ended {
        if let Some(g) = groups.remove(&key) {
            out.extend(summary(&key, g, now));
        }
    }
    out
}

/// The summary record of a closed window; none when nothing was counted.
fn summary(key: &(String, String), g: Group, now: u64) -> Option<AuditEvent> {
    (g.counted > 0).then(|| AuditEvent {
        time: now,
        actor: key.1.clone(),
        peer: Some(key.0.clone()),
        action: SUMMARY_ACTION.into(),
        reason: Some(format!(
            "{} further refusals from {} to {} (unix time), recorded as this one count",
            g.counted, g.first, g.last
        )),
        result: g.result,
        count: Some(g.counted),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
