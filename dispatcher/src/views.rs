//! Read-only views the web console draws beside the stored records: a release with the state
//! of its signatures, the policy in force (for the approval form), and the install timeline
//! of a rollout (for the chart of installs over time). Pure functions over the records, so
//! they are tested without a store or a clock.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::rollout::DeviceProgress;
use crate::store::{DeviceReport, ReleaseRecord, RolloutRecord};

/// A release as the API shows it: the record and whether the dispatcher's approval signature
/// exists yet. Every stored release passed intake verification (publisher signature by
/// `publisher_kid`, allowed for its role and vendor), so that part needs no flag.
#[derive(Debug, Serialize)]
pub struct ReleaseView {
    /// The record.
    #[serde(flatten)]
    pub record: ReleaseRecord,
    /// Whether the approved envelope (publisher + approval signatures) has been made.
    pub approval_signature: bool,
}

/// One point of a rollout timeline: counts reached at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// When the dispatcher received the report that moved a count.
    pub at: DateTime<Utc>,
    /// Devices installed so far.
    pub installed: usize,
    /// Devices rejected or failed so far.
    pub failed: usize,
}

/// Cumulative installs of one rollout over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Rollout id.
    pub rollout: String,
    /// Release id.
    pub release_id: String,
    /// When it was decided (the chart's origin).
    pub decided_at: DateTime<Utc>,
    /// Devices in the rollout.
    pub total: usize,
    /// One point per device that settled with a timed report, oldest first.
    pub points: Vec<TimelinePoint>,
}

/// The timeline of `r`: for each device the rollout has settled, the first report for the
/// rollout's release received at or after the decision (`reports` gives a device's reports,
/// oldest first). Reports without a time (stored before times were kept) are not drawn;
/// neither are settlements without any report (e.g. attempts exhausted).
pub fn timeline<E>(
    r: &RolloutRecord,
    reports: impl Fn(&str) -> Result<Vec<DeviceReport>, E>,
) -> Result<Timeline, E> {
    let rid = &r.rollout.release_id;
    let since = r.decision.at;
    let mut events: Vec<(DateTime<Utc>, bool)> = Vec::new();
    for (device, progress) in r.rollout.devices() {
        let installed = match progress {
            DeviceProgress::Installed => true,
            DeviceProgress::Rejected { .. } | DeviceProgress::Failed { .. } => false,
            _ => continue,
        };
        let wanted = |rep: &DeviceReport| {
            if installed {
                rep.outcome == "installed"
            } else {
                rep.outcome != "installed"
            }
        };
        if let Some(at) = reports(device)?
            .iter()
            .filter(|rep| rep.release_id.as_deref() == Some(rid.as_str()) && wanted(rep))
            .filter_map(|rep| rep.received_at)
            .find(|at| *at >= since)
        {
            events.push((at, installed));
        }
    }
    events.sort();
    let (mut installed, mut failed) = (0, 0);
    let points = events
        .into_iter()
        .map(|(at, ok)| {
            if ok {
                installed += 1;
            } else {
                failed += 1;
            }
            TimelinePoint {
                at,
                installed,
                failed,
            }
        })
        .collect();
    Ok(Timeline {
        rollout: r.rollout.id.clone(),
        release_id: rid.clone(),
        decided_at: since,
        total: r.rollout.order().len(),
        points,
    })
}

/// A rule of the policy in force, as operators see it.
#[derive(Debug, Serialize)]
pub struct RuleView {
    /// Name.
    pub name: String,
    /// Action.
    pub action: policies::Action,
    /// Window name.
    pub window: Option<String>,
    /// Rollout name.
    pub rollout: Option<String>,
}

/// A maintenance window and whether it is open now.
#[derive(Debug, Serialize)]
pub struct WindowView {
    /// Name.
    pub name: String,
    /// Cron schedule as written.
    pub schedule: String,
    /// Length of each opening.
    pub duration_secs: u64,
    /// IANA time zone.
    pub timezone: String,
    /// Open at the dispatcher's now.
    pub open_now: bool,
    /// Next opening after now.
    pub next_open: Option<DateTime<Utc>>,
}

/// A staged rollout definition.
#[derive(Debug, Serialize)]
pub struct RolloutDefView {
    /// Name.
    pub name: String,
    /// Cumulative batch sizes as written (`"1"`, `"25%"`).
    pub batches: Vec<String>,
    /// Pause between batches.
    pub pause_secs: u64,
    /// Failure threshold as written.
    pub failure_threshold: String,
}

/// The policy in force: what the approval form offers.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// Rules in order.
    pub rules: Vec<RuleView>,
    /// What applies when no rule matches.
    pub default: RuleView,
    /// Windows.
    pub windows: Vec<WindowView>,
    /// Rollouts.
    pub rollouts: Vec<RolloutDefView>,
}

fn size(s: policies::Size) -> String {
    match s {
        policies::Size::Count(n) => n.to_string(),
        policies::Size::Percent(p) => format!("{p}%"),
    }
}

