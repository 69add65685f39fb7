//! The device → dispatcher direction (`docs/transport.md`, "Device uplink"): the device is a
//! CoAP client of its dispatcher. It checks in at start and then every `next_checkin_s`
//! seconds (with ±10 % jitter), pulls a release the dispatcher offers (envelope, release key,
//! encrypted blob, each with Block2 inside OSCORE), installs it through the same path and
//! lock as a pushed release, and reports the outcome with `POST d/report`.
//!
//! The uplink has its own OSCORE context (`DIR/uplink.json`, sequence state in
//! `uplink.json.seq`), separate from the push context in which the device is the server, so
//! the two directions never share a sender sequence number space. One context lives per
//! device and process: it is moved into each short-lived [`Client`] and taken back with
//! [`Client::into_context`], so no idle socket is kept between check-ins and no second
//! context is ever derived from the same parameters (that would reuse nonces).
//!
//! With a link fault (`DIR/link.json`, [`crate::link`]) the uplink's clients talk to the
//! dispatcher through a relay of their own, so check-ins, pulls and reports cross the same
//! slow or lossy link as pushes; see [`start_device`].
//!
//! The messages (check-in, its reply, the report) and the resource paths are
//! `fleet_proto`'s, decoded by its one strict decoder, as on the dispatcher.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleet_proto::coap::{Artifact, dispatcher as paths};
use fleet_proto::uplink::{CheckIn, CheckInReply, Pending};
use oscore::SecurityContext;
use oscore::lock::ContextLock;
use oscore::message::code;
use oscore::transport::{Client, ClientConfig, ServerHandle};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::coap::{DeviceHandler, InstallError, Summary};
use crate::link::{LinkFault, LinkOverride};
use crate::relay::{Relay, RelayLimits};
use crate::{DeviceDir, DeviceError, InstallOutcome, Report};

/// The uplink context file in the device directory.
pub const UPLINK_FILE: &str = "uplink.json";
/// Check-in interval before the dispatcher named one (and after failures, if it never did).
pub const DEFAULT_CHECKIN: Duration = Duration::from_secs(300);
/// Largest envelope pulled (the `suit` decoder's default limit, as for pushes).
pub use fleet_proto::limits::MAX_ENVELOPE;
/// Largest release key pulled (as for pushes).
pub use fleet_proto::limits::MAX_RELEASE_KEY as MAX_KEY;
/// Largest check-in reply accepted.
const MAX_REPLY: usize = fleet_proto::limits::MAX_CHECKIN_REPLY;
/// Delay before the next try when an install holds the device at check-in time.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// The device's uplink context from `DIR/uplink.json` (None when the device has none), its
/// sender sequence number persisted in `uplink.json.seq` (RFC 8613 Appendix B.1.1), opened
/// under `lock` (the device directory's or the fleet's): one live context per process, and
/// none in another process.
pub fn uplink_context(
    lock: &Arc<ContextLock>,
    dir: &Path,
) -> Result<Option<SecurityContext>, DeviceError> {
    let file = dir.join(UPLINK_FILE);
    if !file.exists() {
        return Ok(None);
    }
    oscore::ctxfile::open_in(lock, &file)
        .map(Some)
        .map_err(DeviceError::Context)
}

