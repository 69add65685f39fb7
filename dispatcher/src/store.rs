//! Persistent state in sled: releases and the decisions on them, devices, rollouts, device
//! reports. Every value is JSON; every change that must survive a crash is flushed before
//! the caller acknowledges it (approvals, enrolments, rollout progress). Release files
//! (envelope, approved envelope, encrypted blob, release key) live beside the database under
//! `DATA/releases/ID/`, written atomically before the record that names them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::Transactional as _;
use uuid::Uuid;

use crate::Error;
use crate::rollout::Rollout;

/// The policy-relevant facts of a release, stored (the `policies` type is not serialised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// T1/T2/T3.
    pub update_type: String,
    /// Categories.
    pub categories: Vec<String>,
    /// CVEs.
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Option<String>,
    /// Publisher role.
    pub publisher_role: String,
}

impl Facts {
    /// From the intake facts.
    pub fn from_policy(f: &policies::ReleaseFacts) -> Facts {
        Facts {
            update_type: f.update_type.name().into(),
            categories: f.categories.iter().map(|c| c.name().into()).collect(),
            cves: f.cves.clone(),
            severity: f.severity.map(|s| s.name().into()),
            publisher_role: f.publisher_role.name().into(),
        }
    }

    /// Back to the policy's type.
    pub fn to_policy(&self, vendor: Option<Uuid>, class: Option<Uuid>) -> policies::ReleaseFacts {
        policies::ReleaseFacts {
            update_type: suit::UpdateType::parse(&self.update_type).unwrap_or(suit::UpdateType::T2),
            categories: self
                .categories
                .iter()
                .filter_map(|c| suit::Category::parse(c))
                .collect(),
            cves: self.cves.clone(),
            severity: self.severity.as_deref().and_then(suit::Severity::parse),
            publisher_role: suit::Role::parse(&self.publisher_role)
                .unwrap_or(suit::Role::Manufacturer),
            vendor,
            class,
        }
    }
}

/// Who decided what, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Operator name, or `policy:<rule>`.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a part of a release (the devices one policy rule decided for) stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PartState {
    /// Held for an operator.
    Pending,
    /// Approved (by policy or operator); its rollout.
    Approved {
        /// The decision.
        decision: Decision,
        /// Rollout id.
        rollout: String,
    },
    /// Rejected (by policy or operator).
    Rejected {
        /// The decision.
        decision: Decision,
    },
    /// Operators were notified; nothing is installed.
    Notified,
    /// Recorded only.
    Logged,
}

/// The devices one rule decided for, and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The rule (or `defaults`).
    pub rule: String,
    /// The rule's action.
    pub action: policies::Action,
    /// Device ids.
    pub devices: Vec<String>,
    /// Maintenance window name.
    pub window: Option<String>,
    /// Rollout name.
    pub rollout: Option<String>,
    /// State.
    pub state: PartState,
}

/// A release the dispatcher accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Release id (hex SHA-256 of the manifest bstr).
    pub id: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Update server URL, or `upload:<operator>`.
    pub source: String,
    /// kid of the publisher key that signed it.
    pub publisher_kid: String,
    /// kid of the release key (key repository).
    pub release_kid: String,
    /// Vendor-id.
    pub vendor_id: Option<Uuid>,
    /// Class-id.
    pub class_id: Option<Uuid>,
    /// Sequence number.
    pub sequence: u64,
    /// Version text, if the manifest has one.
    pub version: Option<String>,
    /// Facts.
    pub facts: Facts,
    /// Plaintext size.
    pub image_size: u64,
    /// Envelope bytes.
    pub envelope_size: u64,
    /// Encrypted blob bytes.
    pub blob_size: u64,
    /// Parts by policy rule.
    pub parts: Vec<Part>,
}

impl ReleaseRecord {
    /// Whether a part waits for an operator.
    pub fn pending(&self) -> bool {
        self.parts.iter().any(|p| p.state == PartState::Pending)
    }
}

