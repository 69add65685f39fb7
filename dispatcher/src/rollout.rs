//! The rollout engine: which devices to update now, in which batch, and when to stop.
//! Sans-I/O: the dispatcher's transport asks [`Rollout::due`] for work, sends, and feeds
//! each device's report back with [`Rollout::record`]; time is always a parameter. The
//! dispatcher persists a rollout after every change: its header and the devices that changed
//! (crash safety: a restarted dispatcher continues from the stored value; a device already
//! `Installed` is never sent the release again). One device event costs the same at 100 or
//! 100,000 devices.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
///
/// Every device event costs the same whatever the rollout's size: counts, the unsettled
/// devices of each batch, the next waiting device and the devices waiting for a retry are
/// kept up to date as devices change ([`Rollout::reindex`] rebuilds them after loading), and
/// the devices changed since the last save are listed ([`Rollout::take_changed`]) so that
/// only they are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    /// Identifier.
    pub id: String,
    /// The release (hex manifest digest).
    pub release_id: String,
    /// Device ids in rollout order (stored apart from the rollout's header).
    #[serde(default, skip_serializing)]
    order: Vec<String>,
    /// Progress per device (stored one record per device).
    #[serde(default, skip_serializing)]
    devices: BTreeMap<String, DeviceProgress>,
    /// The plan.
    pub plan: Plan,
    /// Index of the current batch.
    pub batch: usize,
    /// Earliest start of the current batch (pause, or the scheduled start).
    pub not_before: DateTime<Utc>,
    /// Lifecycle.
    pub status: Status,
    #[serde(skip)]
    index: Index,
}

/// What the rollout keeps up to date as devices change (never stored).
#[derive(Debug, Clone, Default)]
struct Index {
    /// Position of each device in `order`.
    pos: HashMap<String, usize>,
    /// Where each batch ends in `order` (cumulative sizes).
    ends: Vec<usize>,
    installed: usize,
    rejected: usize,
    failed: usize,
    in_flight: usize,
    /// Unsettled devices per batch.
    unsettled: Vec<usize>,
    /// No device before this position of `order` is waiting.
    next_waiting: usize,
    /// Positions of the devices waiting for a retry.
    retrying: BTreeSet<usize>,
    /// Devices changed since the last [`Rollout::take_changed`].
    changed: BTreeSet<String>,
}