/// The policy in force at `now` (the file's path is not shown).
pub fn policy(p: &policies::Policy, now: DateTime<Utc>) -> PolicyView {
    let name = |w: &Option<std::sync::Arc<policies::Window>>| w.as_ref().map(|w| w.name.clone());
    let rname = |r: &Option<std::sync::Arc<policies::Rollout>>| r.as_ref().map(|r| r.name.clone());
    PolicyView {
        rules: p
            .rules
            .iter()
            .map(|r| RuleView {
                name: r.name.clone(),
                action: r.action,
                window: name(&r.window),
                rollout: rname(&r.rollout),
            })
            .collect(),
        default: RuleView {
            name: "defaults".into(),
            action: p.default_action,
            window: name(&p.default_window),
            rollout: rname(&p.default_rollout),
        },
        windows: p
            .windows
            .iter()
            .map(|w| WindowView {
                name: w.name.clone(),
                schedule: w.schedule.clone(),
                duration_secs: w.duration.as_secs(),
                timezone: w.timezone.name().to_owned(),
                open_now: w.is_open(now),
                next_open: w.next_open(now),
            })
            .collect(),
        rollouts: p
            .rollouts
            .iter()
            .map(|r| RolloutDefView {
                name: r.name.clone(),
                batches: r.batches.iter().map(|b| size(*b)).collect(),
                pause_secs: r.pause.as_secs(),
                failure_threshold: size(r.failure_threshold),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone as _;

    use super::*;
    use crate::rollout::{Outcome, Plan, Rollout};
    use crate::store::Decision;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn rep(rid: &str, outcome: &str, at: Option<i64>) -> DeviceReport {
        DeviceReport {
            release_id: Some(rid.into()),
            outcome: outcome.into(),
            check: None,
            message: String::new(),
            version_before: "1.0.0".into(),
            version_after: "2.0.0".into(),
            received_at: at.map(t),
        }
    }

    #[test]
    fn timeline_counts_each_settled_device_once_at_its_report_time() {
        let devices: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let mut ro = Rollout::new("r1", "rel", devices, Plan::all_at_once(5), t(0), t(0));
        let _ = ro.due(t(1), 10);
        ro.record("a", Outcome::Installed, t(30));
        ro.record("b", Outcome::Installed, t(20));
        ro.record(
            "c",
            Outcome::Rejected {
                check: "rollback".into(),
            },
            t(25),
        );
        // "d" is still in flight, "e" installed but its report has no time.
        ro.record("e", Outcome::Installed, t(40));
        let r = RolloutRecord::new(
            ro,
            None,
            Decision {
                by: "alice".into(),
                reason: "ok".into(),
                at: t(0),
            },
        );
        let tl = timeline(&r, |d| {
            Ok::<_, ()>(match d {
                // An install of the same release before this rollout was decided does not
                // count, nor does one of another release; the first matching report does.
                "a" => vec![
                    rep("rel", "installed", Some(-50)),
                    rep("other", "installed", Some(5)),
                    rep("rel", "installed", Some(30)),
                    rep("rel", "installed", Some(35)),
                ],
                "b" => vec![rep("rel", "installed", Some(20))],
                "c" => vec![rep("rel", "rejected", Some(25))],
                "d" => vec![rep("rel", "installed", Some(26))],
                "e" => vec![rep("rel", "installed", None)],
                _ => vec![],
            })
        })
        .unwrap();
        assert_eq!(tl.total, 5);
        assert_eq!(
            tl.points,
            vec![
                TimelinePoint {
                    at: t(20),
                    installed: 1,
                    failed: 0
                },
                TimelinePoint {
                    at: t(25),
                    installed: 1,
                    failed: 1
                },
                TimelinePoint {
                    at: t(30),
                    installed: 2,
                    failed: 1
                },
            ]
        );
    }

    #[test]
    fn policy_view_names_windows_and_rollouts_as_written() {
        let p = policies::Policy::from_toml(
            include_str!("../../policies/examples/plant.toml"),
            "plant.toml",
        )
        .unwrap();
        let v = policy(&p, t(0));
        let careful = v.rollouts.iter().find(|r| r.name == "careful").unwrap();
        assert_eq!(careful.batches, ["1", "5%", "25%", "100%"]);
        assert_eq!(careful.pause_secs, 1800);
        assert_eq!(careful.failure_threshold, "1");
        let fw = v
            .rules
            .iter()
            .find(|r| r.name == "firmware needs approval")
            .unwrap();
        assert_eq!(fw.window.as_deref(), Some("weekend-night"));
        assert_eq!(fw.rollout.as_deref(), Some("careful"));
        let w = v
            .windows
            .iter()
            .find(|w| w.name == "weekend-night")
            .unwrap();
        assert_eq!(w.timezone, "Europe/Berlin");
        assert!(w.next_open.is_some_and(|n| n > t(0)));
    }
}