/// An install report from a device (pushed or reported over the uplink).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Release id.
    pub release_id: Option<String>,
    /// `installed`, `rejected`, `reverted`.
    pub outcome: String,
    /// The failed check.
    #[serde(default)]
    pub check: Option<String>,
    /// Detail.
    #[serde(default)]
    pub message: String,
    /// Version before.
    #[serde(default)]
    pub version_before: String,
    /// Version after.
    #[serde(default)]
    pub version_after: String,
    /// When the dispatcher stored the report (its clock; set by the dispatcher, never taken
    /// from the device). Absent in reports stored before this field existed.
    #[serde(default)]
    pub received_at: Option<DateTime<Utc>>,
}

/// What a device has reported over its life: every report is counted here, while only the
/// newest `limits.reports_per_device` are kept ([`Store::add_report`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCounts {
    /// Reports received and stored (pushed or over the uplink).
    pub received: u64,
    /// Of those, outcome `installed`.
    pub installed: u64,
    /// Outcome `rejected`.
    pub rejected: u64,
    /// Outcome `reverted` (or any other).
    pub reverted: u64,
    /// Older reports removed to keep the newest `limits.reports_per_device`.
    pub dropped: u64,
}

impl ReportCounts {
    fn count(&mut self, outcome: &str) {
        self.received += 1;
        match outcome {
            "installed" => self.installed += 1,
            "rejected" => self.rejected += 1,
            _ => self.reverted += 1,
        }
    }
}

/// A stored report with its sequence number (the paging cursor of
/// `GET /v1/devices/{id}/reports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberedReport {
    /// Increases with every report the dispatcher stores (over all devices).
    pub seq: u64,
    /// The report.
    #[serde(flatten)]
    pub report: DeviceReport,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Name (unique).
    pub id: String,
    /// Device-id (UUID).
    pub device_id: Uuid,
    /// Vendor-id.
    pub vendor_id: Uuid,
    /// Class-id.
    pub class_id: Uuid,
    /// Group (policies match on it).
    pub group: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Its uplink OSCORE sender id (hex): how check-ins find it.
    pub uplink_kid: String,
    /// Address of its CoAP server (from enrolment or its last check-in).
    pub address: Option<SocketAddr>,
    /// Version it reported.
    pub version: String,
    /// Sequence number it runs.
    pub sequence: u64,
    /// Release it runs, if known.
    pub release_id: Option<String>,
    /// Enrolled at.
    pub enrolled_at: DateTime<Utc>,
    /// Last check-in.
    pub last_seen: Option<DateTime<Utc>>,
    /// Last install report.
    pub last_report: Option<DeviceReport>,
    /// Counts of every report received (absent in records stored before they existed).
    #[serde(default)]
    pub reports: ReportCounts,
}

/// A rollout with what the dispatcher needs beside the engine state.
///
/// Stored in three parts: the header (this record without its devices, rewritten when it
/// changes), the device order (written once) and one progress record per device (written
/// when that device changes); see [`Store::save_rollout`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Engine state.
    pub rollout: Rollout,
    /// Maintenance window (policy name) that bounds when devices are updated.
    pub window: Option<String>,
    /// Who started it.
    pub decision: Decision,
    /// Alert raised when it halted.
    #[serde(default)]
    pub alert: Option<String>,
    /// The header as last stored (a save that would write it again writes nothing).
    #[serde(skip)]
    stored_header: Option<Vec<u8>>,
}

impl RolloutRecord {
    /// A new rollout's record (not stored yet).
    pub fn new(rollout: Rollout, window: Option<String>, decision: Decision) -> Self {
        RolloutRecord {
            rollout,
            window,
            decision,
            alert: None,
            stored_header: None,
        }
    }
}

/// Key of a device's progress in a rollout: `ROLLOUT/DEVICE` (rollout ids and device names
/// hold no `/`).
fn progress_key(rollout: &str, device: &str) -> String {
    format!("{rollout}/{device}")
}