/// The dispatcher's address from `DIR/network.json` (`{"dispatcher": "coap://host:port"}`;
/// the port defaults to 5683, a host name is resolved).
pub async fn dispatcher_addr(dir: &Path) -> Result<SocketAddr, DeviceError> {
    let path = dir.join("network.json");
    let bad = |why: &str| DeviceError::Corrupt(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(&path).map_err(DeviceError::io("cannot read", &path))?;
    if bytes.len() > 4096 {
        return Err(bad("larger than 4 KiB"));
    }
    #[derive(Deserialize)]
    struct Network {
        dispatcher: String,
    }
    let n: Network = serde_json::from_slice(&bytes)
        .map_err(|_| bad("expected {\"dispatcher\": \"coap://…\"}"))?;
    // The bundle's rule for the dispatcher's URI (`fleet_proto::text::CoapUri`).
    let uri = fleet_proto::text::CoapUri::parse(&n.dispatcher)
        .ok_or_else(|| bad("dispatcher URI must be coap://host[:port]"))?;
    if let Ok(ip) = uri.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, uri.port));
    }
    let mut addrs = tokio::net::lookup_host((uri.host.as_str(), uri.port))
        .await
        .map_err(|_| bad("cannot resolve the dispatcher's host"))?;
    addrs
        .next()
        .ok_or_else(|| bad("the dispatcher's host has no address"))
}

/// Uplink settings.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// Fixed check-in interval, overriding the dispatcher's `next_checkin_s`.
    pub interval: Option<Duration>,
    /// The first check-in happens after a random delay in `[0, first_spread)` (0: at once).
    /// A fleet spreads its devices' check-ins this way.
    pub first_spread: Duration,
    /// CoAP client parameters.
    pub client: ClientConfig,
    /// Largest blob pulled.
    pub max_blob: usize,
    /// Pulls allowed at once (shared by the devices of one process).
    pub pulls: Arc<Semaphore>,
    /// Link faults from the command line; they override `DIR/link.json` field by field
    /// ([`LinkOverride::apply`]).
    pub link: LinkOverride,
    /// The lock the device's contexts are opened under: a fleet's lock on the parent
    /// directory, shared by its devices; `None`: [`start_device`] locks the device directory.
    pub lock: Option<Arc<ContextLock>>,
    /// How recent the Echo value of a request that starts an install must be
    /// ([`crate::coap::DEFAULT_PUSH_FRESHNESS`]).
    pub push_freshness: Duration,
    /// Bound of one generation of the install log
    /// ([`crate::state::DEFAULT_MAX_LOG_BYTES`]; `DeviceDir::log`).
    pub max_log_bytes: u64,
}

