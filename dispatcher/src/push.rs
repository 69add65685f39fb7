//! Distribution (DESIGN.md §2 flow 3): the driver takes the devices that are due from the
//! rollouts and pushes envelope, release key and blob to each over CoAP + OSCORE (Block1
//! inside OSCORE), with bounded concurrency, and feeds each device's report back into its
//! rollout.
//!
//! Before sending, the driver asks the device what it runs (`GET status`): a device that
//! already runs the release (installed before a dispatcher crash was recorded) is recorded
//! as installed and not sent the release again.
//!
//! Freshness (issue 13, docs/transport.md "Freshness of pushes"): the device acts on the
//! last block of the blob only when it echoes a recent Echo value of the device, so the
//! device answers that block with an Echo challenge. Before answering any challenge the
//! client asks [`Dispatcher::push_may_complete`]: a rollout aborted, paused or halted, or
//! whose window closed, since the push started is never completed — the push ends there,
//! and a copy of the block held back on the path is useless (without a fresh Echo value the
//! device refuses it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_proto::coap::device as paths;
use oscore::SecurityContext;
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};

use crate::Error;
use crate::rollout::Outcome;
use crate::service::Dispatcher;
use crate::store::DeviceReport;

/// One device's push context, taken by at most one push at a time (one sequence space).
type Slot = Arc<tokio::sync::Mutex<Option<SecurityContext>>>;

/// The push side of the dispatcher.
#[derive(Default)]
pub struct Pusher {
    contexts: std::sync::Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

fn slot(p: &Pusher, device: &str) -> Slot {
    let mut m = match p.contexts.lock() {
        Ok(m) => m,
        Err(e) => e.into_inner(),
    };
    m.entry(device.to_owned()).or_default().clone()
}

/// Runs the driver until `shutdown` resolves; in-flight pushes are left to finish or be
/// recovered at the next start.
pub async fn run(d: Arc<Dispatcher>, shutdown: impl std::future::Future<Output = ()>) {
    let pusher = Arc::new(Pusher::default());
    let limit = d.cfg().limits.max_concurrent_pushes.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    tokio::pin!(shutdown);
    loop {
        let free = permits.available_permits();
        if free > 0 {
            for (rollout, rid, device) in d.due(free) {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (d, pusher) = (d.clone(), pusher.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let outcome = push_one(&d, &pusher, &rollout, &rid, &device).await;
                    if let Err(e) = d.record_outcome(&rollout, &device, outcome) {
                        tracing::error!(%rollout, %device, error = %e, "cannot record outcome");
                    }
                    d.wake.notify_one();
                });
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = d.wake.notified() => {},
            () = tokio::time::sleep(Duration::from_millis(500)) => {},
        }
    }
}

/// What the push reports when its Echo guard declined to go on.
const STOPPED: &str = "stopped: the rollout no longer runs";

fn client_config() -> ClientConfig {
    ClientConfig {
        ack_timeout: Duration::from_millis(1500),
        max_retransmit: 4,
        ..ClientConfig::default()
    }
}

/// Pushes one release of `rollout` to one device and returns what the rollout should record.
pub async fn push_one(
    d: &Arc<Dispatcher>,
    p: &Pusher,
    rollout: &str,
    rid: &str,
    device: &str,
) -> Outcome {
    let timeout = Duration::from_secs(d.cfg().limits.push_timeout_secs.max(1));
    match tokio::time::timeout(timeout, push_inner(d, p, rollout, rid, device)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::debug!(%device, error = %e, "push failed (transient)");
            Outcome::Transient {
                reason: e.to_string(),
            }
        }
        Err(_) => Outcome::Transient {
            reason: format!("no answer within {} s", timeout.as_secs()),
        },
    }
}

