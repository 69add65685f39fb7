//! The fleet of the chain: devices enrolled at the dispatcher, provisioned and run as one
//! `device-sim fleet` process.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use std::ops::ControlFlow;
use uuid::Uuid;

use super::proc::start_within;
use super::{CLASS_HMI, CLASS_PLC, Chain, VENDOR, poll_until, s};

impl Chain {
    /// Enrols `n` devices (even: PLCs in group `line-1`, odd: HMIs in group `hmi`), starts
    /// them as one fleet process and waits until each has checked in. `prepare` runs on
    /// each provisioned device directory before the fleet starts (e.g. to write faults).
    pub async fn start_fleet(
        &mut self,
        n: usize,
        prepare: impl Fn(usize, &Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.start_fleet_of(n, None, prepare).await
    }

    /// As [`Chain::start_fleet`]; with `only_hmi` every device is an HMI panel.
    pub async fn start_fleet_of(
        &mut self,
        n: usize,
        only_hmi: Option<bool>,
        prepare: impl Fn(usize, &Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let vendor = Uuid::parse_str(VENDOR)?;
        let (plc, hmi) = (Uuid::parse_str(CLASS_PLC)?, Uuid::parse_str(CLASS_HMI)?);
        let mut bundles = Vec::new();
        for i in 0..n {
            let (name, class, group) = fleet_member(i, only_hmi, plc, hmi);
            let b: Value = self
                .op
                .post("/v1/devices", &json!({"name": name, "vendor_id": vendor, "class_id": class, "group": group, "factory_version": "1.0.0"}))
                .await
                .with_context(|| format!("enrol {name}"))?;
            bundles.push(b);
            self.devices.push((name, class));
        }
        let devs = self.devices_dir();
        std::fs::create_dir_all(&devs)?;
        let bundle_file = self.opts.root.join("bundles.json");
        foundations::fs::write_secret_file(&bundle_file, &serde_json::to_vec(&bundles)?)?;
        drop(bundles);
        let count = n.to_string();
        // The fleet provisions DIR/dev-NNNN from bundle NNNN and starts at once; the hook runs
        // before any release exists (faults.json is read at each install attempt).
        let mut args = vec![
            "device-sim",
            "fleet",
            "--count",
            &count,
            "--dir",
            s(&devs),
            "--provision",
            s(&bundle_file),
            "--max-blob",
            "4194304",
        ];
        let extra = self.opts.fleet_args.clone();
        args.extend(extra.iter().map(String::as_str));
        let (p, _) = start_within(
            &self.opts.exe,
            "device-sim",
            &args,
            &format!("{count} devices listening"),
            &self.logs,
            fleet_allowance(n),
        )?;
        let _ = std::fs::remove_file(&bundle_file);
        for i in 0..n {
            prepare(i, &devs.join(format!("dev-{i:04}")))?;
        }
        self.fleet = Some(p);
        self.wait_for_checkins(n).await
    }

    /// Waits until `n` devices have an address (checked in).
    pub async fn wait_for_checkins(&self, n: usize) -> anyhow::Result<()> {
        let limit = fleet_allowance(n);
        poll_until(limit, async || {
            let v: Value = self.op.get("/v1/devices").await?;
            let seen = v["devices"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|d| !d["address"].is_null()).count());
            Ok(if seen >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!(
                    "only {seen} of {n} devices checked in within {limit:?}"
                ))
            })
        })
        .await
    }
}

/// Time allowed for `n` devices to provision, start or check in (2 cores, loopback).
fn fleet_allowance(n: usize) -> Duration {
    Duration::from_secs(120)
        + Duration::from_millis(30).saturating_mul(n.try_into().unwrap_or(u32::MAX))
}

/// Device `i` of a fleet: (name, class-id, group). Even: PLCs in group `line-1`, odd: HMIs
/// in group `hmi`; with `only_hmi`, every device is an HMI panel.
fn fleet_member(
    i: usize,
    only_hmi: Option<bool>,
    plc: Uuid,
    hmi: Uuid,
) -> (String, Uuid, &'static str) {
    if only_hmi == Some(true) {
        (format!("hmi-{i:05}"), hmi, "hmi")
    } else if i.is_multiple_of(2) {
        (format!("plc-{:04}", i / 2), plc, "line-1")
    } else {
        (format!("hmi-{:04}", i / 2), hmi, "hmi")
    }
}
