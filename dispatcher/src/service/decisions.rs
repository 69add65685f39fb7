//! Decisions on a release (DESIGN.md §2 flow 3): the policy's, and the operator's approvals
//! and rejections, serialised per release; an approval starts a rollout.

use super::*;

impl Dispatcher {
    /// Devices a release applies to: same vendor and class, not already at or past its
    /// sequence number.
    pub(super) fn targets(&self, r: &ReleaseRecord) -> Result<Vec<DeviceRecord>, Error> {
        Ok(self
            .store
            .devices()?
            .into_iter()
            .filter(|d| r.vendor_id.is_none_or(|v| v == d.vendor_id))
            .filter(|d| r.class_id.is_none_or(|c| c == d.class_id))
            .filter(|d| d.sequence < r.sequence)
            .collect())
    }

    /// Applies the policy: the target devices are split by the rule that decides for their
    /// group; `install` parts start their rollout at once (in their window), `hold` parts
    /// wait in the approval queue.
    pub(super) fn decide(
        &self,
        mut r: ReleaseRecord,
        now: DateTime<Utc>,
    ) -> Result<ReleaseRecord, Error> {
        let policy = self.policy();
        let facts = r.facts.to_policy(r.vendor_id, r.class_id);
        let mut parts: Vec<Part> = Vec::new();
        for d in self.targets(&r)? {
            let dec = policy.decide(&facts, d.group.as_deref());
            if let Some(p) = parts.iter_mut().find(|p| p.rule == dec.rule) {
                p.devices.push(d.id.clone());
                continue;
            }
            let state = match dec.action {
                policies::Action::Hold | policies::Action::Install => PartState::Pending,
                policies::Action::Notify => PartState::Notified,
                policies::Action::Log => PartState::Logged,
                policies::Action::Reject => PartState::Rejected {
                    decision: Decision {
                        by: format!("policy:{}", dec.rule),
                        reason: "rejected by policy".into(),
                        at: now,
                    },
                },
            };
            parts.push(Part {
                rule: dec.rule.clone(),
                action: dec.action,
                devices: vec![d.id.clone()],
                window: dec.window.as_ref().map(|w| w.name.clone()),
                rollout: dec.rollout.as_ref().map(|w| w.name.clone()),
                state,
            });
        }
        r.parts = parts;
        self.store.put_release(&r)?;
        for i in 0..r.parts.len() {
            let p = &r.parts[i];
            let actor = format!("policy:{}", p.rule);
            match p.action {
                policies::Action::Install => {
                    let started = self.start_part(
                        &r.id,
                        i,
                        &actor,
                        &DecisionRequest {
                            reason: "installs automatically by policy".into(),
                            ..DecisionRequest::default()
                        },
                    );
                    match started {
                        Ok(next) => r = next,
                        // Fail closed: a rollout the dispatcher cannot audit is not started.
                        // The part stays pending, in the approval queue, as if held.
                        Err(e @ Error::CannotAudit(_)) => {
                            tracing::error!(release = %r.id, rule = %p.rule, error = %e,
                                "policy install not started (cannot audit); held for an operator");
                        }
                        Err(e) => return Err(e),
                    }
                }
                policies::Action::Hold => {
                    self.audit_anyway(&actor, "release.hold", Some(&r.id), "pending", None);
                }
                policies::Action::Notify => {
                    tracing::warn!(release = %r.id, rule = %p.rule, "NOTICE: release for operators' attention");
                    self.audit_anyway(&actor, "release.notify", Some(&r.id), "ok", None);
                }
                policies::Action::Log => {
                    self.audit_anyway(&actor, "release.log", Some(&r.id), "ok", None);
                }
                policies::Action::Reject => {
                    self.audit_anyway(&actor, "release.reject", Some(&r.id), "rejected", None);
                }
            }
        }
        Ok(r)
    }

    /// Operator approval of every pending part of a release (or schedule with `at`).
    pub async fn approve(
        &self,
        rid: &str,
        who: &Operator,
        req: &DecisionRequest,
    ) -> Result<ReleaseRecord, Error> {
        // Nothing of an approval that cannot be audited is started (each part's record is
        // written before its rollout; this refuses the whole approval up front).
        self.decision_ready(&req.reason)?;
        // One decision at a time per release: a second approval, or a rejection racing
        // this approval, sees the outcome of this one (409), never a second rollout.
        let lock = self.release_lock(rid)?;
        let _decision = lock.lock().await;
        let r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let retrying = !r.pending() && req.retry_rejected;
        if !r.pending() && !retrying {
            return Err(Error::Conflict(format!(
                "release {rid} has nothing waiting for approval (to send it again to devices \
                 that rejected it, approve with retry_rejected)"
            )));
        }
        // The key may have been revoked since intake: ask again before sending anything.
        if !r.source.starts_with("upload:")
            && let Err(e) = self.fetch_key(&r.publisher_kid, &r.release_kid).await
        {
            self.audit_anyway(
                &who.name,
                "release.approve",
                Some(rid),
                "refused",
                Some(&e.to_string()),
            );
            return Err(Error::Conflict(format!("cannot approve: {e}")));
        }
        let mut r = r;
        let mut started = false;
        for i in 0..r.parts.len() {
            let p = &r.parts[i];
            let wanted = if retrying {
                matches!(p.state, PartState::Approved { .. })
                    && p.devices
                        .iter()
                        .any(|d| self.refused_by(d, rid).unwrap_or(false))
            } else {
                p.state == PartState::Pending
            };
            if wanted {
                r = self.start_part(rid, i, &who.name, req)?;
                started = true;
            }
        }
        if retrying && !started {
            return Err(Error::Conflict(format!(
                "no device rejected release {rid}: nothing to send again"
            )));
        }
        Ok(r)
    }

