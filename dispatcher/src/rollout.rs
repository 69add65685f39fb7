//! The rollout engine: which devices to update now, in which batch, and when to stop.
//! Sans-I/O: the dispatcher's transport asks [`Rollout::due`] for work, sends, and feeds
//! each device's report back with [`Rollout::record`]; time is always a parameter. The whole
//! value is serializable so the dispatcher persists it after every change (crash safety: a
//! restarted dispatcher continues from the stored value; a device already `Installed` is
//! never sent the release again).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where one device stands in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum DeviceProgress {
    /// Not started (its batch has not come yet, or it is due).
    Waiting,
    /// A transient failure (unreachable, timeout, power loss); sent again after `after`.
    Retry {
        /// Attempts so far.
        attempts: u32,
        /// Not before.
        after: DateTime<Utc>,
    },
    /// Sent; waiting for the device's report.
    InFlight {
        /// Attempts so far (retries of transient failures count).
        attempts: u32,
        /// When the last attempt started.
        since: DateTime<Utc>,
    },
    /// The device reported a confirmed install.
    Installed,
    /// The device refused the release for a security or applicability reason
    /// (`suit::Error::code`). Never retried without operator action.
    Rejected {
        /// The failed check.
        check: String,
    },
    /// The install failed (revert after self-test, or transient failures exhausted).
    Failed {
        /// Why.
        reason: String,
    },
}

impl DeviceProgress {
    /// Installed, rejected or failed: never sent the release again.
    pub fn settled(&self) -> bool {
        matches!(
            self,
            DeviceProgress::Installed
                | DeviceProgress::Rejected { .. }
                | DeviceProgress::Failed { .. }
        )
    }
}

/// A device's report, as the rollout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Installed and confirmed.
    Installed,
    /// Refused by a check; `check` is the stable code.
    Rejected {
        /// The failed check.
        check: String,
    },
    /// Failed after the switch (reverted) or for another non-transient reason.
    Failed {
        /// Why.
        reason: String,
    },
    /// Unreachable, timed out, power loss: retried up to the attempt limit.
    Transient {
        /// Why.
        reason: String,
    },
}

/// The rollout's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for its start time (approval scheduled into a window).
    Scheduled,
    /// Sending batches.
    Running,
    /// Paused by an operator.
    Paused,
    /// Stopped by the failure threshold; an alert was raised. Resume to continue.
    Halted {
        /// Why.
        reason: String,
    },
    /// Stopped by an operator; final.
    Aborted {
        /// Why.
        reason: String,
    },
    /// Every device settled.
    Completed,
}

/// Rollout parameters (from the policy's rollout, or defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Devices per batch, in order (they add up to the number of devices).
    pub batches: Vec<usize>,
    /// Wait between the end of one batch and the start of the next.
    pub pause: Duration,
    /// Halt when this many devices failed or were rejected...
    pub max_failures: Option<usize>,
    /// ...or when this percentage of the settled devices did.
    pub max_failure_percent: Option<u8>,
    /// Attempts per device for transient failures.
    pub max_attempts: u32,
    /// Wait before retrying after a transient failure.
    pub retry_backoff: Duration,
}

impl Plan {
    /// From a policy rollout for `total` devices.
    pub fn from_policy(r: &policies::Rollout, total: usize) -> Plan {
        let (max_failures, max_failure_percent) = match r.failure_threshold {
            policies::Size::Count(n) => (Some(n), None),
            policies::Size::Percent(p) => (None, Some(p)),
        };
        Plan {
            batches: r.plan(total),
            pause: r.pause,
            max_failures,
            max_failure_percent,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(5),
        }
    }

    /// Everything at once, halting at the first failure.
    pub fn all_at_once(total: usize) -> Plan {
        Plan {
            batches: if total == 0 { vec![] } else { vec![total] },
            pause: Duration::ZERO,
            max_failures: Some(1),
            max_failure_percent: None,
            max_attempts: 3,
            retry_backoff: Duration::from_secs(5),
        }
    }
}

/// Counts for progress bars and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Devices in the rollout.
    pub total: usize,
    /// Confirmed installs.
    pub installed: usize,
    /// Rejected by a device check.
    pub rejected: usize,
    /// Failed.
    pub failed: usize,
    /// Sent, no report yet.
    pub in_flight: usize,
    /// Current batch (1-based) and number of batches.
    pub batch: usize,
    /// Number of batches.
    pub batches: usize,
}