async fn push_inner(
    d: &Arc<Dispatcher>,
    p: &Pusher,
    rollout: &str,
    rid: &str,
    device: &str,
) -> Result<Outcome, Error> {
    let rec = d
        .store()
        .device(device)?
        .ok_or_else(|| Error::NotFound(format!("device {device}")))?;
    let addr = rec
        .address
        .ok_or_else(|| Error::Remote("device address unknown (no check-in yet)".into()))?;
    let art = d.artifacts(rid)?;
    let slot = slot(p, device);
    let mut guard = slot.lock().await;
    let ctx = match guard.take() {
        Some(c) => c,
        None => d.push_context(device)?,
    };
    let mut client = Client::connect(addr, Some(ctx), client_config())
        .await
        .map_err(|e| Error::Remote(e.to_string()))?;
    // Re-checked before every Echo answer: the answer is what lets the device act.
    let (dd, r, dev) = (d.clone(), rollout.to_owned(), device.to_owned());
    client.set_echo_guard(Box::new(move || dd.push_may_complete(&r, &dev)));
    let result = exchange(&mut client, &art, rid, device).await;
    *guard = client.into_context();
    let (outcome, report) = match result {
        Err(Error::Remote(m)) if m == STOPPED => {
            tracing::info!(%device, %rollout, "push stopped: the rollout no longer runs");
            return Ok(Outcome::Transient {
                reason: "not completed: the rollout stopped or its window closed".into(),
            });
        }
        r => r?,
    };
    if let Some(rep) = report {
        d.device_report(device, &rep)?;
    }
    d.metrics
        .bytes_pushed
        .fetch_add(art.blob.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(outcome)
}

async fn exchange(
    c: &mut Client,
    art: &crate::service::Artifacts,
    rid: &str,
    device: &str,
) -> Result<(Outcome, Option<DeviceReport>), Error> {
    let remote = |e: oscore::Error| match e {
        oscore::Error::EchoRefused => Error::Remote(STOPPED.into()),
        e => Error::Remote(e.to_string()),
    };
    // Already installed (e.g. the report was lost in a crash)? Then do not send again.
    let st = c
        .request(code::GET, paths::STATUS, &[])
        .await
        .map_err(remote)?;
    // A status that does not decode is not trusted to skip the push.
    if let Ok(s) = fleet_proto::push::Status::decode(&st.payload)
        && s.state.counter >= art.sequence
    {
        tracing::info!(%device, %rid, version = %s.version, "device already at or past this release");
        // Its inventory as the device states it (the report may have been lost in a crash).
        let rep = DeviceReport {
            release_id: Some(rid.to_owned()),
            outcome: "installed".into(),
            check: None,
            message: "already at or past this release when the dispatcher asked".into(),
            version_before: s.version.clone(),
            version_after: s.version,
            received_at: None,
        };
        return Ok((Outcome::Installed, Some(rep)));
    }
    c.request(code::PUT, paths::ENVELOPE, &art.approved)
        .await
        .map_err(remote)?;
    c.request(code::PUT, paths::KEY, &art.key)
        .await
        .map_err(remote)?;
    let reply = match c.request(code::PUT, paths::BLOB, &art.blob).await {
        Ok(r) => r,
        // The device lost power and rebooted: transient, send again later.
        Err(oscore::Error::Response { code, .. }) if code == "5.03" => {
            return Ok((
                Outcome::Transient {
                    reason: "device rebooted during install (5.03)".into(),
                },
                None,
            ));
        }
        Err(e) => return Err(remote(e)),
    };
    let rep = fleet_proto::uplink::Report::decode(&reply.payload)
        .map_err(|e| Error::Remote(e.to_string()))?;
    let rep = crate::uplink::stored_report(&rep);
    let outcome = outcome_of(&rep);
    Ok((outcome, Some(rep)))
}

/// Maps a device report to the rollout's view.
pub fn outcome_of(rep: &DeviceReport) -> Outcome {
    match rep.outcome.as_str() {
        "installed" => Outcome::Installed,
        "rejected" => Outcome::Rejected {
            check: rep.check.clone().unwrap_or_else(|| "unknown".into()),
        },
        "reverted" => Outcome::Failed {
            reason: format!(
                "reverted: {}",
                rep.check.clone().unwrap_or_else(|| rep.message.clone())
            ),
        },
        other => Outcome::Failed {
            reason: format!("unknown outcome {other:?}"),
        },
    }
}