impl PartialEq for Rollout {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.release_id == o.release_id
            && self.order == o.order
            && self.devices == o.devices
            && self.plan == o.plan
            && self.batch == o.batch
            && self.not_before == o.not_before
            && self.status == o.status
    }
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
            index: Index::default(),
        };
        r.reindex();
        r.check_completed();
        r
    }

    /// Puts back the devices of a rollout loaded without them (its header), then rebuilds
    /// the index. A device of `order` with no progress is waiting.
    pub fn restore(&mut self, order: Vec<String>, devices: BTreeMap<String, DeviceProgress>) {
        self.order = order;
        self.devices = devices;
        for d in &self.order {
            self.devices
                .entry(d.clone())
                .or_insert(DeviceProgress::Waiting);
        }
        self.reindex();
    }

    /// Whether the rollout was loaded without its devices (a header alone).
    pub fn is_header(&self) -> bool {
        self.order.is_empty() && self.devices.is_empty()
    }

    /// Rebuilds what the rollout keeps up to date (after loading): one pass over the
    /// devices.
    pub fn reindex(&mut self) {
        let mut ix = Index::default();
        let mut end = 0;
        for &n in &self.plan.batches {
            end += n;
            ix.ends.push(end.min(self.order.len()));
        }
        let mut start = 0;
        for &e in &ix.ends {
            ix.unsettled.push(e.saturating_sub(start));
            start = e;
        }
        for (i, d) in self.order.iter().enumerate() {
            ix.pos.insert(d.clone(), i);
            if let Some(p) = self.devices.get(d) {
                ix.account(i, p, 1);
            }
        }
        self.index = ix;
    }

    /// The devices changed since the last call (to be saved), forgetting them.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.index.changed)
    }

    /// Device ids in rollout order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Every device's progress.
    pub fn devices(&self) -> &BTreeMap<String, DeviceProgress> {
        &self.devices
    }

    /// A device's progress, if it is in this rollout.
    pub fn device(&self, id: &str) -> Option<&DeviceProgress> {
        self.devices.get(id)
    }

    /// Sets device `i` (of `order`) to `p`, keeping the index up to date.
    fn set(&mut self, i: usize, p: DeviceProgress) {
        let id = &self.order[i];
        if let Some(old) = self.devices.insert(id.clone(), p.clone()) {
            self.index.account(i, &old, -1);
        }
        self.index.account(i, &p, 1);
        self.index.changed.insert(id.clone());
    }

    fn batch_range(&self, b: usize) -> std::ops::Range<usize> {
        let start = if b == 0 {
            0
        } else {
            self.index
                .ends
                .get(b - 1)
                .copied()
                .unwrap_or(self.order.len())
        };
        let end = self.index.ends.get(b).copied().unwrap_or(start);
        start..end.max(start)
    }

    /// Devices to send the release to now (marked in flight), given `in_flight_limit` on
    /// concurrent sends across the rollout: in rollout order, waiting devices and retries
    /// that are due, of the current and earlier batches (retries may outlive their batch).
    pub fn due(&mut self, now: DateTime<Utc>, in_flight_limit: usize) -> Vec<String> {
        if self.status == Status::Scheduled && now >= self.not_before {
            self.status = Status::Running;
        }
        if self.status != Status::Running || now < self.not_before {
            return Vec::new();
        }
        let end = self.batch_range(self.batch).end;
        let retries: Vec<(usize, u32)> = self
            .index
            .retrying
            .iter()
            .filter(|&&i| i < end)
            .filter_map(|&i| match self.devices.get(&self.order[i]) {
                Some(DeviceProgress::Retry { attempts, after }) if *after <= now => {
                    Some((i, *attempts))
                }
                _ => None,
            })
            .collect();
        let mut retries = retries.into_iter().peekable();
        let mut w = self.index.next_waiting;
        let mut out = Vec::new();
        while self.index.in_flight < in_flight_limit {
            while w < end && self.devices.get(&self.order[w]) != Some(&DeviceProgress::Waiting) {
                w += 1;
            }
            let waiting = (w < end).then_some(w);
            let (i, attempts) = match (waiting, retries.peek().copied()) {
                (Some(wi), Some((ri, a))) if ri < wi => {
                    retries.next();
                    (ri, a + 1)
                }
                (Some(wi), _) => (wi, 1),
                (None, Some((ri, a))) => {
                    retries.next();
                    (ri, a + 1)
                }
                (None, None) => break,
            };
            self.set(
                i,
                DeviceProgress::InFlight {
                    attempts,
                    since: now,
                },
            );
            out.push(self.order[i].clone());
        }
        self.index.next_waiting = w;
        out
    }

    /// Records a device's report.
    pub fn record(&mut self, device: &str, outcome: Outcome, now: DateTime<Utc>) {
        let (Some(&i), Some(p)) = (self.index.pos.get(device), self.devices.get(device)) else {
            return;
        };
        // A settled device never changes again: no device is updated twice.
        if p.settled() {
            return;
        }
        let next = match outcome {
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
        self.set(i, next);
        self.after_record(now);
    }

    fn after_record(&mut self, now: DateTime<Utc>) {
        let ix = &self.index;
        let bad = ix.failed + ix.rejected;
        let settled = ix.installed + bad;
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
        let batch_done = ix.unsettled.get(self.batch).is_none_or(|&n| n == 0);
        if batch_done && self.batch + 1 < self.plan.batches.len() {
            self.batch += 1;
            self.not_before = now + chrono::Duration::from_std(self.plan.pause).unwrap_or_default();
        }
        self.check_completed();
    }

    fn check_completed(&mut self) {
        let ix = &self.index;
        if ix.installed + ix.rejected + ix.failed == self.devices.len()
            && matches!(self.status, Status::Running | Status::Scheduled)
        {
            self.status = Status::Completed;
        }
    }

    /// After a dispatcher restart: sends whose outcome was never recorded are due again.
    /// (A device that did install reports `rollback` for the same sequence number; the
    /// distribution layer maps that to `Installed` when the device's inventory shows it.)
    pub fn recover_in_flight(&mut self, now: DateTime<Utc>) {
        for i in 0..self.order.len() {
            if let Some(DeviceProgress::InFlight { attempts, .. }) =
                self.devices.get(&self.order[i])
            {
                let attempts = *attempts;
                self.set(
                    i,
                    DeviceProgress::Retry {
                        attempts,
                        after: now,
                    },
                );
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
        let ix = &self.index;
        Progress {
            total: self.order.len(),
            installed: ix.installed,
            rejected: ix.rejected,
            failed: ix.failed,
            in_flight: ix.in_flight,
            batch: (self.batch + 1).min(self.plan.batches.len()),
            batches: self.plan.batches.len(),
        }
    }
}

impl Index {
    /// Counts device `i` in state `p` (`n` = 1) or stops counting it (`n` = -1).
    fn account(&mut self, i: usize, p: &DeviceProgress, n: isize) {
        let add = |c: &mut usize| *c = c.saturating_add_signed(n);
        match p {
            DeviceProgress::Waiting => {
                if n > 0 {
                    self.next_waiting = self.next_waiting.min(i);
                }
            }
            DeviceProgress::Retry { .. } => {
                if n > 0 {
                    self.retrying.insert(i);
                } else {
                    self.retrying.remove(&i);
                }
            }
            DeviceProgress::InFlight { .. } => add(&mut self.in_flight),
            DeviceProgress::Installed => add(&mut self.installed),
            DeviceProgress::Rejected { .. } => add(&mut self.rejected),
            DeviceProgress::Failed { .. } => add(&mut self.failed),
        }
        if p.settled() {
            let b = self.ends.partition_point(|&e| e <= i);
            if let Some(u) = self.unsettled.get_mut(b) {
                *u = u.saturating_add_signed(-n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
