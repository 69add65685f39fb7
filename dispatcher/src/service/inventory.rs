//! The device inventory: enrolment, OSCORE contexts, check-ins and reports.

use super::*;

impl Dispatcher {
    /// Stores a device's install report and updates its inventory. A report of a device
    /// that is not enrolled (removed meanwhile) is refused and nothing is stored.
    pub fn device_report(&self, device: &str, rep: &DeviceReport) -> Result<(), Error> {
        // The time is the dispatcher's, whatever the device sent (the console's install
        // timeline is drawn from it).
        let rep = &DeviceReport {
            received_at: Some(self.clock.now()),
            ..rep.clone()
        };
        let sequence = match (&rep.release_id, rep.outcome.as_str()) {
            (Some(rid), "installed") => self.artifacts(rid).ok().map(|a| a.sequence),
            _ => None,
        };
        // Only the newest `reports_per_device` are kept; the record counts every one.
        let keep = self.cfg.limits.reports_per_device;
        self.store
            .add_report(device, rep, keep, |d| {
                if rep.outcome == "installed" {
                    if let Some(seq) = sequence {
                        if seq >= d.sequence {
                            d.version = rep.version_after.clone();
                            d.release_id = rep.release_id.clone();
                        }
                        d.sequence = d.sequence.max(seq);
                    } else {
                        d.version = rep.version_after.clone();
                    }
                }
                d.last_report = Some(rep.clone());
            })?
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("device {device}")))
    }

    /// The rollout in which `device` waits for `rid`, if any.
    pub fn rollout_for(&self, device: &str, rid: &str) -> Option<String> {
        self.rollouts.lock().ok().and_then(|m| {
            m.values()
                .find(|r| {
                    r.rollout.release_id == rid
                        && !matches!(r.rollout.status, Status::Aborted { .. })
                        && r.rollout.device(device).is_some()
                })
                .map(|r| r.rollout.id.clone())
        })
    }

    /// Enrols a device: assigns its uplink id, writes the dispatcher's side of both OSCORE
    /// contexts, records it, and returns the provisioning bundle (which holds secrets).
    pub fn enrol(
        &self,
        who: &Operator,
        req: &crate::enrol::EnrolRequest,
    ) -> Result<fleet_proto::bundle::Bundle, Error> {
        self.audit_ready()?;
        let out = crate::enrol::enrol(self, &who.name, req)?;
        self.metrics
            .devices_enrolled
            .fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// The dispatcher's side of a device's uplink context. Opened once per process (a second
    /// open is refused: two live contexts from one set of parameters would reuse nonces),
    /// with a lost replay window: the device's first check-in after a start goes through the
    /// Echo exchange (RFC 8613 Appendix B.1.2), so a check-in recorded before a crash cannot
    /// be replayed.
    pub fn uplink_context(&self, d: &DeviceRecord) -> Result<oscore::SecurityContext, Error> {
        self.device_context(&d.id, "uplink.json")
    }

    /// The dispatcher's side of a device's push context (as [`Dispatcher::uplink_context`]).
    pub fn push_context(&self, device: &str) -> Result<oscore::SecurityContext, Error> {
        self.device_context(device, "push.json")
    }

    pub(super) fn device_context(
        &self,
        device: &str,
        file: &str,
    ) -> Result<oscore::SecurityContext, Error> {
        let path = self.store.device_dir(device).join(file);
        oscore::ctxfile::open_in(&self.contexts_lock, &path)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Sets the running uplink server's context set (once, at start).
    pub fn set_uplink(&self, set: oscore::transport::ContextSet) {
        let _ = self.uplink.set(set);
    }

    /// Adds a newly enrolled device to the running uplink server.
    pub fn register_uplink(&self, d: &DeviceRecord) -> Result<(), Error> {
        if let Some(set) = self.uplink.get() {
            let ctx = self.uplink_context(d)?;
            set.add(ctx).map_err(|e| Error::Other(e.to_string()))?;
        }
        Ok(())
    }

    /// Keys the approval signature is made with and the devices need.
    pub fn approver_entry(&self) -> suit::trust::KeyEntry {
        suit::trust::KeyEntry::new(
            &self.cfg.approval_kid,
            suit::Role::Approver,
            &self.approver.public_key().to_pem(),
        )
    }
}
