//! The device's CoAP front end: an OSCORE-protected CoAP server (RFC 8613, block-wise inside
//! OSCORE per RFC 7959) through which the dispatcher pushes a release.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | PUT | `suit/envelope` | the approved envelope | 2.04 |
//! | PUT | `suit/key` | the release key (COSE_Key) | 2.04 |
//! | PUT | `suit/blob` | the encrypted blob (Block1) | 2.04 + the install report (JSON), or 5.03 after a simulated power loss (the device rebooted; send again) |
//! | GET | `status` | | 2.05 + status (JSON) |
//! | POST | `suit/pull` | `{"release_id": "…"}` | 2.04: the device pulls that release from the dispatcher now, in the background (4.04 when the device has no uplink) |
//!
//! Every request must be protected with the device's OSCORE context; unprotected requests
//! get 4.01. The release key is deleted from the device's staging area after each attempt.
//! Faults for demos and tests are read once from `DIR/faults.json` (see [`FaultFile`]); a
//! slow or lossy link from `DIR/link.json` at start ([`crate::link`]).
//!
//! Pushed and pulled releases (see [`crate::uplink`]) go through the same install path and
//! the same device lock, so two installs never run at once: a push that arrives during an
//! install, and `GET status` meanwhile, get 5.03 (try again) instead of blocking the server.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use oscore::SecurityContext;
use oscore::lock::ContextLock;
use oscore::message::code;
use oscore::transport::{Handler, Reply, Request, Server, ServerConfig, ServerHandle};
use serde::Deserialize;

use fleet_proto::coap::{content_format, device as paths};
use fleet_proto::limits::{MAX_ENVELOPE, MAX_RELEASE_KEY};
use fleet_proto::push::PullNotice;

use crate::install::{Fault, FaultPlan, Report, Step};
use crate::{Device, DeviceDir, DeviceError, State};

/// `DIR/faults.json`: faults applied to the next install attempt, then the file is removed.
///
/// ```json
/// { "power_loss": { "step": "decrypt", "after_bytes": 4096 }, "self_test_fails": false, "corrupt_flash": false }
/// ```
///
/// The other fault, a slow or lossy link, is not per install: `DIR/link.json`
/// (`{"loss_percent": 0-50, "delay_ms": 0-2000, "seed": N}`, or `device-sim run --loss-percent
/// P --delay-ms D`) is read once when the device starts and puts the device behind a relay
/// that drops and delays datagrams in both directions (see [`crate::link`], [`crate::relay`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// Cut the power at a step.
    pub power_loss: Option<PowerLoss>,
    /// Fail the self-test after the switch.
    #[serde(default)]
    pub self_test_fails: bool,
    /// Flip a bit of the new slot after writing it.
    #[serde(default)]
    pub corrupt_flash: bool,
}

/// Where to cut the power.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerLoss {
    /// `download`, `decrypt`, `before-switch` or `before-confirm`.
    pub step: String,
    /// For download and decrypt: bytes that get through first.
    #[serde(default)]
    pub after_bytes: u64,
}

impl FaultFile {
    fn plan(&self) -> Result<FaultPlan, String> {
        let mut faults = Vec::new();
        if let Some(p) = &self.power_loss {
            let step = match p.step.as_str() {
                "download" => Step::Download,
                "decrypt" => Step::Decrypt,
                "before-switch" => Step::BeforeSwitch,
                "before-confirm" => Step::BeforeConfirm,
                s => return Err(format!("faults.json: unknown step {s:?}")),
            };
            faults.push(Fault::PowerLoss {
                step,
                after_bytes: p.after_bytes,
            });
        }
        if self.self_test_fails {
            faults.push(Fault::SelfTestFails);
        }
        if self.corrupt_flash {
            faults.push(Fault::CorruptFlash);
        }
        Ok(FaultPlan { faults })
    }
}

/// The CoAP resource handler of one device, and the device's single install path (shared
/// with the uplink's pulls).
#[derive(Debug)]
pub struct DeviceHandler {
    device: Mutex<Option<Device>>,
    dir: DeviceDir,
    staging: PathBuf,
    pull: PullSignal,
    push_freshness: Duration,
}

/// How recent the Echo value of a request that starts an install must be, by default.
/// Longer than a round trip with a few retransmissions on a slow link (a repeat that arrives
/// later costs one more challenge, not a failure); short enough that a block held back on the
/// path is useless long before an operator has aborted and walked away.
pub const DEFAULT_PUSH_FRESHNESS: Duration = Duration::from_secs(10);

