//! Rollouts: the live set, operator control, outcomes, and the devices due for a push.

use super::*;

/// The number of rollout `rN`, its key among the live rollouts (listed in the order they
/// were made). An id of another form is no rollout's (`u64::MAX` is never a number given).
pub(super) fn rollout_number(id: &str) -> u64 {
    id.strip_prefix('r')
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

impl Dispatcher {
    /// Calls `f` with the live rollouts, in the order they were made, without copying them
    /// (they are locked meanwhile: keep `f` short, and take no other lock of the dispatcher
    /// in it).
    pub fn with_rollouts<T>(
        &self,
        f: impl FnOnce(std::collections::btree_map::Values<'_, u64, RolloutRecord>) -> T,
    ) -> T {
        let map = self.rollouts.lock().unwrap_or_else(|p| p.into_inner());
        f(map.values())
    }

    /// Calls `f` with one live rollout, without copying it (see [`Dispatcher::with_rollouts`]).
    pub fn with_rollout<T>(&self, id: &str, f: impl FnOnce(&RolloutRecord) -> T) -> Option<T> {
        let map = self.rollouts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&rollout_number(id)).map(f)
    }

    /// One rollout.
    pub fn rollout(&self, id: &str) -> Result<RolloutRecord, Error> {
        self.rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .get(&rollout_number(id))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("rollout {id}")))
    }

    /// Applies `f` to a rollout and persists the result before returning.
    pub fn update_rollout<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut RolloutRecord) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut map = self
            .rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?;
        let rec = map
            .get_mut(&rollout_number(id))
            .ok_or_else(|| Error::NotFound(format!("rollout {id}")))?;
        let out = f(rec);
        self.save_or_reload(rec)?;
        out
    }

    /// Saves a live rollout's changes; when they cannot be saved, the rollout goes back to
    /// what is stored (the changes never took effect) and the error is returned.
    pub(super) fn save_or_reload(&self, rec: &mut RolloutRecord) -> Result<(), Error> {
        let Err(e) = self.store.save_rollout(rec) else {
            return Ok(());
        };
        match self.store.rollout(&rec.rollout.id) {
            Ok(Some(stored)) => *rec = stored,
            other => tracing::error!(rollout = %rec.rollout.id, ?other, "cannot reload rollout"),
        }
        Err(e)
    }

    /// Pause, resume or abort, by an operator.
    pub fn control(
        &self,
        id: &str,
        who: &Operator,
        what: &str,
        reason: &str,
    ) -> Result<RolloutRecord, Error> {
        self.decision_ready(reason)?;
        let now = self.clock.now();
        // The change is made on a copy (a refusal such as resuming a completed rollout
        // changes nothing), recorded, and only then applied: a pause, resume or abort that
        // cannot be audited is not made. (To stop every push while the audit log cannot be
        // written, stop the dispatcher.)
        let rec = self.update_rollout(id, |r| {
            let res = match what {
                "pause" => r.rollout.pause(),
                "resume" => {
                    r.alert = None;
                    r.rollout.resume(now)
                }
                "abort" => r.rollout.abort(reason),
                _ => return Err(Error::BadRequest(format!("unknown action {what}"))),
            };
            res.map_err(Error::Conflict)?;
            self.audit(
                &who.name,
                &format!("rollout.{what}"),
                Some(id),
                "ok",
                Some(reason),
            )?;
            Ok(r.clone())
        })?;
        self.wake.notify_one();
        Ok(rec)
    }

    /// Records the outcome of one device in a rollout (from a push reply or an uplink
    /// report), raising an alert when the rollout halts.
    pub fn record_outcome(
        &self,
        rollout: &str,
        device: &str,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let halted = self.update_rollout(rollout, |r| {
            let was_halted = matches!(r.rollout.status, Status::Halted { .. });
            r.rollout.record(device, outcome.clone(), now);
            if let Status::Halted { reason } = &r.rollout.status
                && !was_halted
            {
                r.alert = Some(reason.clone());
                return Ok(Some(reason.clone()));
            }
            Ok(None)
        })?;
        match &outcome {
            Outcome::Installed => self.metrics.installs_ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Rejected { .. } => self
                .metrics
                .installs_rejected
                .fetch_add(1, Ordering::Relaxed),
            Outcome::Failed { .. } => self.metrics.installs_failed.fetch_add(1, Ordering::Relaxed),
            Outcome::Transient { .. } => self
                .metrics
                .installs_transient
                .fetch_add(1, Ordering::Relaxed),
        };
        if let Some(reason) = halted {
            tracing::error!(rollout, %reason, "ALERT: rollout halted at its failure threshold");
            self.metrics.alerts.fetch_add(1, Ordering::Relaxed);
            self.audit_anyway(
                "dispatcher",
                "rollout.halt",
                Some(rollout),
                "halted",
                Some(&reason),
            );
        }
        Ok(())
    }

    /// Devices to update now across all rollouts (marked in flight), with their rollout.
    pub fn due(&self, limit: usize) -> Vec<(String, String, String)> {
        let now = self.clock.now();
        let policy = self.policy();
        let mut out = Vec::new();
        let Ok(mut map) = self.rollouts.lock() else {
            return out;
        };
        for rec in map.values_mut() {
            if out.len() >= limit {
                break;
            }
            // Only a scheduled or running rollout has devices to send (the others are left
            // as they are, unread and unwritten).
            if !matches!(rec.rollout.status, Status::Running | Status::Scheduled)
                || !window_open(&policy, rec.window.as_deref(), now)
            {
                continue;
            }
            if let Err(e) = self.check_approved(&rec.rollout.release_id) {
                self.stop_unacceptable(rec, &e);
                continue;
            }
            let devs = rec.rollout.due(now, limit - out.len());
            if let Err(e) = self.save_or_reload(rec) {
                tracing::error!(error = %e, "cannot persist rollout; not sending");
                continue;
            }
            for d in devs {
                out.push((rec.rollout.id.clone(), rec.rollout.release_id.clone(), d));
            }
        }
        out
    }

    /// A rollout whose release is no longer acceptable (its signer revoked or expired, the
    /// trust store changed) is aborted: nothing more is sent, the operator is alerted.
    pub(super) fn stop_unacceptable(&self, rec: &mut RolloutRecord, e: &Error) {
        let reason = format!("release no longer acceptable: {e}");
        if rec.rollout.abort(&reason).is_err() {
            return;
        }
        rec.alert = Some(reason.clone());
        if let Err(err) = self.save_or_reload(rec) {
            tracing::error!(error = %err, "cannot persist the abort; not sending");
            return;
        }
        tracing::error!(rollout = %rec.rollout.id, release = %rec.rollout.release_id, error = %e, "rollout aborted");
        self.audit_anyway(
            "dispatcher",
            "rollout.abort",
            Some(&rec.rollout.id),
            "refused",
            Some(&reason),
        );
    }

    /// Devices in flight over all rollouts.
    pub fn in_flight(&self) -> usize {
        self.rollouts
            .lock()
            .map(|m| m.values().map(|r| r.rollout.progress().in_flight).sum())
            .unwrap_or(0)
    }

    /// Whether a push of `rollout` to `device` may still be completed now: the rollout is
    /// running, inside its maintenance window, and the device's send is in flight. Asked
    /// before the push client answers the device's Echo challenge on the request that
    /// starts the install (docs/transport.md, "Freshness of pushes"): an aborted, paused or
    /// halted rollout, or a closed window, is never completed.
    pub fn push_may_complete(&self, rollout: &str, device: &str) -> bool {
        let now = self.clock.now();
        let policy = self.policy();
        let release = {
            let Ok(map) = self.rollouts.lock() else {
                return false;
            };
            match map.get(&rollout_number(rollout)) {
                Some(r)
                    if r.rollout.may_complete(device)
                        && window_open(&policy, r.window.as_deref(), now) =>
                {
                    r.rollout.release_id.clone()
                }
                _ => return false,
            }
        };
        // And the release is still acceptable (a signer revoked meanwhile stops it here).
        self.check_approved(&release).is_ok()
    }

    /// Marks a rollout device's progress for inspection (test helper for the API).
    pub fn device_progress(&self, rollout: &str, device: &str) -> Option<DeviceProgress> {
        self.with_rollout(rollout, |r| r.rollout.device(device).cloned())
            .flatten()
    }
}
