//! The device's CoAP front end: an OSCORE-protected CoAP server (RFC 8613, block-wise inside
//! OSCORE per RFC 7959) through which the dispatcher pushes a release.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | PUT | `suit/envelope` | the approved envelope | 2.04 |
//! | PUT | `suit/key` | the release key (COSE_Key) | 2.04 |
//! | PUT | `suit/blob` | the encrypted blob (Block1) | 2.04 + the install report (JSON), or 5.03 after a simulated power loss (the device rebooted; send again) |
//! | GET | `status` | | 2.05 + status (JSON) |
//!
//! Every request must be protected with the device's OSCORE context; unprotected requests
//! get 4.01. The release key is deleted from the device's staging area after each attempt.
//! Faults for demos and tests are read once from `DIR/faults.json` (see [`FaultFile`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oscore::message::code;
use oscore::transport::{Handler, Reply, Request, Server, ServerConfig, ServerHandle};
use oscore::{FileSeqStore, SecurityContext};
use serde::Deserialize;

use crate::install::{Fault, FaultPlan, Step};
use crate::{Device, DeviceDir, DeviceError};

/// `DIR/faults.json`: faults applied to the next install attempt, then the file is removed.
///
/// ```json
/// { "power_loss": { "step": "decrypt", "after_bytes": 4096 }, "self_test_fails": false, "corrupt_flash": false }
/// ```
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

/// The CoAP resource handler of one device.
#[derive(Debug)]
pub struct DeviceHandler {
    device: Mutex<Option<Device>>,
    dir: DeviceDir,
    staging: PathBuf,
}

/// Largest envelope accepted (the `suit` decoder's default limit).
const MAX_ENVELOPE: usize = 1 << 20;

fn reply_json(c: u8, value: &impl serde::Serialize) -> Reply {
    let mut r = Reply::new(c, serde_json::to_vec(value).unwrap_or_default());
    r.content_format = Some(50); // application/json
    r
}

fn text(c: u8, msg: &str) -> Reply {
    let mut r = Reply::new(c, msg.as_bytes().to_vec());
    r.content_format = Some(0);
    r
}

impl DeviceHandler {
    /// Opens (boots) the device.
    pub fn new(dir: DeviceDir) -> Result<Self, DeviceError> {
        let device = Device::open(dir.clone())?;
        let staging = dir.root().join("incoming");
        std::fs::create_dir_all(&staging).map_err(|source| DeviceError::Io {
            what: "cannot create",
            path: staging.clone(),
            source,
        })?;
        Ok(Self {
            device: Mutex::new(Some(device)),
            dir,
            staging,
        })
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

    fn install(&self, blob: &[u8]) -> Reply {
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
        let faults = match self.faults() {
            Ok(f) => f,
            Err(e) => return text(code::INTERNAL_SERVER_ERROR, &e),
        };
        let Ok(mut slot) = self.device.lock() else {
            return text(code::INTERNAL_SERVER_ERROR, "device state lock poisoned");
        };
        let Some(device) = slot.as_mut() else {
            return text(code::SERVICE_UNAVAILABLE, "device is not running");
        };
        match device.install(&envelope, &key, &mut &blob[..], &faults) {
            Ok(report) => reply_json(code::CHANGED, &report),
            Err(DeviceError::PowerLoss(step)) => {
                // Simulated power loss: the device restarts (boot recovery) and is reachable
                // again; the dispatcher treats 5.03 as transient and sends again.
                *slot = None;
                match Device::open(self.dir.clone()) {
                    Ok(d) => {
                        *slot = Some(d);
                        text(
                            code::SERVICE_UNAVAILABLE,
                            &format!("power loss at {step:?}; device rebooted"),
                        )
                    }
                    Err(e) => text(code::INTERNAL_SERVER_ERROR, &format!("reboot failed: {e}")),
                }
            }
            Err(e) => {
                tracing::warn!("install failed: {e}");
                text(
                    code::INTERNAL_SERVER_ERROR,
                    "install failed: device I/O error",
                )
            }
        }
    }
}

impl Handler for DeviceHandler {
    fn handle(&self, req: &Request) -> Reply {
        match (req.method, req.path.as_str()) {
            (code::PUT, "suit/envelope") if req.payload.len() <= MAX_ENVELOPE => {
                self.store("envelope.suit", &req.payload, false)
            }
            (code::PUT, "suit/envelope") => {
                text(code::REQUEST_ENTITY_TOO_LARGE, "envelope larger than 1 MiB")
            }
            (code::PUT, "suit/key") if req.payload.len() <= 1024 => {
                self.store("release-key.cbor", &req.payload, true)
            }
            (code::PUT, "suit/key") => text(code::REQUEST_ENTITY_TOO_LARGE, "key too large"),
            (code::PUT, "suit/blob") => self.install(&req.payload),
            (code::GET, "status") => match self.device.lock() {
                Ok(d) => match d.as_ref() {
                    Some(d) => reply_json(code::CONTENT, &crate::status(d)),
                    None => text(code::SERVICE_UNAVAILABLE, "device is not running"),
                },
                Err(_) => text(code::INTERNAL_SERVER_ERROR, "lock poisoned"),
            },
            (_, "suit/envelope" | "suit/key" | "suit/blob" | "status") => {
                text(code::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => text(code::NOT_FOUND, "no such resource"),
        }
    }
}

/// The device's OSCORE context from `DIR/oscore.json`, with its sender sequence number
/// persisted beside it (`oscore.json.seq`, RFC 8613 Appendix B.1.1).
pub fn security_context(dir: &Path) -> Result<SecurityContext, DeviceError> {
    let file = dir.join("oscore.json");
    let params =
        oscore::ctxfile::load_params(&file).map_err(|e| DeviceError::Corrupt(e.to_string()))?;
    SecurityContext::new(
        &params,
        Box::new(FileSeqStore::new(dir.join("oscore.json.seq"))),
    )
    .map_err(|e| DeviceError::Corrupt(e.to_string()))
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

/// Starts a device's CoAP server on `listen` (use port 0 for any free port).
pub async fn start(
    dir: &Path,
    listen: SocketAddr,
    max_blob: usize,
) -> Result<ServerHandle, DeviceError> {
    let handler = Arc::new(DeviceHandler::new(DeviceDir::new(dir))?);
    let ctx = security_context(dir)?;
    let sock = oscore::transport::bind_udp(listen, 1 << 20).map_err(|source| DeviceError::Io {
        what: "cannot bind",
        path: dir.to_owned(),
        source,
    })?;
    Server::new(sock, vec![ctx], handler, device_server_config(max_blob))
        .spawn()
        .map_err(|e| DeviceError::Corrupt(e.to_string()))
}