/// `POST suit/pull` → the uplink task: the release last asked for, and a wake-up.
#[derive(Debug, Default)]
pub(crate) struct PullSignal {
    /// Set when an uplink task runs for this device.
    pub(crate) enabled: AtomicBool,
    /// The release asked for (a newer request replaces an older one not yet taken).
    pub(crate) wanted: Mutex<Option<String>>,
    /// Wakes the uplink task (a permit is kept when it is busy, so no request is lost).
    pub(crate) notify: tokio::sync::Notify,
}

/// Why an install attempt produced no report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// Another install holds the device (push and pull never run at once).
    #[error("an install is in progress; try again")]
    Busy,
    /// The device is down (a reboot after a simulated power loss failed).
    #[error("device is not running")]
    NotRunning,
    /// A simulated power loss: the device rebooted (boot recovery ran); send again.
    #[error("power loss at {0:?}; device rebooted")]
    PowerLoss(Step),
    /// `faults.json` does not parse.
    #[error("{0}")]
    Faults(String),
    /// Device I/O failed (or the reboot after a power loss did).
    #[error("install failed: {0}")]
    Device(#[source] DeviceError),
}

/// What a check-in tells the dispatcher about the device.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Running version.
    pub version: String,
    /// Anti-rollback counter.
    pub sequence: u64,
    /// Release id of the running image (None: factory image).
    pub release_id: Option<String>,
    /// The state.
    pub state: State,
}

/// A reply carrying a message of `fleet_proto`, encoded (and so checked) by it.
fn reply_encoded(c: u8, encoded: Result<Vec<u8>, fleet_proto::Error>) -> Reply {
    match encoded {
        Ok(body) => {
            let mut r = Reply::new(c, body);
            r.content_format = Some(content_format::JSON);
            r
        }
        Err(e) => {
            tracing::warn!("cannot encode a reply: {e}");
            text(code::INTERNAL_SERVER_ERROR, "cannot encode the reply")
        }
    }
}

fn text(c: u8, msg: &str) -> Reply {
    let mut r = Reply::new(c, msg.as_bytes().to_vec());
    r.content_format = Some(content_format::TEXT);
    r
}

impl DeviceHandler {
    /// Opens (boots) the device.
    pub fn new(dir: DeviceDir) -> Result<Self, DeviceError> {
        let device = Device::open(dir.clone())?;
        let staging = dir.root().join("incoming");
        std::fs::create_dir_all(&staging).map_err(DeviceError::io("cannot create", &staging))?;
        // A pull interrupted by a crash leaves its blob behind.
        let _ = std::fs::remove_file(staging.join(PULL_BLOB));
        Ok(Self {
            device: Mutex::new(Some(device)),
            dir,
            staging,
            pull: PullSignal::default(),
            push_freshness: DEFAULT_PUSH_FRESHNESS,
        })
    }

    /// Sets how recent the Echo value of a request that starts an install must be.
    pub fn with_push_freshness(mut self, max_age: Duration) -> Self {
        self.push_freshness = max_age;
        self
    }

    /// How recent the Echo value of a request that starts an install must be.
    pub fn push_freshness(&self) -> Duration {
        self.push_freshness
    }

    /// The device's directory.
    pub fn dir(&self) -> &DeviceDir {
        &self.dir
    }

    pub(crate) fn pull_signal(&self) -> &PullSignal {
        &self.pull
    }

    /// The staging file a pull streams the blob into.
    pub(crate) fn pull_blob_path(&self) -> PathBuf {
        self.staging.join(PULL_BLOB)
    }

    /// The running version, counter and state, or None while an install holds the device.
    pub fn summary(&self) -> Option<Summary> {
        let guard = self.device.try_lock().ok()?;
        let d = guard.as_ref()?;
        let state = d.state().clone();
        Some(Summary {
            version: d.version(),
            sequence: state.counter,
            release_id: state
                .running()
                .map(|s| s.release_id.clone())
                .filter(|id| id != "factory"),
            state,
        })
    }