impl UplinkConfig {
    /// Defaults for one device: no override, check in at once, one pull at a time.
    pub fn new(max_blob: usize) -> Self {
        UplinkConfig {
            interval: None,
            first_spread: Duration::ZERO,
            client: ClientConfig::default(),
            max_blob,
            pulls: Arc::new(Semaphore::new(1)),
            link: LinkOverride::default(),
            lock: None,
            push_freshness: crate::coap::DEFAULT_PUSH_FRESHNESS,
            max_log_bytes: crate::state::DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// A running uplink task.
#[derive(Debug)]
pub struct Uplink {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Uplink {
    /// Stops the task; its context's sequence number is flushed when it was idle.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the uplink of `handler`'s device: check-ins to `dispatcher`, naming `coap_port` as
/// the device's server port, with the device's one uplink context `ctx`.
pub fn spawn(
    handler: Arc<DeviceHandler>,
    dispatcher: SocketAddr,
    coap_port: u16,
    ctx: SecurityContext,
    cfg: UplinkConfig,
) -> Uplink {
    let (stop, rx) = tokio::sync::watch::channel(false);
    handler.pull_signal().enabled.store(true, Ordering::Release);
    let name = handler
        .dir()
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let agent = Agent {
        handler,
        name,
        dispatcher,
        coap_port,
        ctx: Some(ctx),
        cfg,
        rng: u64::from_le_bytes(seed) | 1,
        dispatcher_interval: None,
        unsettled: None,
    };
    Uplink {
        stop,
        task: tokio::spawn(Box::new(agent).run(rx)),
    }
}

/// A device's CoAP server and, when it has one, its uplink; with a link fault, the relays
/// that simulate it.
#[derive(Debug)]
pub struct RunningDevice {
    /// The device's public CoAP address: the push relay's when a link fault is set (the
    /// address to print, to report in check-ins and to push to), else the server's.
    pub addr: SocketAddr,
    /// The CoAP server (push direction). Behind the push relay when a link fault is set:
    /// then its own address is internal (loopback) and bypasses the fault.
    pub server: ServerHandle,
    /// The uplink task.
    pub uplink: Option<Uplink>,
    /// The link fault applied, if any.
    pub link: Option<LinkFault>,
    /// The push relay (in front of the server) and the uplink relay (between the uplink's
    /// clients and the dispatcher).
    relays: Vec<Relay>,
}

impl RunningDevice {
    /// Stops the uplink, then the server (both flush their contexts), then the relays.
    pub async fn stop(self) -> Result<(), DeviceError> {
        if let Some(u) = self.uplink {
            u.stop().await;
        }
        let r = self
            .server
            .stop()
            .await
            .map_err(|e| DeviceError::Corrupt(e.to_string()));
        for relay in self.relays {
            relay.stop().await;
        }
        r
    }
}

/// Mixed into the seed of the uplink relay, so that its drops differ from the push relay's.
const UPLINK_SEED_SALT: u64 = 0x7570_6c69_6e6b;

/// The loopback address of `addr`'s family, port 0.
fn loopback_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    }
}

/// Starts a device: its CoAP server on `listen` and, when `DIR/uplink.json` exists, its
/// uplink to the dispatcher named in `DIR/network.json`.
///
/// With a link fault (`DIR/link.json` and/or `cfg.link`, see [`crate::link`]), both
/// directions go through the simulated link: the server listens on an internal loopback
/// port behind a relay bound to `listen` (the device's public address, [`RunningDevice::addr`],
/// which check-ins report), and the uplink's clients talk to the dispatcher through a second
/// relay on loopback. An invalid `link.json` refuses the start before anything is bound.
pub async fn start_device(
    dir: &Path,
    listen: SocketAddr,
    mut cfg: UplinkConfig,
) -> Result<RunningDevice, DeviceError> {
    let link = cfg.link.resolve(dir)?;
    // Locked before the device boots (boot recovery writes its state): one process per
    // device, whose contexts no other process can open.
    let lock = match &cfg.lock {
        Some(l) => l.clone(),
        None => crate::coap::lock_device(dir)?,
    };
    cfg.lock = Some(lock.clone());
    let handler = Arc::new(
        DeviceHandler::new(DeviceDir::new(dir).with_max_log_bytes(cfg.max_log_bytes))?
            .with_push_freshness(cfg.push_freshness),
    );
    let ctx = uplink_context(&lock, dir)?;
    let dispatcher = match ctx {
        Some(_) => Some(dispatcher_addr(dir).await?),
        None => None,
    };
    let bind_err = |source| DeviceError::Io {
        what: "cannot bind the link relay for",
        path: dir.to_owned(),
        source,
    };
    let seed = link.map(|f| {
        f.seed().unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b)
        })
    });
    let mut relays = Vec::new();
    let (server, addr) = match (link, seed) {
        (Some(fault), Some(seed)) => {
            let server = crate::coap::start_with(
                handler.clone(),
                &lock,
                dir,
                loopback_like(listen),
                cfg.max_blob,
            )
            .await?;
            let front = oscore::transport::bind_udp(listen, 1 << 20).map_err(bind_err)?;
            let relay = Relay::spawn(front, server.addr, &fault, seed, RelayLimits::default())
                .map_err(bind_err)?;
            let addr = relay.addr();
            relays.push(relay);
            (server, addr)
        }
        _ => {
            let server =
                crate::coap::start_with(handler.clone(), &lock, dir, listen, cfg.max_blob).await?;
            let addr = server.addr;
            (server, addr)
        }
    };
    let uplink = match (ctx, dispatcher) {
        (Some(ctx), Some(dispatcher)) => {
            let target = match (link, seed) {
                (Some(fault), Some(seed)) => {
                    let front = tokio::net::UdpSocket::bind(loopback_like(dispatcher))
                        .await
                        .map_err(bind_err)?;
                    // The uplink has one client at a time (a fresh one per exchange).
                    let limits = RelayLimits {
                        max_clients: 4,
                        ..RelayLimits::default()
                    };
                    let relay =
                        Relay::spawn(front, dispatcher, &fault, seed ^ UPLINK_SEED_SALT, limits)
                            .map_err(bind_err)?;
                    let target = relay.addr();
                    relays.push(relay);
                    target
                }
                _ => dispatcher,
            };
            Some(spawn(handler, target, addr.port(), ctx, cfg))
        }
        _ => None,
    };
    Ok(RunningDevice {
        addr,
        server,
        uplink,
        link,
        relays,
    })
}