/// One rollout of one release to a set of devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Identifier.
    pub id: String,
    /// The release (hex manifest digest).
    pub release_id: String,
    /// Device ids in rollout order.
    pub order: Vec<String>,
    /// Progress per device.
    pub devices: BTreeMap<String, DeviceProgress>,
    /// The plan.
    pub plan: Plan,
    /// Index of the current batch.
    pub batch: usize,
    /// Earliest start of the current batch (pause, or the scheduled start).
    pub not_before: DateTime<Utc>,
    /// Lifecycle.
    pub status: Status,
}

impl Rollout {
    /// A rollout starting at `start` (Scheduled until then).
    pub fn new(
        id: &str,
        release_id: &str,
        devices: Vec<String>,
        plan: Plan,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Rollout {
        let map = devices
            .iter()
            .map(|d| (d.clone(), DeviceProgress::Waiting))
            .collect();
        let mut r = Rollout {
            id: id.to_owned(),
            release_id: release_id.to_owned(),
            order: devices,
            devices: map,
            plan,
            batch: 0,
            not_before: start,
            status: if start > now {
                Status::Scheduled
            } else {
                Status::Running
            },
        };
        r.check_completed();
        r
    }

    fn batch_range(&self, b: usize) -> std::ops::Range<usize> {
        let start: usize = self.plan.batches[..b.min(self.plan.batches.len())]
            .iter()
            .sum();
        let len = self.plan.batches.get(b).copied().unwrap_or(0);
        start..(start + len).min(self.order.len())
    }

    /// Devices to send the release to now (marked in flight), given `in_flight_limit` on
    /// concurrent sends across the rollout.
    pub fn due(&mut self, now: DateTime<Utc>, in_flight_limit: usize) -> Vec<String> {
        if self.status == Status::Scheduled && now >= self.not_before {
            self.status = Status::Running;
        }
        if self.status != Status::Running || now < self.not_before {
            return Vec::new();
        }
        let mut in_flight = self
            .devices
            .values()
            .filter(|p| matches!(p, DeviceProgress::InFlight { .. }))
            .count();
        let mut out = Vec::new();
        // Devices of the current and earlier batches (retries may outlive their batch).
        for i in 0..self.batch_range(self.batch).end {
            if in_flight >= in_flight_limit {
                break;
            }
            let id = &self.order[i];
            let next = match self.devices.get(id) {
                Some(DeviceProgress::Waiting) => 1,
                Some(DeviceProgress::Retry { attempts, after }) if *after <= now => attempts + 1,
                _ => continue,
            };
            self.devices.insert(
                id.clone(),
                DeviceProgress::InFlight {
                    attempts: next,
                    since: now,
                },
            );
            in_flight += 1;
            out.push(id.clone());
        }
        out
    }

    /// Records a device's report.
    pub fn record(&mut self, device: &str, outcome: Outcome, now: DateTime<Utc>) {
        let Some(p) = self.devices.get_mut(device) else {
            return;
        };
        // A settled device never changes again: no device is updated twice.
        if p.settled() {
            return;
        }
        *p = match outcome {
            Outcome::Installed => DeviceProgress::Installed,
            Outcome::Rejected { check } => DeviceProgress::Rejected { check },
            Outcome::Failed { reason } => DeviceProgress::Failed { reason },
            Outcome::Transient { reason } => match p {
                DeviceProgress::InFlight { attempts, .. } if *attempts < self.plan.max_attempts => {
                    DeviceProgress::Retry {
                        attempts: *attempts,
                        after: now
                            + chrono::Duration::from_std(self.plan.retry_backoff)
                                .unwrap_or_default(),
                    }
                }
                _ => DeviceProgress::Failed {
                    reason: format!(
                        "gave up after {} attempts: {reason}",
                        self.plan.max_attempts
                    ),
                },
            },
        };
        self.after_record(now);
    }

    fn after_record(&mut self, now: DateTime<Utc>) {
        let progress = self.progress();
        let bad = progress.failed + progress.rejected;
        let settled = progress.installed + bad;
        let over_count = self.plan.max_failures.is_some_and(|n| bad >= n);
        let over_share = self
            .plan
            .max_failure_percent
            .is_some_and(|p| settled > 0 && bad * 100 >= settled * p as usize);
        if (over_count || over_share) && matches!(self.status, Status::Running | Status::Scheduled)
        {
            self.status = Status::Halted {
                reason: format!(
                    "failure threshold reached: {bad} of {settled} settled devices failed or rejected"
                ),
            };
            return;
        }
        // Batch complete: schedule the next one after the pause.
        let batch_done = self
            .batch_range(self.batch)
            .all(|i| self.devices[&self.order[i]].settled());
        if batch_done && self.batch + 1 < self.plan.batches.len() {
            self.batch += 1;
            self.not_before = now + chrono::Duration::from_std(self.plan.pause).unwrap_or_default();
        }
        self.check_completed();
    }

    fn check_completed(&mut self) {
        if self.devices.values().all(DeviceProgress::settled)
            && matches!(self.status, Status::Running | Status::Scheduled)
        {
            self.status = Status::Completed;
        }
    }

    /// After a dispatcher restart: sends whose outcome was never recorded are due again.
    /// (A device that did install reports `rollback` for the same sequence number; the
    /// distribution layer maps that to `Installed` when the device's inventory shows it.)
    pub fn recover_in_flight(&mut self, now: DateTime<Utc>) {
        for p in self.devices.values_mut() {
            if let DeviceProgress::InFlight { attempts, .. } = p {
                *p = DeviceProgress::Retry {
                    attempts: *attempts,
                    after: now,
                };
            }
        }
    }

    /// Whether a send to `device` may still be completed: the rollout is running and the
    /// device's send is in flight (not settled, not waiting for a retry).
    pub fn may_complete(&self, device: &str) -> bool {
        self.status == Status::Running
            && matches!(
                self.devices.get(device),
                Some(DeviceProgress::InFlight { .. })
            )
    }

    /// Operator pause.
    pub fn pause(&mut self) -> Result<(), String> {
        match self.status {
            Status::Running | Status::Scheduled => {
                self.status = Status::Paused;
                Ok(())
            }
            ref s => Err(format!("cannot pause a rollout that is {s:?}")),
        }
    }

    /// Operator resume (also continues a halted rollout, after the operator looked at it).
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        match self.status {
            Status::Paused | Status::Halted { .. } => {
                // A rollout paused before its scheduled start (or during a batch pause)
                // keeps its time: resuming is not starting early.
                self.status = if self.not_before > now {
                    Status::Scheduled
                } else {
                    Status::Running
                };
                self.check_completed();
                Ok(())
            }
            ref s => Err(format!("cannot resume a rollout that is {s:?}")),
        }
    }