    /// Installs a release if no other install runs (the push path: never waits, answers
    /// [`InstallError::Busy`] instead).
    pub fn try_install(
        &self,
        envelope: &[u8],
        key: &[u8],
        blob: &mut dyn Read,
    ) -> Result<Report, InstallError> {
        let guard = match self.device.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(InstallError::Busy),
            Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
        };
        self.install_locked(guard, envelope, key, blob)
    }

    /// Installs a release, waiting for a running install to finish first (the pull path;
    /// call it on a blocking thread, e.g. `tokio::task::spawn_blocking`).
    pub fn install_blocking(
        &self,
        envelope: &[u8],
        key: &[u8],
        blob: &mut dyn Read,
    ) -> Result<Report, InstallError> {
        let guard = self.device.lock().map_err(|_| poisoned())?;
        self.install_locked(guard, envelope, key, blob)
    }

    /// The one install path: faults for this attempt, `Device::install`, and the reboot after
    /// a simulated power loss.
    fn install_locked(
        &self,
        mut slot: MutexGuard<'_, Option<Device>>,
        envelope: &[u8],
        key: &[u8],
        blob: &mut dyn Read,
    ) -> Result<Report, InstallError> {
        let faults = self.faults().map_err(InstallError::Faults)?;
        let device = slot.as_mut().ok_or(InstallError::NotRunning)?;
        match device.install(envelope, key, blob, &faults) {
            Ok(report) => Ok(report),
            Err(DeviceError::PowerLoss(step)) => {
                // Simulated power loss: the device restarts (boot recovery) and is reachable
                // again.
                *slot = None;
                let d = Device::open(self.dir.clone()).map_err(InstallError::Device)?;
                *slot = Some(d);
                Err(InstallError::PowerLoss(step))
            }
            Err(e) => Err(InstallError::Device(e)),
        }
    }

    fn store(&self, name: &str, body: &[u8], secret: bool) -> Reply {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.staging.join(name);
        let tmp = self.staging.join(format!(".{name}.tmp"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(if secret { 0o600 } else { 0o644 });
        let ok = opts
            .open(&tmp)
            .and_then(|mut f| f.write_all(body).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        match ok {
            Ok(()) => Reply::new(code::CHANGED, Vec::new()),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot store: {e}");
                text(code::INTERNAL_SERVER_ERROR, "cannot store")
            }
        }
    }

    fn faults(&self) -> Result<FaultPlan, String> {
        let path = self.dir.root().join("faults.json");
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(FaultPlan::none());
        };
        let _ = std::fs::remove_file(&path);
        serde_json::from_slice::<FaultFile>(&bytes)
            .map_err(|e| format!("faults.json: {e}"))?
            .plan()
    }

    /// `PUT suit/blob`: install what was staged with the blob just received.
    fn install_pushed(&self, blob: &[u8]) -> Reply {
        let envelope = std::fs::read(self.staging.join("envelope.suit"));
        let key = std::fs::read(self.staging.join("release-key.cbor"));
        let (Ok(envelope), Ok(key)) = (envelope, key) else {
            return text(
                code::REQUEST_ENTITY_INCOMPLETE,
                "PUT suit/envelope and suit/key before suit/blob",
            );
        };
        let key = zeroize::Zeroizing::new(key);
        // The key is only needed for this attempt.
        let _ = std::fs::remove_file(self.staging.join("release-key.cbor"));
        match self.try_install(&envelope, &key, &mut &blob[..]) {
            Ok(report) => reply_encoded(code::CHANGED, report.encode()),
            // The dispatcher treats 5.03 as transient and sends again.
            Err(
                e @ (InstallError::Busy | InstallError::PowerLoss(_) | InstallError::NotRunning),
            ) => text(code::SERVICE_UNAVAILABLE, &e.to_string()),
            Err(InstallError::Faults(e)) => text(code::INTERNAL_SERVER_ERROR, &e),
            Err(e) => {
                tracing::warn!("install failed: {e}");
                text(
                    code::INTERNAL_SERVER_ERROR,
                    "install failed: device I/O error",
                )
            }
        }
    }

    /// `POST suit/pull`: hand the release id to the uplink task.
    fn request_pull(&self, body: &[u8]) -> Reply {
        if !self.pull.enabled.load(Ordering::Acquire) {
            return text(code::NOT_FOUND, "this device has no uplink configured");
        }
        let notice = match PullNotice::decode(body) {
            Ok(n) => n,
            Err(e) if e.is_too_large() => {
                return text(code::REQUEST_ENTITY_TOO_LARGE, "pull notice too large");
            }
            Err(e) => return text(code::BAD_REQUEST, &e.to_string()),
        };
        match self.pull.wanted.lock() {
            Ok(mut w) => *w = Some(notice.release_id),
            Err(_) => return text(code::INTERNAL_SERVER_ERROR, "lock poisoned"),
        }
        self.pull.notify.notify_one();
        Reply::new(code::CHANGED, Vec::new())
    }
}

