//! Simulated constrained ICS devices (PLCs, RTUs, sensors) that install updates the way a
//! well-built device must: verify both signatures, check the conditions, decrypt streaming
//! into the inactive slot, check the plaintext digest, switch, self-test, confirm or revert.
//! The anti-rollback counter moves only after confirmation, and a power loss at any step
//! leaves a bootable device.
//!
//! This module is transport-independent: [`Device::install`] takes the envelope, the
//! release key and a reader over the blob. The CoAP + OSCORE front end feeds it.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cli;
pub mod coap;
pub mod install;
pub mod link;
pub mod relay;
pub mod state;
pub mod uplink;

use std::path::PathBuf;

pub use install::{Device, Fault, FaultPlan, InstallOutcome, Report, Step};
pub use state::{DeviceDir, Identity, Phase, Slot, SlotImage, State, Trust};

/// Device errors that are not install outcomes: I/O and corrupt state files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// Which file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A state or provisioning file does not parse.
    #[error("corrupt device state: {0}")]
    Corrupt(String),
    /// A simulated power loss at the named step (fault injection).
    #[error("simulated power loss at {0:?}")]
    PowerLoss(Step),
    /// Neither slot holds a valid image. Must never happen; tests assert it does not.
    #[error("no bootable image")]
    Bricked,
    /// The link fault (`DIR/link.json` or the command-line options) is invalid.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// An OSCORE security context cannot be created or opened: missing or invalid file,
    /// sequence state missing, or in use by another process (`oscore::Error::ContextLocked`).
    #[error("OSCORE security context: {0}")]
    Context(#[source] oscore::Error),
}

impl DeviceError {
    /// An I/O error on `path` while doing `what`, for `map_err`.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> DeviceError + use<> {
        let path = path.to_owned();
        move |source| DeviceError::Io { what, path, source }
    }
}

/// Provisions a device directory from a bundle: identity, trust anchors, the OSCORE context
/// (`oscore.json`, mode 0600) and the uplink context when the bundle has one (`uplink.json`,
/// mode 0600), each created with its persistent sequence state beside it (`*.seq`, RFC 8613
/// Appendix B.1.1: written now, not at the first graceful stop, so a device that loses power
/// at any time restarts above every sequence number it used and with a replay window it
/// must re-establish by Echo), and the dispatcher's address (`network.json`), with
/// `factory_image` in slot A.
pub fn provision_from_bundle(
    dir: DeviceDir,
    b: &bundle::Bundle,
    factory_image: &[u8],
) -> Result<Device, DeviceError> {
    b.validate()
        .map_err(|e| DeviceError::Corrupt(e.to_string()))?;
    bundle::check_keys(b)?;
    std::fs::create_dir_all(dir.root()).map_err(DeviceError::io("cannot create", dir.root()))?;
    create_context(&dir.root().join("oscore.json"), "oscore", &b.oscore)?;
    if let Some(u) = &b.uplink {
        create_context(&dir.root().join(uplink::UPLINK_FILE), "uplink", u)?;
    }
    dir.write_json(
        "network.json",
        &serde_json::json!({ "dispatcher": b.dispatcher }),
    )?;
    Device::provision(
        dir,
        b.identity.clone(),
        b.trust.clone(),
        factory_image,
        &b.factory_version,
    )
}

/// Writes one context of a bundle with `oscore::ctxfile::create` (refuses to replace one).
fn create_context(
    path: &std::path::Path,
    name: &str,
    p: &bundle::OscoreParams,
) -> Result<(), DeviceError> {
    let h = |field: &str, v: &str| {
        hex::decode(v).map_err(|_| DeviceError::Corrupt(format!("{name}.{field}: not hex")))
    };
    let params = oscore::ContextParams {
        master_secret: p.master_secret_hex.to_bytes(),
        master_salt: match &p.master_salt_hex {
            Some(v) => h("master_salt_hex", v)?,
            None => Vec::new(),
        },
        id_context: p
            .id_context_hex
            .as_deref()
            .map(|v| h("id_context_hex", v))
            .transpose()?,
        sender_id: h("sender_id_hex", &p.sender_id_hex)?,
        recipient_id: h("recipient_id_hex", &p.recipient_id_hex)?,
    };
    oscore::ctxfile::create(path, &params).map_err(DeviceError::Context)
}

/// What `device-sim status` shows and `GET status` answers (`fleet_proto::push::Status`).
pub use fleet_proto::push::Status;

/// The status of a device: its last events of the install log (at most 10), fewer when
/// they would not fit the status message's size limit.
pub fn status(d: &Device) -> Status {
    let log = d.dir().read_log();
    let mut start = log.len().saturating_sub(10);
    loop {
        let s = Status {
            identity: d.identity().clone(),
            version: d.version(),
            state: d.state().clone(),
            recent_events: log[start..]
                .iter()
                .filter(|e| e.is_object())
                .cloned()
                .collect(),
        };
        if start == log.len() || s.encode().is_ok() {
            return s;
        }
        start += 1;
    }
}

/// Human-readable status.
pub fn status_text(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let slot = |i: Option<&SlotImage>| {
        i.map(|i| {
            format!(
                "{} (sequence {}, {} bytes, {})",
                i.version,
                i.sequence,
                i.size,
                &i.release_id[..i.release_id.len().min(16)]
            )
        })
        .unwrap_or_else(|| "empty".into())
    };
    let _ = writeln!(
        out,
        "device      {} ({})",
        s.identity.name, s.identity.device_id
    );
    let _ = writeln!(out, "vendor      {}", s.identity.vendor_id);
    let _ = writeln!(out, "class       {}", s.identity.class_id);
    let _ = writeln!(
        out,
        "running     {} from slot {:?}",
        s.version, s.state.active
    );
    let _ = writeln!(out, "slot A      {}", slot(s.state.a.as_ref()));
    let _ = writeln!(out, "slot B      {}", slot(s.state.b.as_ref()));
    let _ = writeln!(
        out,
        "counter     {} (anti-rollback: last confirmed sequence number)",
        s.state.counter
    );
    let _ = writeln!(out, "boots       {}", s.state.boots);
    for e in &s.recent_events {
        let _ = writeln!(out, "event       {e}");
    }
    out
}