    /// Operator abort (final).
    pub fn abort(&mut self, reason: &str) -> Result<(), String> {
        match self.status {
            Status::Completed | Status::Aborted { .. } => {
                Err(format!("cannot abort a rollout that is {:?}", self.status))
            }
            _ => {
                self.status = Status::Aborted {
                    reason: reason.to_owned(),
                };
                Ok(())
            }
        }
    }

    /// Counts.
    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            total: self.order.len(),
            installed: 0,
            rejected: 0,
            failed: 0,
            in_flight: 0,
            batch: (self.batch + 1).min(self.plan.batches.len()),
            batches: self.plan.batches.len(),
        };
        for d in self.devices.values() {
            match d {
                DeviceProgress::Installed => p.installed += 1,
                DeviceProgress::Rejected { .. } => p.rejected += 1,
                DeviceProgress::Failed { .. } => p.failed += 1,
                DeviceProgress::InFlight { .. } => p.in_flight += 1,
                DeviceProgress::Waiting | DeviceProgress::Retry { .. } => {}
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn devices(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("dev-{i:02}")).collect()
    }

    fn plan(batches: Vec<usize>, pause: u64, max_failures: Option<usize>) -> Plan {
        Plan {
            batches,
            pause: Duration::from_secs(pause),
            max_failures,
            max_failure_percent: None,
            max_attempts: 2,
            retry_backoff: Duration::from_secs(5),
        }
    }

    #[test]
    fn batches_in_order_with_pauses() {
        let mut r = Rollout::new(
            "r1",
            "rel",
            devices(6),
            plan(vec![1, 2, 3], 60, None),
            t(0),
            t(0),
        );
        assert_eq!(r.due(t(0), 100), vec!["dev-00"]);
        assert!(
            r.due(t(1), 100).is_empty(),
            "nothing until the canary reports"
        );
        r.record("dev-00", Outcome::Installed, t(10));
        assert!(r.due(t(30), 100).is_empty(), "pause between batches");
        assert_eq!(r.due(t(70), 100), vec!["dev-01", "dev-02"]);
        r.record("dev-01", Outcome::Installed, t(80));
        r.record("dev-02", Outcome::Installed, t(80));
        // The concurrency bound applies.
        assert_eq!(r.due(t(140), 2).len(), 2);
        assert_eq!(r.due(t(140), 3).len(), 1);
        for d in ["dev-03", "dev-04", "dev-05"] {
            r.record(d, Outcome::Installed, t(150));
        }
        assert_eq!(r.status, Status::Completed);
        assert_eq!(r.progress().installed, 6);
    }

    #[test]
    fn failure_threshold_halts_until_resumed() {
        let mut r = Rollout::new(
            "r1",
            "rel",
            devices(4),
            plan(vec![2, 2], 0, Some(1)),
            t(0),
            t(0),
        );
        let sent = r.due(t(0), 10);
        r.record(
            &sent[0],
            Outcome::Failed {
                reason: "self-test-failed".into(),
            },
            t(1),
        );
        assert!(matches!(r.status, Status::Halted { .. }));
        assert!(r.due(t(2), 10).is_empty());
        // The other in-flight device may still report.
        r.record(&sent[1], Outcome::Installed, t(3));
        r.resume(t(4)).unwrap();
        // The threshold counts across the rollout: the next failure halts again.
        let next = r.due(t(4), 10);
        assert_eq!(next.len(), 2);
        r.record(
            &next[0],
            Outcome::Rejected {
                check: "wrong-class".into(),
            },
            t(5),
        );
        assert!(matches!(r.status, Status::Halted { .. }));
    }

    #[test]
    fn transient_failures_are_retried_then_given_up() {
        let mut r = Rollout::new("r1", "rel", devices(1), plan(vec![1], 0, None), t(0), t(0));
        assert_eq!(r.due(t(0), 10).len(), 1);
        r.record(
            "dev-00",
            Outcome::Transient {
                reason: "timeout".into(),
            },
            t(1),
        );
        assert!(r.due(t(2), 10).is_empty(), "backoff");
        assert_eq!(r.due(t(7), 10), vec!["dev-00"]);
        r.record(
            "dev-00",
            Outcome::Transient {
                reason: "timeout".into(),
            },
            t(8),
        );
        assert!(matches!(r.devices["dev-00"], DeviceProgress::Failed { .. }));
        assert_eq!(r.status, Status::Completed);
    }

    #[test]
    fn settled_devices_are_never_sent_again_even_after_a_restart() {
        let mut r = Rollout::new("r1", "rel", devices(3), plan(vec![3], 0, None), t(0), t(0));
        let sent = r.due(t(0), 10);
        r.record(&sent[0], Outcome::Installed, t(1));
        r.record(
            &sent[0],
            Outcome::Failed {
                reason: "late duplicate".into(),
            },
            t(2),
        );
        assert_eq!(r.devices[&sent[0]], DeviceProgress::Installed);
        // Crash: persist, restore, recover the sends that never reported.
        let stored = serde_json::to_string(&r).unwrap();
        let mut back: Rollout = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, r);
        back.recover_in_flight(t(10));
        let again = back.due(t(10), 10);
        assert_eq!(again, vec![sent[1].clone(), sent[2].clone()]);
        assert!(!again.contains(&sent[0]));
    }

    #[test]
    fn scheduled_start_pause_and_abort() {
        let mut r = Rollout::new(
            "r1",
            "rel",
            devices(2),
            plan(vec![2], 0, None),
            t(100),
            t(0),
        );
        assert_eq!(r.status, Status::Scheduled);
        assert!(r.due(t(50), 10).is_empty());
        r.pause().unwrap();
        assert!(r.due(t(150), 10).is_empty());
        r.resume(t(160)).unwrap();
        assert_eq!(r.due(t(160), 10).len(), 2);
        r.abort("operator: wrong release").unwrap();
        assert!(r.resume(t(170)).is_err() && r.abort("again").is_err());
        assert!(r.due(t(180), 10).is_empty());
    }

    #[test]
    fn plan_from_policy() {
        let p = policies::Policy::from_toml(
            "[[rollout]]\nname = \"c\"\nbatches = [\"1\", \"50%\"]\npause = \"10m\"\nfailure_threshold = \"20%\"\n",
            "t.toml",
        )
        .unwrap();
        let plan = Plan::from_policy(&p.rollouts[0], 10);
        assert_eq!(plan.batches, vec![1, 4, 5]);
        assert_eq!(plan.max_failure_percent, Some(20));
        assert_eq!(plan.pause, Duration::from_secs(600));
    }

    #[test]
    fn resuming_a_paused_scheduled_rollout_keeps_its_start() {
        let now = t(0);
        let start = t(5 * 3600);
        let mut r = Rollout::new("r", "rel", devices(3), Plan::all_at_once(3), start, now);
        assert_eq!(r.status, Status::Scheduled);
        r.pause().unwrap();
        r.resume(now).unwrap();
        assert_eq!(r.status, Status::Scheduled);
        assert!(
            r.due(now, 10).is_empty(),
            "resumed rollout started before its time"
        );
        assert_eq!(r.due(start, 10).len(), 3);
    }
}