fn poisoned() -> InstallError {
    InstallError::Device(DeviceError::Corrupt("device state lock poisoned".into()))
}

/// File name (in the staging directory) of a blob being pulled.
const PULL_BLOB: &str = "pull-blob.bin";

impl Handler for DeviceHandler {
    /// The requests that make the device act must be fresh (see the type's documentation).
    fn required_freshness(&self, method: u8, path: &str) -> Option<Duration> {
        match (method, path) {
            (code::PUT, "suit/blob") | (code::POST, "suit/pull") => Some(self.push_freshness),
            _ => None,
        }
    }

    fn handle(&self, req: &Request) -> Reply {
        match (req.method, req.path.as_str()) {
            (code::PUT, paths::ENVELOPE) if req.payload.len() <= MAX_ENVELOPE => {
                self.store("envelope.suit", &req.payload, false)
            }
            (code::PUT, paths::ENVELOPE) => {
                text(code::REQUEST_ENTITY_TOO_LARGE, "envelope larger than 1 MiB")
            }
            (code::PUT, paths::KEY) if req.payload.len() <= MAX_RELEASE_KEY => {
                self.store("release-key.cbor", &req.payload, true)
            }
            (code::PUT, paths::KEY) => text(code::REQUEST_ENTITY_TOO_LARGE, "key too large"),
            (code::PUT, paths::BLOB) => self.install_pushed(&req.payload),
            (code::POST, paths::PULL) => self.request_pull(&req.payload),
            // try_lock: an install holds the lock for seconds; the server must not block.
            (code::GET, paths::STATUS) => match self.device.try_lock() {
                Ok(d) => match d.as_ref() {
                    Some(d) => reply_encoded(code::CONTENT, crate::status(d).encode()),
                    None => text(code::SERVICE_UNAVAILABLE, "device is not running"),
                },
                Err(TryLockError::WouldBlock) => text(
                    code::SERVICE_UNAVAILABLE,
                    "an install is in progress; try again",
                ),
                Err(TryLockError::Poisoned(_)) => {
                    text(code::INTERNAL_SERVER_ERROR, "lock poisoned")
                }
            },
            (_, paths::ENVELOPE | paths::KEY | paths::BLOB | paths::STATUS | paths::PULL) => {
                text(code::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => text(code::NOT_FOUND, "no such resource"),
        }
    }
}

/// The device's OSCORE context from `DIR/oscore.json`, with its sender sequence number
/// persisted beside it (`oscore.json.seq`, RFC 8613 Appendix B.1.1), opened under `lock` (the
/// device directory's or the fleet's tree lock).
pub fn security_context(
    lock: &Arc<ContextLock>,
    dir: &Path,
) -> Result<SecurityContext, DeviceError> {
    oscore::ctxfile::open_in(lock, &dir.join("oscore.json")).map_err(DeviceError::Context)
}

/// Locks a device directory (`DIR/.oscore.lock`): its contexts and state are used by one
/// process at a time.
pub fn lock_device(dir: &Path) -> Result<Arc<ContextLock>, DeviceError> {
    ContextLock::tree(dir).map_err(DeviceError::Context)
}

/// Server settings for one simulated device: small bounds so thousands fit in a process.
pub fn device_server_config(max_blob: usize) -> ServerConfig {
    ServerConfig {
        max_body: max_blob,
        max_uploads: 2,
        max_buffered: 2 * max_blob,
        workers: 1,
        ..ServerConfig::default()
    }
}

/// Starts a device's CoAP server on `listen` (use port 0 for any free port). Without the
/// uplink; [`crate::uplink::start_device`] runs both.
pub async fn start(
    dir: &Path,
    listen: SocketAddr,
    max_blob: usize,
) -> Result<ServerHandle, DeviceError> {
    let lock = lock_device(dir)?;
    let handler = Arc::new(DeviceHandler::new(DeviceDir::new(dir))?);
    start_with(handler, &lock, dir, listen, max_blob).await
}

/// Starts the CoAP server of `handler` (the device in `dir`) on `listen`, its context opened
/// under `lock`.
pub async fn start_with(
    handler: Arc<DeviceHandler>,
    lock: &Arc<ContextLock>,
    dir: &Path,
    listen: SocketAddr,
    max_blob: usize,
) -> Result<ServerHandle, DeviceError> {
    let ctx = security_context(lock, dir)?;
    let sock = oscore::transport::bind_udp(listen, 1 << 20)
        .map_err(DeviceError::io("cannot bind", dir))?;
    Server::new(sock, vec![ctx], handler, device_server_config(max_blob))
        .spawn()
        .map_err(|e| DeviceError::Corrupt(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::{Identity, Trust};

    fn device(dir: &Path) -> DeviceHandler {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let maker = suit::SigningKey::generate(&mut rng);
        let trust = Trust::from_keys(
            uuid::Uuid::from_u128(1),
            &[(
                suit::Role::Manufacturer,
                "maker",
                &maker.public_key().to_pem(),
            )],
            false,
        );
        let identity = Identity {
            name: "t".into(),
            vendor_id: uuid::Uuid::from_u128(1),
            class_id: uuid::Uuid::from_u128(2),
            device_id: uuid::Uuid::from_u128(3),
        };
        Device::provision(DeviceDir::new(dir), identity, trust, b"factory", "1.0.0").unwrap();
        DeviceHandler::new(DeviceDir::new(dir)).unwrap()
    }

    fn req(method: u8, path: &str, payload: &[u8]) -> Request {
        Request {
            method,
            path: path.into(),
            payload: payload.to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
            kid: Some(vec![0]),
            message: oscore::coap_lite::Packet::new(),
            echo_age: None,
        }
    }

    /// A pull holds the device lock while it installs; a push (and `GET status`) arriving
    /// meanwhile gets 5.03 instead of installing concurrently or blocking the server.
    #[test]
    fn push_during_another_install_gets_5_03() {
        let tmp = tempfile::tempdir().unwrap();
        let h = device(tmp.path());
        for (path, body) in [("suit/envelope", &b"env"[..]), ("suit/key", b"key")] {
            assert_eq!(h.handle(&req(code::PUT, path, body)).code, code::CHANGED);
        }
        {
            let _installing = h.device.lock().unwrap();
            let r = h.handle(&req(code::PUT, "suit/blob", b"blob"));
            assert_eq!(r.code, code::SERVICE_UNAVAILABLE);
            assert!(String::from_utf8_lossy(&r.payload).contains("in progress"));
            assert_eq!(
                h.handle(&req(code::GET, "status", b"")).code,
                code::SERVICE_UNAVAILABLE
            );
            assert!(h.summary().is_none());
        }
        assert_eq!(h.handle(&req(code::GET, "status", b"")).code, code::CONTENT);
        assert_eq!(h.summary().unwrap().version, "1.0.0");
        assert_eq!(h.summary().unwrap().release_id, None, "factory image");
    }

    #[test]
    fn suit_pull_needs_an_uplink_and_a_release_id() {
        let tmp = tempfile::tempdir().unwrap();
        let h = device(tmp.path());
        let id = "ab".repeat(32);
        let body = format!("{{\"release_id\": \"{id}\"}}");
        assert_eq!(
            h.handle(&req(code::POST, "suit/pull", body.as_bytes()))
                .code,
            code::NOT_FOUND
        );
        h.pull.enabled.store(true, Ordering::Release);
        for bad in [
            &b"{\"release_id\": \"../x\"}"[..],
            b"{\"release_id\": 1}",
            b"not json",
            format!("{{\"release_id\": \"{id}\", \"device\": 1}}").as_bytes(),
        ] {
            assert_eq!(
                h.handle(&req(code::POST, "suit/pull", bad)).code,
                code::BAD_REQUEST
            );
        }
        assert_eq!(h.pull.wanted.lock().unwrap().as_deref(), None);
        assert_eq!(
            h.handle(&req(code::GET, "suit/pull", b"")).code,
            code::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            h.handle(&req(code::POST, "suit/pull", body.as_bytes()))
                .code,
            code::CHANGED
        );
        assert_eq!(h.pull.wanted.lock().unwrap().as_deref(), Some(id.as_str()));
    }
}