/// Keys of a device's reports: `NAME/` and a 20-digit number (device names never hold a
/// `/`, so one device's prefix never covers another's).
fn report_prefix(device: &str) -> String {
    format!("{device}/")
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    releases: sled::Tree,
    devices: sled::Tree,
    kids: sled::Tree,
    rollouts: sled::Tree,
    rollout_orders: sled::Tree,
    rollout_devices: sled::Tree,
    reports: sled::Tree,
    meta: sled::Tree,
    root: PathBuf,
    /// Serialises read-modify-write of device records (check-ins and reports race).
    device_updates: std::sync::Arc<std::sync::Mutex<()>>,
}

fn get<T: DeserializeOwned>(t: &sled::Tree, key: &str) -> Result<Option<T>, Error> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("{key}: {e}"))),
    }
}

fn all<T: DeserializeOwned>(t: &sled::Tree) -> Result<Vec<T>, Error> {
    t.iter()
        .values()
        .map(|v| {
            let v = v?;
            serde_json::from_slice(&v).map_err(|e| Error::Corrupt(e.to_string()))
        })
        .collect()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Other(e.to_string()))
}

impl Store {
    /// Opens (creates) the database under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let db = sled::Config::new()
            .path(data_dir.join("db"))
            .flush_every_ms(Some(200))
            .open()?;
        Ok(Store {
            releases: db.open_tree("releases")?,
            devices: db.open_tree("devices")?,
            kids: db.open_tree("device-kids")?,
            rollouts: db.open_tree("rollouts")?,
            rollout_orders: db.open_tree("rollout-orders")?,
            rollout_devices: db.open_tree("rollout-devices")?,
            reports: db.open_tree("reports")?,
            meta: db.open_tree("meta")?,
            db,
            root: data_dir.to_owned(),
            device_updates: Default::default(),
        })
    }

    /// The sled database (the audit log shares it).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    /// `DATA/releases/ID`.
    pub fn release_dir(&self, id: &str) -> PathBuf {
        self.root.join("releases").join(id)
    }

    /// `DATA/devices/ID`.
    pub fn device_dir(&self, id: &str) -> PathBuf {
        self.root.join("devices").join(id)
    }

    /// A release.
    pub fn release(&self, id: &str) -> Result<Option<ReleaseRecord>, Error> {
        get(&self.releases, id)
    }

    /// All releases, newest first.
    pub fn releases(&self) -> Result<Vec<ReleaseRecord>, Error> {
        let mut v: Vec<ReleaseRecord> = all(&self.releases)?;
        v.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        Ok(v)
    }

    /// Writes a release record (flushed).
    pub fn put_release(&self, r: &ReleaseRecord) -> Result<(), Error> {
        self.releases.insert(r.id.as_bytes(), enc(r)?)?;
        self.flush()
    }

    /// A device.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>, Error> {
        get(&self.devices, id)
    }

    /// The device whose uplink kid is `kid`.
    pub fn device_by_kid(&self, kid: &[u8]) -> Result<Option<DeviceRecord>, Error> {
        match self.kids.get(kid)? {
            None => Ok(None),
            Some(id) => self.device(&String::from_utf8_lossy(&id)),
        }
    }

    /// All devices, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, Error> {
        all(&self.devices)
    }

    /// Writes a device record (and its kid index) in one transaction; `durable` flushes.
    pub fn put_device(&self, d: &DeviceRecord, durable: bool) -> Result<(), Error> {
        let kid = hex::decode(&d.uplink_kid).map_err(|_| Error::Corrupt("uplink kid".into()))?;
        let value = enc(d)?;
        (&self.devices, &self.kids)
            .transaction(|(devs, kids)| {
                devs.insert(d.id.as_bytes(), value.clone())?;
                kids.insert(kid.clone(), d.id.as_bytes())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::Db(format!("{e:?}")))?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// Read-modify-write of one device record, serialised with every other update.
    pub fn update_device(
        &self,
        id: &str,
        f: impl FnOnce(&mut DeviceRecord),
    ) -> Result<Option<DeviceRecord>, Error> {
        self.with_device(id, |d| {
            f(d);
            Ok(())
        })
    }

    /// The one read-modify-write of a device record: under the device lock, reads it,
    /// applies `f` (which may write other trees first) and writes it back. `None` when the
    /// device is not enrolled (`f` is not called).
    fn with_device(
        &self,
        id: &str,
        f: impl FnOnce(&mut DeviceRecord) -> Result<(), Error>,
    ) -> Result<Option<DeviceRecord>, Error> {
        let _guard = self
            .device_updates
            .lock()
            .map_err(|_| Error::Other("device lock poisoned".into()))?;
        let Some(mut d) = self.device(id)? else {
            return Ok(None);
        };
        f(&mut d)?;
        self.put_device(&d, false)?;
        Ok(Some(d))
    }

    /// A rollout, with its devices.
    pub fn rollout(&self, id: &str) -> Result<Option<RolloutRecord>, Error> {
        match self.rollouts.get(id)? {
            None => Ok(None),
            Some(v) => self.assemble(id, &v).map(Some),
        }
    }

    /// All rollouts, with their devices.
    pub fn rollouts(&self) -> Result<Vec<RolloutRecord>, Error> {
        self.rollouts
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                self.assemble(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// A rollout from its header, order and device records. A record of the earlier
    /// format (devices inside the header) is rewritten in this one.
    fn assemble(&self, id: &str, header: &[u8]) -> Result<RolloutRecord, Error> {
        let mut rec: RolloutRecord =
            serde_json::from_slice(header).map_err(|e| Error::Corrupt(format!("{id}: {e}")))?;
        if !rec.rollout.is_header() {
            rec.rollout.reindex();
            self.put_rollout(&mut rec)?;
            return Ok(rec);
        }
        let order: Vec<String> = get(&self.rollout_orders, id)?.unwrap_or_default();
        let mut devices = std::collections::BTreeMap::new();
        for kv in self
            .rollout_devices
            .scan_prefix(progress_key(id, "").as_bytes())
        {
            let (k, v) = kv?;
            let k = String::from_utf8_lossy(&k);
            let device = k.split_once('/').map(|(_, d)| d).unwrap_or_default();
            let p = serde_json::from_slice(&v).map_err(|e| Error::Corrupt(format!("{k}: {e}")))?;
            devices.insert(device.to_owned(), p);
        }
        rec.rollout.restore(order, devices);
        rec.stored_header = Some(enc(&rec)?);
        Ok(rec)
    }

    /// Writes a whole rollout: header, order and every device, in one transaction, flushed.
    pub fn put_rollout(&self, r: &mut RolloutRecord) -> Result<(), Error> {
        let order = enc(&r.rollout.order())?;
        let all: Vec<String> = r.rollout.devices().keys().cloned().collect();
        r.rollout.take_changed();
        let header = enc(&*r)?;
        self.write_rollout(r, header, Some(order), &all)
    }

    /// Saves a rollout's changes: its header if it changed and the devices changed since
    /// the last save, in one transaction, flushed (rollout progress must survive a crash).
    /// Costs the same whatever the rollout's size. On an error nothing is written and the
    /// caller must reload the rollout ([`Store::rollout`]): the changes are forgotten.
    pub fn save_rollout(&self, r: &mut RolloutRecord) -> Result<(), Error> {
        let changed: Vec<String> = r.rollout.take_changed().into_iter().collect();
        let header = enc(&*r)?;
        if changed.is_empty() && r.stored_header.as_ref() == Some(&header) {
            return Ok(());
        }
        self.write_rollout(r, header, None, &changed)
    }

    /// Writes `header` (of `r`), its `order` if given, and the progress of `devices`.
    fn write_rollout(
        &self,
        r: &mut RolloutRecord,
        header: Vec<u8>,
        order: Option<Vec<u8>>,
        devices: &[String],
    ) -> Result<(), Error> {
        let records = devices
            .iter()
            .filter_map(|d| r.rollout.device(d).map(|p| (d, p)))
            .map(|(d, p)| Ok((progress_key(&r.rollout.id, d), enc(p)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let id = r.rollout.id.as_bytes();
        (&self.rollouts, &self.rollout_orders, &self.rollout_devices)
            .transaction(|(h, o, d)| {
                h.insert(id, header.as_slice())?;
                if let Some(order) = &order {
                    o.insert(id, order.as_slice())?;
                }
                for (k, v) in &records {
                    d.insert(k.as_bytes(), v.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| Error::Db(format!("{e:?}")))?;
        self.flush()?;
        r.stored_header = Some(header);
        Ok(())
    }

    /// Appends a device report and keeps only the newest `keep` of the device (dropping
    /// older ones), and applies `f` to the device record, which counts the report: one
    /// read-modify-write, serialised with every other update of device records. `None`
    /// when the device is not enrolled (nothing is stored).
    pub fn add_report(
        &self,
        device: &str,
        r: &DeviceReport,
        keep: usize,
        f: impl FnOnce(&mut DeviceRecord),
    ) -> Result<Option<DeviceRecord>, Error> {
        self.with_device(device, |d| {
            let n = self.db.generate_id()?;
            let prefix = report_prefix(device);
            let key = format!("{prefix}{n:020}");
            self.reports.insert(key.as_bytes(), enc(r)?)?;
            // Bounded retention: the oldest beyond `keep` go (their counts stay in the record).
            let stored = self.reports.scan_prefix(prefix.as_bytes()).keys().count();
            let mut dropped = 0u64;
            if stored > keep.max(1) {
                let mut batch = sled::Batch::default();
                for k in self
                    .reports
                    .scan_prefix(prefix.as_bytes())
                    .keys()
                    .take(stored - keep.max(1))
                {
                    batch.remove(k?);
                    dropped += 1;
                }
                self.reports.apply_batch(batch)?;
            }
            d.reports.count(&r.outcome);
            d.reports.dropped += dropped;
            f(d);
            Ok(())
        })
    }

    /// Reports of a device, oldest first (at most the retention bound).
    pub fn reports(&self, device: &str) -> Result<Vec<DeviceReport>, Error> {
        self.reports
            .scan_prefix(report_prefix(device).as_bytes())
            .values()
            .map(|v| {
                let v = v?;
                serde_json::from_slice(&v).map_err(|e| Error::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// A page of a device's reports, newest first: those numbered below `before` (all when
    /// `None`), at most `limit`, and no more than `max_bytes` of JSON (at least one report,
    /// whatever its size: a report is at most 8 KiB on the wire). Returns the page and the
    /// cursor of the next one (`None`: no more).
    pub fn reports_page(
        &self,
        device: &str,
        before: Option<u64>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<NumberedReport>, Option<u64>), Error> {
        let prefix = report_prefix(device);
        let end = match before {
            Some(b) => format!("{prefix}{b:020}"),
            None => format!("{prefix}~"),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.reports.range(prefix.as_bytes()..end.as_bytes()).rev() {
            let (k, v) = item?;
            let seq = std::str::from_utf8(&k[prefix.len()..])
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| Error::Corrupt(format!("report key of {device}")))?;
            if out.len() == limit.max(1) || (!out.is_empty() && bytes + v.len() > max_bytes) {
                // There is more: the next page starts below the last one shown.
                let next = out.last().map(|r: &NumberedReport| r.seq);
                return Ok((out, next));
            }
            bytes += v.len();
            let report = serde_json::from_slice(&v).map_err(|e| Error::Corrupt(e.to_string()))?;
            out.push(NumberedReport { seq, report });
        }
        Ok((out, None))
    }

    /// The next value of a named counter (durable before it is used).
    pub fn next_counter(&self, name: &str) -> Result<u64, Error> {
        let v = self.meta.update_and_fetch(name.as_bytes(), |old| {
            let n = old
                .and_then(|o| <[u8; 8]>::try_from(o).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        self.flush()?;
        v.and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::Corrupt("counter".into()))
    }
}

#[cfg(test)]
mod tests;
