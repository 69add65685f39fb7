//! What a server endpoint exchanges with its application and its caller: the request and
//! reply types, the [`Handler`] trait, observations, the output of one datagram and the
//! server's parameters.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use coap_lite::Packet;

use crate::context::SecurityContext;
use crate::message;
use crate::protect;

/// A complete request handed to the application (after Block1 reassembly and OSCORE).
#[derive(Debug, Clone)]
pub struct Request {
    /// Method code.
    pub method: u8,
    /// Uri-Path joined with '/'.
    pub path: String,
    /// Body.
    pub payload: Vec<u8>,
    /// Peer address.
    pub peer: SocketAddr,
    /// kid of the OSCORE context that verified the request (None: unprotected).
    pub kid: Option<Vec<u8>>,
    /// The (inner) request message, for options such as Uri-Query, Accept or If-Match.
    pub message: Packet,
    /// The age of the Echo value the request carried, when it is one this server issued for
    /// the request's context (RFC 9175 §2.3: the request was made at most this long ago).
    pub echo_age: Option<Duration>,
}

/// The application's answer. The payload is shared so Block2 slicing does not copy it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Response code.
    pub code: u8,
    /// Body.
    pub payload: Arc<Vec<u8>>,
    /// Content-Format.
    pub content_format: Option<u32>,
    /// Further options (number, value), e.g. ETag or Max-Age.
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Reply {
    /// A reply with a code and a body.
    pub fn new(code: u8, payload: impl Into<Vec<u8>>) -> Self {
        Reply {
            code,
            payload: Arc::new(payload.into()),
            content_format: None,
            options: Vec::new(),
        }
    }
}

/// The application behind the server. Must be idempotent for GET (each Block2 block calls it).
pub trait Handler: Send + Sync + 'static {
    /// Handles one complete request.
    fn handle(&self, req: &Request) -> Reply;

    /// Whether `path` may be reached without OSCORE when the server has contexts (default:
    /// never; unprotected requests then get 4.01).
    fn allow_unprotected(&self, _path: &str) -> bool {
        false
    }

    /// Observe registration (RFC 7641, `Observe: 0` in a protected GET): `Some` accepts it and
    /// lists the notifications to send later, each after its delay. Default: not observable
    /// (the response carries no Observe option). Minimal support: notifications are sent as
    /// CON messages protected with the server's own Partial IV (RFC 8613 §4.1.3.5.2), without
    /// retransmission, and an error-code notification ends the observation.
    fn observe(&self, _req: &Request) -> Option<Vec<Notification>> {
        None
    }

    /// Freshness (RFC 9175 §2.3): `Some(max_age)` makes the server act on a `method path`
    /// request only when the message that completes it (the last Block1 block, or the only
    /// message) carries an Echo value this server issued at most `max_age` before. Otherwise
    /// the server answers 4.01 with a new Echo value, protected under its own Partial IV, and
    /// neither calls [`Handler::handle`] nor consumes the block (the Block1 upload in
    /// progress is kept, so the client repeats only that block). Default: `None`.
    fn required_freshness(&self, _method: u8, _path: &str) -> Option<Duration> {
        None
    }
}

/// One future notification of an accepted observation.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Delay after the previous message of the observation.
    pub delay: Duration,
    /// The notification's content.
    pub reply: Reply,
}

/// An observation accepted while handling a request: the caller sends its notifications
/// (each through [`ServerEndpoint::notification`]) after their delays.
pub struct Observation {
    /// The context that verified the registration. Weak: a context removed from the set stops
    /// its observations (the next notification is not made).
    pub(super) ctx: Weak<Mutex<SecurityContext>>,
    pub(super) binding: protect::RequestBinding,
    pub(super) token: Vec<u8>,
    /// The observer.
    pub peer: SocketAddr,
    /// The notifications, in order.
    pub notifications: Vec<Notification>,
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation")
            .field("peer", &self.peer)
            .field("notifications", &self.notifications.len())
            .finish_non_exhaustive()
    }
}

/// What one datagram produced.
#[derive(Debug, Default)]
pub struct Output {
    /// The datagram to send back to the peer, if any.
    pub reply: Option<Arc<Vec<u8>>>,
    /// An observation to serve, if the request registered one.
    pub observation: Option<Observation>,
}

/// Server parameters.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest datagram accepted.
    pub max_message: usize,
    /// Largest Block1 body accepted (4.13 above, with Size1).
    pub max_body: usize,
    /// Bound on concurrent Block1 reassemblies.
    pub max_uploads: usize,
    /// Bound on bytes buffered over all Block1 reassemblies.
    pub max_buffered: usize,
    /// Largest block size exponent the server sends.
    pub block_szx: u8,
    /// Number of receive/handle/send worker tasks (used by the transport).
    pub workers: usize,
    /// Duplicate-detection memory per (peer, message id) (EXCHANGE_LIFETIME, RFC 7252 §4.8.2).
    pub exchange_lifetime: Duration,
    /// Bound on remembered exchanges.
    pub max_exchanges: usize,
    /// RFC 8613 Appendix B.1.2: how old an Echo value may be to re-establish a lost replay
    /// window (any value of this server instance proves the request was made after the
    /// window was lost; the bound only limits how long a held-back repeat stays usable).
    pub echo_max_age: Duration,
    /// RFC 9175 §2.4 item 3 (amplification): an Echo challenge is sent only when it is at
    /// most this many times the size of the request it answers; otherwise the peer gets an
    /// unprotected 4.01 no larger than its request, and the request is not acted on. 1 (the
    /// default): never larger than the request; our clients pad their small requests so
    /// that they always get their challenge (`endpoint::pad_request`). A server whose peers
    /// send small requests without padding (aiocoap's client) and must recover from a lost
    /// replay window needs more: RFC 9175 calls 3 acceptable (the bound of RFC 9000 §8).
    pub echo_amplification: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message: message::DEFAULT_MAX_MESSAGE,
            max_body: 64 << 20,
            max_uploads: 1024,
            max_buffered: 256 << 20,
            block_szx: 6,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4),
            exchange_lifetime: Duration::from_secs(247),
            max_exchanges: 16_384,
            echo_max_age: Duration::from_secs(60),
            echo_amplification: 1,
        }
    }
}