/// Why a pull produced no install report.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("{0}")]
    Coap(#[from] oscore::Error),
    #[error("cannot stage the blob: {0}")]
    Staging(std::io::Error),
    #[error("{0}")]
    Install(#[from] InstallError),
    #[error("install task failed")]
    Join,
}

struct Agent {
    handler: Arc<DeviceHandler>,
    name: String,
    dispatcher: SocketAddr,
    coap_port: u16,
    /// The one uplink context; None only while a client holds it (or after it was lost with
    /// a client that failed to start, in which case it is loaded again from its file).
    ctx: Option<SecurityContext>,
    cfg: UplinkConfig,
    rng: u64,
    /// The dispatcher's last `next_checkin_s`.
    dispatcher_interval: Option<Duration>,
    /// The report of the last pulled release that did not install: re-sent, not pulled
    /// again, while the dispatcher still offers it (it may have missed the report).
    unsettled: Option<Report>,
}

impl Agent {
    /// Boxed: an async fn keeps its arguments beside its locals, so a by-value agent would
    /// be stored twice in every device's task.
    async fn run(mut self: Box<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let first = self.cfg.first_spread.mul_f64(self.unit());
        let mut deadline = Instant::now() + first;
        let signal = self.handler.clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    // Boxed: the exchange's state (clients, buffers) exists only while it
                    // runs, so an idle device's task stays small (a fleet has thousands).
                    let next = tokio::select! {
                        d = Box::pin(self.checkin()) => d,
                        _ = stop.changed() => return,
                    };
                    deadline = Instant::now() + next;
                }
                () = signal.pull_signal().notify.notified() => {
                    let wanted = signal.pull_signal().wanted.lock().ok().and_then(|mut w| w.take());
                    if let Some(id) = wanted {
                        tokio::select! {
                            () = Box::pin(self.offered(&id, None)) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
                _ = stop.changed() => break,
            }
        }
        if let Some(ctx) = self.ctx.as_mut()
            && let Err(e) = ctx.flush()
        {
            tracing::warn!(device = %self.name, "cannot flush the uplink context: {e}");
        }
    }

    /// Uniform in [0, 1) (xorshift64*; jitter only, not security).
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next check-in delay: the override, else the dispatcher's value, else the
    /// default; ±10 % jitter so that devices drift apart rather than together.
    fn next_delay(&mut self) -> Duration {
        let base = self
            .cfg
            .interval
            .or(self.dispatcher_interval)
            .unwrap_or(DEFAULT_CHECKIN);
        base.mul_f64(0.9 + 0.2 * self.unit())
    }

    /// A client with the uplink context (loaded again from its file if it was lost).
    async fn client(&mut self, max_body: usize) -> Result<Client, oscore::Error> {
        let ctx = match self.ctx.take() {
            Some(c) => c,
            None => self.reopen()?,
        };
        let cfg = ClientConfig {
            max_body,
            ..self.cfg.client.clone()
        };
        Client::connect(self.dispatcher, Some(ctx), cfg).await
    }

    /// The uplink context again from its file (it was lost with a client that failed to
    /// start), under the device's lock.
    fn reopen(&self) -> Result<SecurityContext, oscore::Error> {
        let bad = |reason: String| oscore::Error::ContextFile {
            path: UPLINK_FILE.into(),
            reason,
        };
        let lock = self
            .cfg
            .lock
            .as_ref()
            .ok_or_else(|| bad("no lock to open it under".into()))?;
        uplink_context(lock, self.handler.dir().root())
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("missing".into()))
    }

    /// One request with a fresh client; the context comes back whatever the outcome.
    async fn request(
        &mut self,
        method: u8,
        path: &str,
        body: &[u8],
        max_body: usize,
    ) -> Result<Vec<u8>, oscore::Error> {
        let mut c = self.client(max_body).await?;
        let r = c.request(method, path, body).await;
        self.ctx = c.into_context();
        r.map(|r| r.payload)
    }

    /// Check in; act on a pending release; return the delay to the next check-in.
    async fn checkin(&mut self) -> Duration {
        let Some(summary) = self.handler.summary() else {
            // An install holds the device (a push): try again shortly.
            return BUSY_RETRY.mul_f64(0.9 + 0.2 * self.unit());
        };
        let body = CheckIn {
            coap_port: self.coap_port,
            version: summary.version.clone(),
            sequence: summary.sequence,
            release_id: summary.release_id.clone(),
            state: summary.state.clone(),
            boots: summary.state.boots,
        };
        let body = match body.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(device = %self.name, "cannot check in: {e}");
                return self.next_delay();
            }
        };
        let reply = match self
            .request(code::POST, paths::CHECKIN, &body, MAX_REPLY)
            .await
        {
            Ok(bytes) => CheckInReply::decode(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(device = %self.name, "check-in failed: {e}");
                return self.next_delay();
            }
        };
        // The decoder keeps it within fleet_proto::limits::CHECKIN_INTERVAL_S.
        self.dispatcher_interval = Some(Duration::from_secs(reply.next_checkin_s.into()));
        if let Some(p) = reply.pending {
            self.offered(&p.release_id, Some((&p, &summary))).await;
        }
        self.next_delay()
    }

    /// A release offered at check-in (with its sizes) or named by `POST suit/pull`.
    async fn offered(&mut self, release_id: &str, checkin: Option<(&Pending, &Summary)>) {
        if !fleet_proto::valid_release_id(release_id) {
            tracing::warn!(device = %self.name, "dispatcher offered a malformed release id");
            return;
        }
        let running = match checkin {
            Some((_, s)) => s.release_id.clone(),
            None => self.handler.summary().and_then(|s| s.release_id),
        };
        if running.as_deref() == Some(release_id) {
            return;
        }
        if let Some(r) = &self.unsettled
            && r.release_id.as_deref() == Some(release_id)
        {
            let r = r.clone();
            self.report(&r).await;
            return;
        }
        if let Some((p, s)) = checkin
            && (p.envelope_size > MAX_ENVELOPE as u64 || p.blob_size > self.cfg.max_blob as u64)
        {
            // Off-spec device-level check (not a SUIT error code): this device cannot take a
            // release this large; reported so the rollout does not wait for it.
            let r = Report {
                release_id: Some(release_id.to_owned()),
                outcome: InstallOutcome::Rejected,
                check: Some("too-large".into()),
                message: format!(
                    "envelope of {} bytes or blob of {} bytes exceeds this device's limits ({} / {})",
                    p.envelope_size, p.blob_size, MAX_ENVELOPE, self.cfg.max_blob
                ),
                version_before: s.version.clone(),
                version_after: s.version.clone(),
            };
            self.unsettled = Some(r.clone());
            self.report(&r).await;
            return;
        }
        let pulls = self.cfg.pulls.clone();
        let Ok(_permit) = pulls.acquire().await else {
            return;
        };
        let result = self.pull_and_install(release_id).await;
        let _ = std::fs::remove_file(self.handler.pull_blob_path());
        match result {
            Ok(report) => {
                self.unsettled =
                    (report.outcome != InstallOutcome::Installed).then(|| report.clone());
                self.report(&report).await;
            }
            Err(e) => {
                tracing::warn!(device = %self.name, release = %release_id, "pull failed: {e}");
            }
        }
    }

    async fn pull_and_install(&mut self, id: &str) -> Result<Report, PullError> {
        let envelope = self
            .request(code::GET, &Artifact::Envelope.path(id), b"", MAX_ENVELOPE)
            .await?;
        let key = Zeroizing::new(
            self.request(code::GET, &Artifact::Key.path(id), b"", MAX_KEY)
                .await?,
        );
        let blob_path = self.handler.pull_blob_path();
        self.pull_blob(id, &blob_path).await?;
        let handler = self.handler.clone();
        tokio::task::spawn_blocking(move || {
            let mut blob = std::fs::File::open(&blob_path).map_err(PullError::Staging)?;
            handler
                .install_blocking(&envelope, &key, &mut blob)
                .map_err(PullError::from)
        })
        .await
        .map_err(|_| PullError::Join)?
    }

    /// Streams the blob into the staging file block by block (bounded by `max_blob`), so a
    /// pull holds one block in memory, not the blob.
    async fn pull_blob(&mut self, id: &str, path: &PathBuf) -> Result<(), PullError> {
        use std::io::Write;
        let file = std::fs::File::create(path).map_err(PullError::Staging)?;
        let mut out = std::io::BufWriter::new(file);
        let mut failed: Option<std::io::Error> = None;
        let mut c = self.client(self.cfg.max_blob).await?;
        let r = c
            .get_with(&Artifact::Blob.path(id), &mut |block| {
                if failed.is_none()
                    && let Err(e) = out.write_all(block)
                {
                    failed = Some(e);
                }
            })
            .await;
        self.ctx = c.into_context();
        r?;
        if let Some(e) = failed {
            return Err(PullError::Staging(e));
        }
        let file = out
            .into_inner()
            .map_err(|e| PullError::Staging(e.into_error()))?;
        file.sync_all().map_err(PullError::Staging)
    }

    async fn report(&mut self, r: &Report) {
        let body = match r.encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(device = %self.name, "cannot report: {e}");
                return;
            }
        };
        if let Err(e) = self
            .request(code::POST, paths::REPORT, &body, MAX_REPLY)
            .await
        {
            tracing::warn!(device = %self.name, "report failed: {e}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    async fn addr_of(uri: &str) -> Result<SocketAddr, DeviceError> {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("network.json"),
            serde_json::to_vec(&serde_json::json!({ "dispatcher": uri })).unwrap(),
        )
        .unwrap();
        dispatcher_addr(tmp.path()).await
    }

    #[tokio::test]
    async fn dispatcher_uri_forms() {
        for (uri, want) in [
            ("coap://127.0.0.1:6000", "127.0.0.1:6000"),
            ("coap://127.0.0.1:6000/", "127.0.0.1:6000"),
            ("coap://127.0.0.1", "127.0.0.1:5683"),
            ("coap://[::1]:6000", "[::1]:6000"),
            ("coap://[::1]", "[::1]:5683"),
            ("coap://localhost:6000", ""),
        ] {
            let got = addr_of(uri).await.unwrap();
            if want.is_empty() {
                assert!(got.ip().is_loopback() && got.port() == 6000, "{uri}: {got}");
            } else {
                assert_eq!(got, want.parse().unwrap(), "{uri}");
            }
        }
        for bad in [
            "http://127.0.0.1:6000",
            "coap://",
            "coap://127.0.0.1:6000/d/checkin",
            "coap://user@127.0.0.1",
            "coaps://127.0.0.1",
        ] {
            assert!(addr_of(bad).await.is_err(), "{bad}");
        }
        let tmp = tempfile::tempdir().unwrap();
        assert!(
            dispatcher_addr(tmp.path()).await.is_err(),
            "no network.json"
        );
    }
}
