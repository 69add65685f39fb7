//! The device → dispatcher direction over CoAP + OSCORE (`docs/transport.md`, "Device
//! uplink"): devices check in, pull the envelope, release key and blob of a release offered
//! to them (Block2), and report the outcome of the install.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `d/checkin` | [`CheckIn`] (JSON, ≤ 8 KiB) | 2.04 + [`CheckInReply`] |
//! | GET | `d/releases/{release_id}/envelope` | | 2.05 + the approved envelope (Block2) |
//! | GET | `d/releases/{release_id}/key` | | 2.05 + the release key, COSE_Key |
//! | GET | `d/releases/{release_id}/blob` | | 2.05 + the encrypted blob (Block2) |
//! | POST | `d/report` | [`DeviceReport`] (JSON, ≤ 8 KiB) | 2.04 |
//!
//! Every request is OSCORE-protected with the device's *uplink* context (separate from the
//! push context). The device is identified by the kid that verified the request, never by
//! anything in the body: the bodies carry no device identity, and unknown fields are refused.
//! Errors of the [`DeviceBackend`] map to CoAP codes in one place, [`UplinkError::coap`].
//!
//! The wire types are defined twice, here (the dispatcher's view) and in
//! `device_sim::uplink` (the device's view), so that the dispatcher, a production service,
//! does not depend on the simulator. `device-sim/tests/uplink.rs` round-trips every type
//! between the two views and runs a real device against [`UplinkHandler`], so they cannot
//! drift apart unnoticed.

use std::net::SocketAddr;
use std::sync::Arc;

use oscore::SecurityContext;
use oscore::message::code;
use oscore::transport::{ContextSet, Handler, Reply, Request, Server, ServerConfig, ServerHandle};
use serde::{Deserialize, Serialize};

/// Largest check-in body accepted.
pub const MAX_CHECKIN_BODY: usize = 8 << 10;
/// Largest report body accepted.
pub const MAX_REPORT_BODY: usize = 8 << 10;
/// Longest version, check or similar short text field.
const MAX_SHORT_TEXT: usize = 64;
/// Longest report message.
const MAX_MESSAGE: usize = 2048;

/// CoAP Content-Format numbers (RFC 7252 §12.3, RFC 9052 §11).
mod content_format {
    pub(super) const TEXT: u32 = 0;
    pub(super) const OCTET_STREAM: u32 = 42;
    pub(super) const JSON: u32 = 50;
    pub(super) const COSE_KEY: u32 = 101;
}

/// `POST d/checkin`: what a device tells the dispatcher about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// UDP port of the device's own CoAP server; the dispatcher combines it with the
    /// request's source address to push to the device.
    pub coap_port: u16,
    /// Running version (`X.Y.Z`).
    pub version: String,
    /// Anti-rollback counter: the manifest sequence number of the last confirmed install.
    pub sequence: u64,
    /// Release id of the running image (None: the factory image).
    #[serde(default)]
    pub release_id: Option<String>,
    /// The device's state summary (`state.json`: slots, counter, pending install, boots).
    pub state: serde_json::Value,
    /// Number of boots.
    pub boots: u64,
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInReply {
    /// Seconds until the next check-in (the device adds jitter).
    pub next_checkin_s: u32,
    /// A release the device should pull and install now, if any.
    #[serde(default)]
    pub pending: Option<Pending>,
}

/// A release offered to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// Release id (hex SHA-256 of the manifest bstr).
    pub release_id: String,
    /// Size of the approved envelope in bytes.
    pub envelope_size: u64,
    /// Size of the encrypted blob in bytes.
    pub blob_size: u64,
}

/// How an install ended, as the device reports it (`device_sim::InstallOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportOutcome {
    /// Installed, switched, self-tested and confirmed.
    Installed,
    /// Refused by a security or applicability check.
    Rejected,
    /// Switched, failed its self-test, reverted.
    Reverted,
}

/// `POST d/report`: the device's install report (`device_sim::Report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    /// Release id, when the envelope could be decoded.
    pub release_id: Option<String>,
    /// Outcome.
    pub outcome: ReportOutcome,
    /// The failed check (`suit::Error::code`, or a device-level code such as `too-large`).
    pub check: Option<String>,
    /// Human-readable detail.
    pub message: String,
    /// Running version before the attempt.
    pub version_before: String,
    /// Running version after the attempt.
    pub version_after: String,
}

/// `POST suit/pull` on the *device*: the dispatcher asks the device to pull a release now
/// (the device answers 2.04 and pulls in the background through this module's resources).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullNotice {
    /// The release to pull.
    pub release_id: String,
}

/// One artifact of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// The envelope with the dispatcher's approval signature.
    Envelope,
    /// The release key (COSE_Key bytes).
    Key,
    /// The encrypted blob.
    Blob,
}

impl Artifact {
    fn from_segment(s: &str) -> Option<Self> {
        match s {
            "envelope" => Some(Artifact::Envelope),
            "key" => Some(Artifact::Key),
            "blob" => Some(Artifact::Blob),
            _ => None,
        }
    }

