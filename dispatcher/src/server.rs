//! `dispatcher serve`: the operator API over HTTPS, the device uplink over CoAP + OSCORE, the
//! push driver and the update-server poller, until shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::service::Dispatcher;
use crate::store::DeviceRecord;
use crate::uplink::{self, Artifact, CheckIn, CheckInReply, DeviceBackend, Pending, UplinkError};
use crate::{Error, rollout};

/// Addresses the running dispatcher is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Operator API.
    pub https: SocketAddr,
    /// Device uplink.
    pub coap: SocketAddr,
}

/// Runs the dispatcher from its configuration file until `shutdown` resolves. Prints one
/// line `dispatcher listening https://ADDR coap://ADDR` on stdout when ready.
pub async fn run(
    config_path: &Path,
    injectable_clock: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let cfg = Config::load(config_path)?;
    let (tx, _) = tokio::sync::oneshot::channel::<Bound>();
    run_with(cfg, injectable_clock, shutdown, tx).await
}

/// As [`run`], with the configuration given and the bound addresses reported on `ready`.
pub async fn run_with(
    mut cfg: Config,
    injectable_clock: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: tokio::sync::oneshot::Sender<Bound>,
) -> Result<(), Error> {
    let tls = cfg.tls.server_config()?;
    let (listener, https) = foundations::serve::bind(cfg.listen).await?;
    // Reserve the CoAP port first so bundles can name it when the configuration says port 0.
    let probe = std::net::UdpSocket::bind(cfg.coap_listen)
        .map_err(|e| Error::io(cfg.coap_listen.to_string(), e))?;
    let coap_addr = probe
        .local_addr()
        .map_err(|e| Error::io(cfg.coap_listen.to_string(), e))?;
    drop(probe);
    if cfg.coap_listen.port() == 0 {
        cfg.coap_uri = format!("coap://{coap_addr}");
    }
    let d = Arc::new(Dispatcher::open(cfg, injectable_clock)?);
    let mut contexts = Vec::new();
    for dev in d.store().devices()? {
        contexts.push(d.uplink_context(&dev)?);
    }
    let (uplink_handle, set) =
        uplink::start_uplink(coap_addr, Arc::new(Backend(d.clone())), contexts)
            .await
            .map_err(|e| Error::Other(format!("device uplink on {coap_addr}: {e}")))?;
    d.set_uplink(set);
    let bound = Bound {
        https,
        coap: uplink_handle.addr,
    };
    println!(
        "dispatcher listening https://{} coap://{}",
        bound.https, bound.coap
    );
    tracing::info!(https = %bound.https, coap = %bound.coap, "dispatcher listening");
    let _ = ready.send(bound);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let push = tokio::spawn(crate::push::run(d.clone(), wait(stop_rx.clone())));
    let poll = tokio::spawn(crate::poll::run(d.clone(), wait(stop_rx.clone())));
    let app = crate::api::router(d.clone());
    let limits = d.cfg().serve.clone();
    // The shared serve loop: connection budget (idle connections make room), handshake,
    // header, idle and request timeouts, HSTS, graceful drain.
    let r = foundations::serve::serve(listener, tls, app, &limits, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = push.await;
    let _ = poll.await;
    if let Err(e) = uplink_handle.stop().await {
        tracing::warn!(error = %e, "uplink stop");
    }
    d.store().flush()?;
    r.map_err(Error::from)
}

/// The uplink backend over the dispatcher.
#[derive(Debug)]
pub struct Backend(pub Arc<Dispatcher>);

impl Backend {
    fn device(&self, kid: &[u8]) -> Result<DeviceRecord, UplinkError> {
        self.0
            .store()
            .device_by_kid(kid)
            .map_err(|e| UplinkError::Internal(e.to_string()))?
            .ok_or(UplinkError::UnknownDevice)
    }
}

impl DeviceBackend for Backend {
    fn checkin(
        &self,
        kid: &[u8],
        peer: SocketAddr,
        c: CheckIn,
    ) -> Result<CheckInReply, UplinkError> {
        let d = &self.0;
        let known = self.device(kid)?;
        let now = d.clock.now();
        let dev = d
            .store()
            .update_device(&known.id, |dev| {
                dev.address = Some(SocketAddr::new(peer.ip(), c.coap_port));
                // A device's confirmed sequence number never goes back (anti-rollback), so a
                // check-in that says less was composed before a report the dispatcher already
                // has: keep the newer inventory.
                if c.sequence >= dev.sequence {
                    dev.version = c.version.clone();
                    dev.sequence = c.sequence;
                    dev.release_id = c.release_id.clone();
                }
                dev.last_seen = Some(now);
            })
            .map_err(|e| UplinkError::Internal(e.to_string()))?
            .ok_or(UplinkError::UnknownDevice)?;
        d.metrics
            .checkins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A device whose push failed (unreachable) is offered the release to pull.
        let policy = d.policy();
        let now = d.clock.now();
        // Only a running rollout inside its window offers pulls (as it pushes); the releases
        // are picked under the rollouts' lock, their files read after it.
        let offered: Vec<String> = d.with_rollouts(|all| {
            all.filter(|r| {
                r.rollout.status == rollout::Status::Running
                    && crate::service::window_open(&policy, r.window.as_deref(), now)
                    && matches!(
                        r.rollout.device(&dev.id),
                        Some(rollout::DeviceProgress::Retry { .. })
                    )
            })
            .map(|r| r.rollout.release_id.clone())
            .collect()
        });
        let pending = offered.into_iter().find_map(|rid| {
            let a = d.artifacts(&rid).ok()?;
            (a.sequence > c.sequence).then(|| Pending {
                envelope_size: a.approved.len() as u64,
                blob_size: a.blob.len() as u64,
                release_id: rid,
            })
        });
        d.wake.notify_one();
        Ok(CheckInReply {
            next_checkin_s: d.cfg().limits.checkin_interval_secs,
            pending,
        })
    }

    fn artifact(
        &self,
        kid: &[u8],
        release_id: &str,
        which: Artifact,
    ) -> Result<Arc<Vec<u8>>, UplinkError> {
        let dev = self.device(kid)?;
        let d = &self.0;
        // Artifacts (the release key among them) only for a device of a running rollout
        // inside its window that has not settled.
        let policy = d.policy();
        let now = d.clock.now();
        let offered = d.rollout_for(&dev.id, release_id).is_some_and(|id| {
            d.with_rollout(&id, |r| {
                r.rollout.status == rollout::Status::Running
                    && crate::service::window_open(&policy, r.window.as_deref(), now)
                    && !r
                        .rollout
                        .device(&dev.id)
                        .is_some_and(rollout::DeviceProgress::settled)
            })
            .unwrap_or(false)
        });
        if !offered {
            return match d.store().release(release_id) {
                Ok(Some(_)) => Err(UplinkError::NotOffered),
                Ok(None) => Err(UplinkError::NotFound),
                Err(e) => Err(UplinkError::Internal(e.to_string())),
            };
        }
        let a = d
            .artifacts(release_id)
            .map_err(|e| UplinkError::Internal(e.to_string()))?;
        Ok(match which {
            Artifact::Envelope => a.approved.clone(),
            Artifact::Key => a.key.clone(),
            Artifact::Blob => a.blob.clone(),
        })
    }

    fn report_rate(&self) -> uplink::ReportRate {
        let l = &self.0.cfg().limits;
        uplink::ReportRate {
            burst: l.report_burst,
            interval: std::time::Duration::from_secs(l.report_interval_secs),
        }
    }

    fn report_refused(&self, _kid: &[u8]) {
        self.0
            .metrics
            .reports_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn report(&self, kid: &[u8], r: uplink::DeviceReport) -> Result<(), UplinkError> {
        let dev = self.device(kid)?;
        let d = &self.0;
        let outcome = match r.outcome {
            uplink::ReportOutcome::Installed => "installed",
            uplink::ReportOutcome::Rejected => "rejected",
            uplink::ReportOutcome::Reverted => "reverted",
        };
        let rep = crate::store::DeviceReport {
            release_id: r.release_id.clone(),
            outcome: outcome.into(),
            check: r.check.clone(),
            message: r.message.clone(),
            version_before: r.version_before.clone(),
            version_after: r.version_after.clone(),
            received_at: None,
        };
        d.device_report(&dev.id, &rep)
            .map_err(|e| UplinkError::Internal(e.to_string()))?;
        if let Some(rid) = &r.release_id
            && let Some(rollout) = d.rollout_for(&dev.id, rid)
        {
            let settled = d
                .device_progress(&rollout, &dev.id)
                .is_some_and(|p| p.settled());
            if !settled {
                d.record_outcome(&rollout, &dev.id, crate::push::outcome_of(&rep))
                    .map_err(|e| UplinkError::Internal(e.to_string()))?;
            }
        }
        d.wake.notify_one();
        Ok(())
    }
}
