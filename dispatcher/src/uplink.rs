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
//! The messages, paths and Content-Formats are `fleet_proto`'s, shared with the devices and
//! decoded by its one strict decoder; this module re-exports them under the names the
//! dispatcher has used. `device-sim/tests/uplink.rs` runs a real device against
//! [`UplinkHandler`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_proto::coap::{UplinkResource, content_format};
use oscore::SecurityContext;
use oscore::message::code;
use oscore::transport::{ContextSet, Handler, Reply, Request, Server, ServerConfig, ServerHandle};

pub use fleet_proto::coap::Artifact;
pub use fleet_proto::push::PullNotice;
/// How an install ended (`fleet_proto::uplink::InstallOutcome`).
pub use fleet_proto::uplink::InstallOutcome as ReportOutcome;
/// The install report (`fleet_proto::uplink::Report`).
pub use fleet_proto::uplink::Report as DeviceReport;
pub use fleet_proto::uplink::{CheckIn, CheckInReply, Pending};
pub use fleet_proto::valid_release_id;

/// Largest check-in body accepted.
pub const MAX_CHECKIN_BODY: usize = fleet_proto::limits::MAX_CHECKIN;
/// Largest report body accepted.
pub const MAX_REPORT_BODY: usize = fleet_proto::limits::MAX_REPORT;

/// A device's report as the dispatcher stores it (its clock sets `received_at`).
pub fn stored_report(r: &DeviceReport) -> crate::store::DeviceReport {
    crate::store::DeviceReport {
        release_id: r.release_id.clone(),
        outcome: r.outcome.as_str().into(),
        check: r.check.clone(),
        message: r.message.clone(),
        version_before: r.version_before.clone(),
        version_after: r.version_after.clone(),
        received_at: None,
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
    /// The body does not decode (`fleet_proto`); its text goes back to the device. 4.13 when
    /// it is too large, 4.00 otherwise.
    #[error("{0}")]
    Malformed(#[from] fleet_proto::Error),
    /// A dispatcher fault; the text is logged, the device sees only "internal error". 5.00.
    #[error("internal error: {0}")]
    Internal(String),
    /// The device sends more than its rate allows ([`ReportRate`]). 4.29 (RFC 8516) with
    /// Max-Age = seconds until it may send again, and no diagnostic: the refusal costs the
    /// dispatcher no more than the OSCORE verification it already did.
    #[error("too many requests: try again in {retry_after_s} s")]
    TooManyRequests {
        /// Seconds until the next request would be accepted.
        retry_after_s: u32,
    },
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
            UplinkError::Malformed(e) if e.is_too_large() => {
                (code::REQUEST_ENTITY_TOO_LARGE, e.to_string())
            }
            UplinkError::Malformed(e) => {
                (code::BAD_REQUEST, e.to_string().chars().take(200).collect())
            }
            UplinkError::Internal(_) => (code::INTERNAL_SERVER_ERROR, "internal error".into()),
            UplinkError::TooManyRequests { .. } => (code::TOO_MANY_REQUESTS, String::new()),
        }
    }
}

/// How often one device may report over the uplink: `burst` reports at once, then one per
/// `interval` (a token bucket per uplink context, kept as the theoretical arrival time of
/// the generic cell rate algorithm: one instant per device). A report above the rate is
/// answered 4.29 before its body is decoded, and nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRate {
    /// Reports accepted at once.
    pub burst: u32,
    /// Time per report after the burst.
    pub interval: Duration,
}

impl Default for ReportRate {
    /// 10 at once, then one per 10 s (the dispatcher's `[limits]` defaults).
    fn default() -> Self {
        ReportRate {
            burst: 10,
            interval: Duration::from_secs(10),
        }
    }
}