    fn content_format(self) -> u32 {
        match self {
            Artifact::Key => content_format::COSE_KEY,
            Artifact::Envelope | Artifact::Blob => content_format::OCTET_STREAM,
        }
    }
}

/// Why the dispatcher refuses an uplink request. Mapped to CoAP codes in [`UplinkError::coap`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UplinkError {
    /// The kid is not (or no longer) an enrolled device. 4.01.
    #[error("unknown device")]
    UnknownDevice,
    /// The release exists but is not offered to this device. 4.03.
    #[error("release not offered to this device")]
    NotOffered,
    /// No such release or resource. 4.04.
    #[error("not found")]
    NotFound,
    /// The request is malformed or fails validation; the text goes back to the device. 4.00.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A dispatcher fault; the text is logged, the device sees only "internal error". 5.00.
    #[error("internal error: {0}")]
    Internal(String),
}

impl UplinkError {
    /// The CoAP code and the diagnostic text sent to the device. The one place where uplink
    /// errors become wire codes.
    pub fn coap(&self) -> (u8, String) {
        match self {
            UplinkError::UnknownDevice => (code::UNAUTHORIZED, "unknown device".into()),
            UplinkError::NotOffered => {
                (code::FORBIDDEN, "release not offered to this device".into())
            }
            UplinkError::NotFound => (code::NOT_FOUND, "not found".into()),
            UplinkError::Invalid(m) => (code::BAD_REQUEST, m.chars().take(200).collect()),
            UplinkError::Internal(_) => (code::INTERNAL_SERVER_ERROR, "internal error".into()),
        }
    }
}

/// What the dispatcher's service provides behind the uplink resources. Called from the CoAP
/// server's worker tasks: every method must return quickly (no blocking I/O on a slow path).
pub trait DeviceBackend: Send + Sync + 'static {
    /// A device checked in. `kid`: the OSCORE kid that verified the request (the device's
    /// uplink sender id); `peer`: its source address.
    fn checkin(
        &self,
        kid: &[u8],
        peer: SocketAddr,
        c: CheckIn,
    ) -> Result<CheckInReply, UplinkError>;
    /// Bytes of one artifact of a release offered to this device. Called once per Block2
    /// block: must be cheap (return a shared Arc).
    fn artifact(
        &self,
        kid: &[u8],
        release_id: &str,
        which: Artifact,
    ) -> Result<Arc<Vec<u8>>, UplinkError>;
    /// The device's install report.
    fn report(&self, kid: &[u8], r: DeviceReport) -> Result<(), UplinkError>;
}

