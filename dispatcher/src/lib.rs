//! The domain-local dispatcher (DESIGN.md §2 flows 2 and 3): it fetches releases from update
//! servers (or takes direct uploads from internal publishers), verifies them against its
//! trust store, obtains each release key from the publisher's key repository, decrypts and
//! checks the image, applies the operator's policy, waits for approvals and maintenance
//! windows, adds its approval signature and distributes to devices over CoAP + OSCORE in
//! staged rollouts, and keeps a hash-chained audit log of every decision.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dispatcher::Error> {
//! // `dispatcher init --dir plant` wrote plant/dispatcher.toml and its secrets.
//! dispatcher::server::run(std::path::Path::new("plant/dispatcher.toml"), false, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! The operator guide is `docs/operator-guide.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod enrol;
pub mod error;
pub mod init;
pub mod intake;
pub mod operators;
pub mod poll;
pub mod push;
pub mod rollout;
pub mod server;
pub mod service;
pub mod store;
pub mod uplink;
pub mod views;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use error::Error;
pub use service::Dispatcher;

/// Counters for `/metrics` (Prometheus text format).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Releases accepted at intake.
    pub releases_accepted: AtomicU64,
    /// Refusals by check.
    pub releases_refused: Mutex<BTreeMap<String, u64>>,
    /// Devices enrolled by this process.
    pub devices_enrolled: AtomicU64,
    /// Install outcomes.
    pub installs_ok: AtomicU64,
    /// Rejected by a device check.
    pub installs_rejected: AtomicU64,
    /// Failed (reverted or attempts exhausted).
    pub installs_failed: AtomicU64,
    /// Transient failures (retried).
    pub installs_transient: AtomicU64,
    /// Blob bytes pushed.
    pub bytes_pushed: AtomicU64,
    /// Rollouts halted at their failure threshold.
    pub alerts: AtomicU64,
    /// Operator requests refused for authentication or role.
    pub auth_failures: AtomicU64,
    /// Update server requests that failed.
    pub update_server_failures: AtomicU64,
    /// Audit appends that failed.
    pub audit_failures: AtomicU64,
    /// Device check-ins.
    pub checkins: AtomicU64,
    /// Device reports refused (4.29) because their device sent above its rate.
    pub reports_refused: AtomicU64,
}

impl Metrics {
    /// Counts a refusal.
    pub fn refused(&self, check: &str) {
        if let Ok(mut m) = self.releases_refused.lock() {
            *m.entry(check.to_owned()).or_default() += 1;
        }
    }

    /// The Prometheus exposition.
    pub fn render(&self, d: &Dispatcher) -> String {
        let mut out = String::new();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "releases_accepted_total",
                "Releases accepted at intake.",
                &self.releases_accepted,
            ),
            (
                "installs_ok_total",
                "Devices that confirmed an install.",
                &self.installs_ok,
            ),
            (
                "installs_rejected_total",
                "Installs refused by a device check.",
                &self.installs_rejected,
            ),
            (
                "installs_failed_total",
                "Installs that failed or reverted.",
                &self.installs_failed,
            ),
            (
                "installs_transient_total",
                "Transient push failures (retried).",
                &self.installs_transient,
            ),
            (
                "pushed_bytes_total",
                "Blob bytes pushed to devices.",
                &self.bytes_pushed,
            ),
            (
                "alerts_total",
                "Rollouts halted at their failure threshold.",
                &self.alerts,
            ),
            (
                "auth_failures_total",
                "Operator requests refused.",
                &self.auth_failures,
            ),
            (
                "update_server_failures_total",
                "Failed update server polls.",
                &self.update_server_failures,
            ),
            (
                "audit_failures_total",
                "Audit appends that failed or were refused (operations not performed).",
                &self.audit_failures,
            ),
            (
                "reports_refused_total",
                "Device reports refused (4.29) above their device's rate.",
                &self.reports_refused,
            ),
            ("checkins_total", "Device check-ins.", &self.checkins),
            (
                "devices_enrolled_total",
                "Devices enrolled since start.",
                &self.devices_enrolled,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP dispatcher_{name} {help}");
            let _ = writeln!(out, "# TYPE dispatcher_{name} counter");
            let _ = writeln!(out, "dispatcher_{name} {}", l(v));
        }
        let _ = writeln!(
            out,
            "# HELP dispatcher_releases_refused_total Releases refused at intake, by check."
        );
        let _ = writeln!(out, "# TYPE dispatcher_releases_refused_total counter");
        if let Ok(m) = self.releases_refused.lock() {
            for (check, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "dispatcher_releases_refused_total{{check=\"{check}\"}} {n}"
                );
            }
        }
        render_gauges(&mut out, d);
        out
    }
}

/// The gauges of `/metrics`: enrolled devices, the approval queue, rollouts by status and
/// devices being updated now.
fn render_gauges(out: &mut String, d: &Dispatcher) {
    let devices = d.store().devices().map(|v| v.len()).unwrap_or(0);
    let pending = d
        .store()
        .releases()
        .map(|v| v.iter().filter(|r| r.pending()).count())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP dispatcher_devices Enrolled devices.\n# TYPE dispatcher_devices gauge\ndispatcher_devices {devices}"
    );
    let _ = writeln!(
        out,
        "# HELP dispatcher_approval_queue Releases waiting for an operator.\n# TYPE dispatcher_approval_queue gauge\ndispatcher_approval_queue {pending}"
    );
    let _ = writeln!(
        out,
        "# HELP dispatcher_rollouts Rollouts by status.\n# TYPE dispatcher_rollouts gauge"
    );
    let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut in_flight = 0;
    d.with_rollouts(|all| {
        for r in all {
            let s = match r.rollout.status {
                rollout::Status::Scheduled => "scheduled",
                rollout::Status::Running => "running",
                rollout::Status::Paused => "paused",
                rollout::Status::Halted { .. } => "halted",
                rollout::Status::Aborted { .. } => "aborted",
                rollout::Status::Completed => "completed",
            };
            *by.entry(s).or_default() += 1;
            in_flight += r.rollout.progress().in_flight;
        }
    });
    for (s, n) in by {
        let _ = writeln!(out, "dispatcher_rollouts{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP dispatcher_devices_in_flight Devices being updated now.\n# TYPE dispatcher_devices_in_flight gauge\ndispatcher_devices_in_flight {in_flight}"
    );
}