    /// Operator rejection of every pending part.
    pub async fn reject(
        &self,
        rid: &str,
        who: &Operator,
        reason: &str,
    ) -> Result<ReleaseRecord, Error> {
        self.decision_ready(reason)?;
        let lock = self.release_lock(rid)?;
        let _decision = lock.lock().await;
        let mut r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        if !r.pending() {
            return Err(Error::Conflict(format!(
                "release {rid} has nothing waiting for a decision"
            )));
        }
        let now = self.clock.now();
        for p in &mut r.parts {
            if p.state == PartState::Pending {
                p.state = PartState::Rejected {
                    decision: Decision {
                        by: who.name.clone(),
                        reason: reason.to_owned(),
                        at: now,
                    },
                };
            }
        }
        // Recorded before it takes effect: a rejection that cannot be audited is not made.
        self.audit(
            &who.name,
            "release.reject",
            Some(rid),
            "rejected",
            Some(reason),
        )?;
        self.store.put_release(&r)?;
        Ok(r)
    }

    /// Starts the rollout of one part (the approval is durable before this returns).
    pub(super) fn start_part(
        &self,
        rid: &str,
        i: usize,
        actor: &str,
        req: &DecisionRequest,
    ) -> Result<ReleaseRecord, Error> {
        let now = self.clock.now();
        let mut r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let policy = self.policy();
        let part = r
            .parts
            .get(i)
            .cloned()
            .ok_or_else(|| Error::NotFound("part".into()))?;
        let rollout_name = req.rollout.clone().or(part.rollout.clone());
        let rollout_def = match &rollout_name {
            Some(n) => Some(
                policy
                    .rollouts
                    .iter()
                    .find(|x| &x.name == n)
                    .cloned()
                    .ok_or_else(|| Error::BadRequest(format!("no rollout {n:?} in the policy")))?,
            ),
            None => None,
        };
        // Devices that refused this release (a security or applicability check) are left
        // out; a re-approval with `retry_rejected` sends to exactly those devices.
        let retry = matches!(part.state, PartState::Approved { .. });
        let mut devices = Vec::new();
        for d in &part.devices {
            let refused = self.refused_by(d, rid)?;
            if refused == retry {
                devices.push(d.clone());
            }
        }
        let plan = match &rollout_def {
            Some(def) => Plan::from_policy(def, devices.len()),
            None => Plan::all_at_once(devices.len()),
        };
        let window = if req.ignore_window {
            None
        } else {
            part.window.clone()
        };
        let mut start = req.at.unwrap_or(now);
        if let Some(w) = window
            .as_ref()
            .and_then(|n| policy.windows.iter().find(|x| &x.name == n))
            && !w.is_open(start)
        {
            start = w.next_open(start).unwrap_or(start);
        }
        // Everything that can refuse the approval comes first (the release still acceptable
        // under the trust in force, signed in memory), then its audit record, then the
        // effects: an approval that cannot be audited leaves no approved envelope, no
        // rollout and the part still pending (a rollout number may be skipped).
        let approved = self.sign_approval(rid)?;
        let id = format!("r{}", self.store.next_counter("rollout")?);
        let decision = Decision {
            by: actor.to_owned(),
            reason: req.reason.clone(),
            at: now,
        };
        let mut rec = RolloutRecord::new(
            Rollout::new(&id, rid, devices, plan, start, now),
            window,
            decision.clone(),
        );
        r.parts[i].state = PartState::Approved {
            decision,
            rollout: id.clone(),
        };
        let action = if start > now {
            "release.schedule"
        } else {
            "release.approve"
        };
        self.audit(
            actor,
            action,
            Some(rid),
            &format!("rollout:{id}"),
            Some(&req.reason),
        )?;
        let effects = self
            .store_approval(rid, &approved)
            .and_then(|()| self.store.put_rollout(&mut rec))
            .and_then(|()| self.store.put_release(&r));
        if let Err(e) = effects {
            self.audit_anyway(
                actor,
                action,
                Some(rid),
                "failed",
                Some(&format!("rollout:{id} not started: {e}")),
            );
            return Err(e);
        }
        self.rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .insert(rollout_number(&id), rec);
        self.wake.notify_one();
        Ok(r)
    }

    /// Whether `device`'s last report rejected release `rid`.
    pub(super) fn refused_by(&self, device: &str, rid: &str) -> Result<bool, Error> {
        Ok(self
            .store
            .device(device)?
            .and_then(|d| d.last_report)
            .is_some_and(|rep| rep.outcome == "rejected" && rep.release_id.as_deref() == Some(rid)))
    }
}