/// A release id: 64 lowercase hex digits (SHA-256 of the manifest bstr).
pub fn valid_release_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn short_text(name: &str, v: &str, max: usize) -> Result<(), UplinkError> {
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(UplinkError::Invalid(format!(
            "{name}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

fn release_id_field(name: &str, v: Option<&str>) -> Result<(), UplinkError> {
    match v {
        Some(id) if !valid_release_id(id) => Err(UplinkError::Invalid(format!(
            "{name}: not a release id (64 lowercase hex digits)"
        ))),
        _ => Ok(()),
    }
}

impl CheckIn {
    /// Checks what JSON typing cannot.
    pub fn validate(&self) -> Result<(), UplinkError> {
        if self.coap_port == 0 {
            return Err(UplinkError::Invalid("coap_port: must not be 0".into()));
        }
        if self.version.is_empty() {
            return Err(UplinkError::Invalid("version: empty".into()));
        }
        short_text("version", &self.version, MAX_SHORT_TEXT)?;
        release_id_field("release_id", self.release_id.as_deref())?;
        if !self.state.is_object() {
            return Err(UplinkError::Invalid("state: must be a JSON object".into()));
        }
        Ok(())
    }
}

impl DeviceReport {
    /// Checks what JSON typing cannot.
    pub fn validate(&self) -> Result<(), UplinkError> {
        release_id_field("release_id", self.release_id.as_deref())?;
        if let Some(c) = &self.check {
            short_text("check", c, MAX_SHORT_TEXT)?;
        }
        if self.message.chars().count() > MAX_MESSAGE {
            return Err(UplinkError::Invalid(format!(
                "message: at most {MAX_MESSAGE} characters"
            )));
        }
        short_text("version_before", &self.version_before, MAX_SHORT_TEXT)?;
        short_text("version_after", &self.version_after, MAX_SHORT_TEXT)?;
        Ok(())
    }
}

/// The CoAP resources of the uplink, over a [`DeviceBackend`].
pub struct UplinkHandler<B: DeviceBackend> {
    backend: Arc<B>,
}

impl<B: DeviceBackend> std::fmt::Debug for UplinkHandler<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkHandler").finish_non_exhaustive()
    }
}

fn text(c: u8, msg: &str) -> Reply {
    let mut r = Reply::new(c, msg.as_bytes().to_vec());
    r.content_format = Some(content_format::TEXT);
    r
}

fn error_reply(kid: &[u8], e: &UplinkError) -> Reply {
    if let UplinkError::Internal(detail) = e {
        tracing::warn!(kid = %hex::encode(kid), "uplink request failed: {detail}");
    } else {
        tracing::debug!(kid = %hex::encode(kid), "uplink request refused: {e}");
    }
    let (c, msg) = e.coap();
    text(c, &msg)
}

fn json_reply(c: u8, value: &impl Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = Reply::new(c, body);
            r.content_format = Some(content_format::JSON);
            r
        }
        Err(_) => text(code::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// Decodes a bounded JSON body. The serde message is not echoed (it may quote input); only
/// its category and position are.
fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &[u8], max: usize) -> Result<T, Reply> {
    if body.len() > max {
        return Err(text(
            code::REQUEST_ENTITY_TOO_LARGE,
            &format!("{what} larger than {max} bytes"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => "missing or unknown field, or wrong type",
            serde_json::error::Category::Eof => "truncated",
            _ => "syntax error",
        };
        text(
            code::BAD_REQUEST,
            &format!(
                "malformed {what}: {kind} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
}

impl<B: DeviceBackend> UplinkHandler<B> {
    /// A handler over `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        UplinkHandler { backend }
    }

    fn checkin(&self, kid: &[u8], req: &Request) -> Reply {
        let c: CheckIn = match parse("check-in", &req.payload, MAX_CHECKIN_BODY) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let result = c
            .validate()
            .and_then(|()| self.backend.checkin(kid, req.peer, c));
        match result {
            Ok(reply) => json_reply(code::CHANGED, &reply),
            Err(e) => error_reply(kid, &e),
        }
    }

    fn report(&self, kid: &[u8], req: &Request) -> Reply {
        let r: DeviceReport = match parse("report", &req.payload, MAX_REPORT_BODY) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        match r.validate().and_then(|()| self.backend.report(kid, r)) {
            Ok(()) => Reply::new(code::CHANGED, Vec::new()),
            Err(e) => error_reply(kid, &e),
        }
    }

    fn artifact(&self, kid: &[u8], release_id: &str, which: Artifact) -> Reply {
        if !valid_release_id(release_id) {
            return text(
                code::BAD_REQUEST,
                "not a release id (64 lowercase hex digits)",
            );
        }
        match self.backend.artifact(kid, release_id, which) {
            Ok(bytes) => Reply {
                code: code::CONTENT,
                payload: bytes,
                content_format: Some(which.content_format()),
                options: Vec::new(),
            },
            Err(e) => error_reply(kid, &e),
        }
    }
}

impl<B: DeviceBackend> Handler for UplinkHandler<B> {
    fn handle(&self, req: &Request) -> Reply {
        // The server refuses unprotected requests before they get here; a request without a
        // verifying kid is never attributed to a device.
        let Some(kid) = req.kid.as_deref() else {
            return text(code::UNAUTHORIZED, "OSCORE required");
        };
        let segments: Vec<&str> = req.path.split('/').collect();
        match segments.as_slice() {
            ["d", "checkin"] if req.method == code::POST => self.checkin(kid, req),
            ["d", "report"] if req.method == code::POST => self.report(kid, req),
            ["d", "checkin" | "report"] => text(code::METHOD_NOT_ALLOWED, "use POST"),
            ["d", "releases", id, which] => match Artifact::from_segment(which) {
                Some(a) if req.method == code::GET => self.artifact(kid, id, a),
                Some(_) => text(code::METHOD_NOT_ALLOWED, "use GET"),
                None => text(code::NOT_FOUND, "no such resource"),
            },
            _ => text(code::NOT_FOUND, "no such resource"),
        }
    }
}

/// Server settings of the uplink: request bodies are small (check-ins and reports); the
/// large artifacts go out with Block2.
pub fn uplink_server_config() -> ServerConfig {
    let max_body = MAX_CHECKIN_BODY.max(MAX_REPORT_BODY);
    ServerConfig {
        max_body,
        max_buffered: 1024 * max_body,
        ..ServerConfig::default()
    }
}

/// Binds `listen` and serves the uplink resources over `backend`, with `contexts` (the
/// dispatcher's side of each enrolled device's uplink context). Every request must be
/// OSCORE-protected, even while no device is enrolled. Devices enrolled later are added with
/// the returned [`ContextSet`] (also available as [`ServerHandle::contexts`]); `stop` on the
/// handle flushes every context's sequence number.
pub async fn start_uplink<B: DeviceBackend>(
    listen: SocketAddr,
    backend: Arc<B>,
    contexts: Vec<SecurityContext>,
) -> Result<(ServerHandle, ContextSet), oscore::Error> {
    let set = ContextSet::from_contexts(contexts)?;
    let sock = oscore::transport::bind_udp(listen, oscore::transport::SERVER_SOCKET_BUFFER)?;
    let handler = Arc::new(UplinkHandler::new(backend));
    let handle =
        Server::new_protected(sock, set.clone(), handler, uplink_server_config()).spawn()?;
    Ok((handle, set))
}

#[cfg(test)]
mod tests;