/// Per-context state of [`ReportRate`]: the instant at which each kid's bucket is full
/// again. Bounded by the contexts the server verifies requests with (only verified kids
/// reach the handler); entries of idle devices are dropped when it grows.
#[derive(Debug, Default)]
struct RateLimiter {
    tat: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl RateLimiter {
    /// Counts one request of `kid` at `now`: `Err(wait)` when it is above `rate`.
    fn check(&self, kid: &[u8], rate: ReportRate, now: Instant) -> Result<(), Duration> {
        let Ok(mut m) = self.tat.lock() else {
            return Ok(());
        };
        if m.len() > 4096 {
            m.retain(|_, t| *t > now);
        }
        let tat = m.get(kid).copied().unwrap_or(now).max(now);
        let tolerance = rate.interval * rate.burst.saturating_sub(1);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        m.insert(kid.to_vec(), tat + rate.interval);
        Ok(())
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
    /// How often one device may report (checked by the handler before the body is
    /// decoded). Read at every report, so a backend may change it at run time.
    fn report_rate(&self) -> ReportRate {
        ReportRate::default()
    }
    /// A report of `kid` was refused for its rate (for counting; must be cheap).
    fn report_refused(&self, _kid: &[u8]) {}
}

/// The CoAP resources of the uplink, over a [`DeviceBackend`].
pub struct UplinkHandler<B: DeviceBackend> {
    backend: Arc<B>,
    reports: RateLimiter,
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
    if let UplinkError::TooManyRequests { retry_after_s } = e {
        // RFC 8516 §4: Max-Age says when to try again; no payload.
        let mut r = Reply::new(c, Vec::new());
        r.options.push((
            oscore::message::opt::MAX_AGE,
            oscore::message::uint_bytes(*retry_after_s),
        ));
        return r;
    }
    text(c, &msg)
}

/// A reply carrying a message of `fleet_proto`, encoded (and so checked) by it.
fn encoded_reply(c: u8, encoded: Result<Vec<u8>, fleet_proto::Error>) -> Reply {
    match encoded {
        Ok(body) => {
            let mut r = Reply::new(c, body);
            r.content_format = Some(content_format::JSON);
            r
        }
        Err(e) => {
            tracing::warn!("cannot encode an uplink reply: {e}");
            text(code::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl<B: DeviceBackend> UplinkHandler<B> {
    /// A handler over `backend`.
    pub fn new(backend: Arc<B>) -> Self {
        UplinkHandler {
            backend,
            reports: RateLimiter::default(),
        }
    }

    fn checkin(&self, kid: &[u8], req: &Request) -> Reply {
        let result = CheckIn::decode(&req.payload)
            .map_err(UplinkError::from)
            .and_then(|c| self.backend.checkin(kid, req.peer, c));
        match result {
            Ok(mut reply) => {
                // The devices refuse an interval outside these bounds: a configuration
                // outside them is brought inside rather than breaking every check-in.
                let (lo, hi) = fleet_proto::limits::CHECKIN_INTERVAL_S;
                reply.next_checkin_s = reply.next_checkin_s.clamp(lo, hi);
                encoded_reply(code::CHANGED, reply.encode())
            }
            Err(e) => error_reply(kid, &e),
        }
    }

    fn report(&self, kid: &[u8], req: &Request) -> Reply {
        // The rate first: a device above it costs one OSCORE verification and a small
        // protected 4.29, nothing decoded and nothing stored.
        if let Err(wait) = self
            .reports
            .check(kid, self.backend.report_rate(), Instant::now())
        {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let retry_after_s = u32::try_from(secs).unwrap_or(u32::MAX);
            self.backend.report_refused(kid);
            return error_reply(kid, &UplinkError::TooManyRequests { retry_after_s });
        }
        let result = DeviceReport::decode(&req.payload)
            .map_err(UplinkError::from)
            .and_then(|r| self.backend.report(kid, r));
        match result {
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
        match UplinkResource::parse(&req.path) {
            UplinkResource::CheckIn if req.method == code::POST => self.checkin(kid, req),
            UplinkResource::Report if req.method == code::POST => self.report(kid, req),
            UplinkResource::CheckIn | UplinkResource::Report => {
                text(code::METHOD_NOT_ALLOWED, "use POST")
            }
            UplinkResource::Release {
                release_id,
                artifact,
            } if req.method == code::GET => self.artifact(kid, release_id, artifact),
            UplinkResource::Release { .. } => text(code::METHOD_NOT_ALLOWED, "use GET"),
            UplinkResource::Unknown => text(code::NOT_FOUND, "no such resource"),
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
