//! The server side of a CoAP/OSCORE endpoint, without I/O: one datagram in, at most one
//! datagram out. Duplicate detection (RFC 7252 §4.5), OSCORE verification and protection
//! (RFC 8613 §8), the Echo exchanges of RFC 8613 Appendix B.1.2 and RFC 9175, Block1
//! reassembly and Block2 slicing (RFC 7959) and Observe registration (RFC 7641) live here;
//! the caller passes the time of each datagram and the randomness of the Echo key, and owns
//! the socket (see `transport::Server`, a thin loop around [`ServerEndpoint::handle`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_lite::{MessageType, Packet};

use super::contexts::ContextSet;
use super::reply::{encoded_len, no_larger_than, reject_undecodable};
use super::types::{Handler, Notification, Observation, Output, Reply, Request, ServerConfig};
use crate::block::{AssemblerLimits, Block1Assembler, Block1Outcome, BlockValue};
use crate::context::SecurityContext;
use crate::echo::{EchoKey, EchoScope};
use crate::error::Error;
use crate::message::{self, code, opt};
use crate::protect::{self, Freshness};

type ExchangeKey = (SocketAddr, u16);

/// RFC 7252 §4.5: answers remembered per (peer, message id).
#[derive(Debug, Default)]
struct Dedup {
    map: HashMap<ExchangeKey, Option<Arc<Vec<u8>>>>,
    order: VecDeque<(ExchangeKey, Instant)>,
}

impl Dedup {
    fn expire(&mut self, now: Instant, lifetime: Duration, max: usize) {
        while let Some((k, t)) = self.order.front() {
            if now.saturating_duration_since(*t) > lifetime || self.order.len() > max {
                self.map.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Block1 uploads are keyed by client identity and path (RFC 7959 §2.4, RFC 9175 §3).
type UploadKey = (Vec<u8>, SocketAddr, String);

/// The owned identity of a context, for Echo values.
struct ScopeIds {
    recipient_id: Vec<u8>,
    id_context: Option<Vec<u8>>,
}

impl ScopeIds {
    fn of(ctx: &SecurityContext) -> Self {
        ScopeIds {
            recipient_id: ctx.recipient_id().to_vec(),
            id_context: ctx.id_context().map(<[u8]>::to_vec),
        }
    }

    fn scope(&self) -> EchoScope<'_> {
        EchoScope {
            recipient_id: &self.recipient_id,
            id_context: self.id_context.as_deref(),
        }
    }
}

/// What the block-wise layer made of a verified request.
struct AppAnswer {
    inner: Packet,
    /// The answer must carry the server's own Partial IV (an Echo challenge).
    own_piv: bool,
    /// The answer is an Echo challenge: the request was not acted on, and its sender has not
    /// shown it is fresh or that it sits at the source address (RFC 9175 §2.4 item 3).
    challenge: bool,
}

/// An answer under the request's nonce.
fn plain(inner: Packet) -> AppAnswer {
    AppAnswer {
        inner,
        own_piv: false,
        challenge: false,
    }
}

/// RFC 9175 §2.3: whether the message that completes a request is fresh enough for its
/// handler, and the answer when it is not.
struct FreshnessGate<'a> {
    endpoint: &'a ServerEndpoint,
    handler: &'a dyn Handler,
    method: u8,
    path: &'a str,
    protected: Option<(&'a [u8], &'a ScopeIds)>,
    echo_age: Option<Duration>,
    now: Instant,
}

impl FreshnessGate<'_> {
    fn stale(&self) -> bool {
        match self.handler.required_freshness(self.method, self.path) {
            Some(max) => self.echo_age.is_none_or(|age| age > max),
            None => false,
        }
    }

    fn challenge(&self) -> AppAnswer {
        match self.protected {
            Some((_, ids)) => AppAnswer {
                inner: self.endpoint.echo_challenge(ids, self.now),
                own_piv: true,
                challenge: true,
            },
            // Freshness needs OSCORE (the Echo value is bound to a context).
            None => plain(simple(code::UNAUTHORIZED, "OSCORE required")),
        }
    }
}

/// The server endpoint: shared by the caller's worker tasks (`&self` methods, internal
/// locks held only for bookkeeping, never while the handler runs).
pub struct ServerEndpoint {
    contexts: ContextSet,
    /// Unprotected requests are refused even while the set is empty.
    protected: bool,
    cfg: ServerConfig,
    dedup: Mutex<Dedup>,
    uploads: Mutex<Block1Assembler<UploadKey>>,
    echo: EchoKey,
    /// Message ids of server-initiated messages (notifications).
    next_mid: AtomicU16,
}

impl std::fmt::Debug for ServerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEndpoint")
            .field("contexts", &self.contexts.len())
            .field("protected", &self.protected)
            .finish_non_exhaustive()
    }
}

/// One request datagram being answered: who sent it, what it decoded to, its size on the
/// wire (what an unauthenticated peer may get back at most) and when it arrived.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    peer: SocketAddr,
    packet: &'a Packet,
    len: usize,
    now: Instant,
}

fn reply_type(req: &Packet) -> MessageType {
    if req.header.get_type() == MessageType::Confirmable {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    }
}

fn simple(code: u8, diag: &str) -> Packet {
    let mut r = message::packet(MessageType::Acknowledgement, code, 0, &[]);
    r.payload = diag.as_bytes().to_vec();
    r
}

impl ServerEndpoint {
    /// A server endpoint over `contexts`. With `protected`, unprotected requests get 4.01 even
    /// while the set is empty (otherwise only once it holds a context). `echo_secret` comes
    /// from the caller's cryptographic RNG and must be new for every endpoint (a restart
    /// included: that is what invalidates the Echo values of the previous instance); `now`
    /// starts the clock of its Echo values.
    pub fn new(
        contexts: ContextSet,
        protected: bool,
        cfg: ServerConfig,
        echo_secret: [u8; 32],
        now: Instant,
    ) -> Self {
        let uploads = Mutex::new(Block1Assembler::new(AssemblerLimits {
            max_body: cfg.max_body,
            max_uploads: cfg.max_uploads,
            max_buffered: cfg.max_buffered,
            idle_timeout: cfg.exchange_lifetime,
        }));
        ServerEndpoint {
            contexts,
            protected,
            cfg,
            dedup: Mutex::default(),
            uploads,
            echo: EchoKey::new(echo_secret, now),
            next_mid: AtomicU16::new(0x8000),
        }
    }

    /// The contexts (shared: changes apply at once).
    pub fn contexts(&self) -> &ContextSet {
        &self.contexts
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Handles one datagram from `peer` received at `now`; calls `handler` for a complete,
    /// verified and (where the handler asks for it) fresh request.
    pub fn handle(
        &self,
        peer: SocketAddr,
        bytes: &[u8],
        now: Instant,
        handler: &dyn Handler,
    ) -> Output {
        let cfg = &self.cfg;
        let p = match message::decode(bytes, cfg.max_message) {
            Ok(p) => p,
            Err(e) => return reply_only(reject_undecodable(bytes, &e, cfg)),
        };
        let t = p.header.get_type();
        let c = message::code_of(&p);
        if c == 0 {
            // RFC 7252 §4.3: an Empty CON is a ping, answered with RST. Empty ACK/RST: ignore.
            if t == MessageType::Confirmable {
                let rst = message::packet(MessageType::Reset, 0, p.header.message_id, &[]);
                return reply_only(message::encode(&rst, 4).ok());
            }
            return Output::default();
        }
        if !message::is_request_code(c)
            || matches!(t, MessageType::Acknowledgement | MessageType::Reset)
        {
            return Output::default();
        }
        // RFC 7252 §4.5: duplicate detection per (endpoint, message id).
        let key = (peer, p.header.message_id);
        {
            let Ok(mut d) = self.dedup.lock() else {
                return Output::default();
            };
            d.expire(now, cfg.exchange_lifetime, cfg.max_exchanges);
            match d.map.get(&key) {
                Some(Some(cached)) => {
                    return Output {
                        reply: Some(cached.clone()),
                        observation: None,
                    };
                }
                Some(None) => return Output::default(), // being processed by another worker
                None => {
                    d.map.insert(key, None);
                    d.order.push_back((key, now));
                }
            }
        }
        let mut observation = None;
        let req = Incoming {
            peer,
            packet: &p,
            len: bytes.len(),
            now,
        };
        let out = self.process(&req, handler, &mut observation);
        let bytes = out
            .and_then(|r| message::encode(&r, cfg.max_message).ok())
            .map(Arc::new);
        if let Ok(mut d) = self.dedup.lock() {
            match &bytes {
                Some(b) => {
                    if let Some(slot) = d.map.get_mut(&key) {
                        *slot = Some(b.clone());
                    }
                }
                None => {
                    d.map.remove(&key);
                }
            }
        }
        Output {
            reply: bytes,
            observation,
        }
    }

    /// OSCORE verification, freshness, application, protection. Returns the outer response.
    /// `request_len` is the size of the datagram `p` came in: what an unauthenticated peer
    /// may get back at most (see [`no_larger_than`]).
    fn process(
        &self,
        req: &Incoming<'_>,
        handler: &dyn Handler,
        observation: &mut Option<Observation>,
    ) -> Option<Packet> {
        let Incoming {
            peer,
            packet: p,
            len: request_len,
            now,
        } = *req;
        let oscore = match protect::oscore_option(p) {
            Ok(o) => o,
            Err(e) => return no_larger_than(protect::error_response(p, &e), request_len),
        };
        let Some(o) = oscore else {
            return self.process_unprotected(req, handler);
        };
        let kid = o.kid.clone().unwrap_or_default();
        // RFC 8613 §8.2 step 2: select the context by kid (and kid context).
        let Some(ctx_lock) = self.contexts.select(&kid, o.kid_context.as_deref()) else {
            return no_larger_than(
                protect::error_response(
                    p,
                    &Error::UnknownKid {
                        kid_hex: hex::encode(&kid),
                    },
                ),
                request_len,
            );
        };
        let (verified, ids) = {
            let mut ctx = ctx_lock.lock().ok()?;
            let ids = ScopeIds::of(&ctx);
            // RFC 8613 Appendix B.1.2: a lost window is re-established only by a request
            // that echoes a value of this server instance (made after the window was lost).
            let max = self.cfg.echo_max_age;
            let mut proves = |v: &[u8]| {
                self.echo
                    .age(v, ids.scope(), now)
                    .is_some_and(|age| age <= max)
            };
            match protect::unprotect_request_with(&mut ctx, p, &mut proves) {
                Ok(v) => (v, ids),
                Err(e) => {
                    tracing::debug!(peer = %peer, "OSCORE request rejected: {e}");
                    return no_larger_than(protect::error_response(p, &e), request_len);
                }
            }
        };
        let answer = match verified.freshness {
            Freshness::Fresh => {
                let echo_age = message::first(&verified.request, opt::ECHO)
                    .and_then(|v| self.echo.age(v, ids.scope(), now));
                let mut notifications = None;
                let a = self.app(
                    peer,
                    &verified.request,
                    Some((&kid, &ids)),
                    echo_age,
                    now,
                    handler,
                    &mut notifications,
                );
                if let Some(n) = notifications {
                    *observation = Some(Observation {
                        ctx: Arc::downgrade(&ctx_lock),
                        binding: verified.binding.clone(),
                        token: p.get_token().to_vec(),
                        peer,
                        notifications: n,
                    });
                    // RFC 8613 §4.1.3.5.2: responses of an observation carry a Partial IV.
                    AppAnswer { own_piv: true, ..a }
                } else {
                    a
                }
            }
            _ => {
                // RFC 8613 B.1.2 / RFC 9175 §2.4: the window is lost (a restart): 4.01 with an
                // Echo value, and the request is not acted on. It may be a replay, so the
                // answer must not use the request's nonce: own Partial IV.
                AppAnswer {
                    inner: self.echo_challenge(&ids, now),
                    own_piv: true,
                    challenge: true,
                }
            }
        };
        let mut inner = answer.inner;
        inner.header.set_type(reply_type(p));
        inner.header.message_id = p.header.message_id;
        inner.set_token(p.get_token().to_vec());
        let mut ctx = ctx_lock.lock().ok()?;
        let sealed = protect::protect_response(&mut ctx, &verified.binding, &inner, answer.own_piv);
        drop(ctx);
        // RFC 7641: a registration's answer carries the Observe option outside too.
        let observe = observation
            .as_ref()
            .and_then(|_| message::first(&inner, opt::OBSERVE).cloned());
        self.seal_outcome(req, answer.challenge, observe, sealed)
    }

    /// A request without an OSCORE option: served only on paths the handler leaves open
    /// and only while no context is configured; an error answer is no larger than the
    /// request (nothing here is authenticated, RFC 7252 §11.3).
    fn process_unprotected(&self, req: &Incoming<'_>, handler: &dyn Handler) -> Option<Packet> {
        let (p, request_len) = (req.packet, req.len);
        let open = message::path_of(p).is_ok_and(|path| handler.allow_unprotected(&path));
        if (self.protected || !self.contexts.is_empty()) && !open {
            // Contexts configured: unprotected requests get 4.01 (issue 3).
            return no_larger_than(
                protect::error_response(p, &Error::NotProtected),
                request_len,
            );
        }
        let mut resp = self
            .app(req.peer, p, None, None, req.now, handler, &mut None)
            .inner;
        resp.header.set_type(reply_type(p));
        resp.header.message_id = p.header.message_id;
        resp.set_token(p.get_token().to_vec());
        // Nothing off the OSCORE path is authenticated: an error answer is cut to the
        // request's size. A success is what the application chose to serve openly.
        if message::code_of(&resp) >> 5 >= 4 {
            return no_larger_than(resp, request_len);
        }
        Some(resp)
    }

    /// What goes back for a protected answer: the protected response, a bare 4.01 when an
    /// Echo challenge would be larger than its request, or 5.00 when protection failed.
    fn seal_outcome(
        &self,
        req: &Incoming<'_>,
        challenge: bool,
        observe: Option<Vec<u8>>,
        sealed: Result<Packet, Error>,
    ) -> Option<Packet> {
        let Incoming {
            peer,
            packet: p,
            len: request_len,
            ..
        } = *req;
        match sealed {
            Ok(r)
                if challenge
                    && encoded_len(&r)
                        > request_len.saturating_mul(self.cfg.echo_amplification.max(1)) =>
            {
                // RFC 9175 §2.4 item 3, RFC 7252 §11.3: the request was not acted on and may
                // be a replay sent from a victim's address; a challenge larger than it would
                // make this server an amplifier. The peer gets a bare, unprotected 4.01 no
                // larger than its request (our clients pad their requests so that a
                // challenge always fits: `Exchange::outgoing`).
                tracing::debug!(peer = %peer, request_len, "Echo challenge larger than the request; not sent");
                let mut bare = message::packet(
                    reply_type(p),
                    code::UNAUTHORIZED,
                    p.header.message_id,
                    p.get_token(),
                );
                message::set(&mut bare, opt::MAX_AGE, Vec::new());
                no_larger_than(bare, request_len)
            }
            Ok(mut r) => {
                if let Some(v) = observe {
                    message::set(&mut r, opt::OBSERVE, v);
                }
                Some(r)
            }
            Err(e) => {
                tracing::warn!("cannot protect response: {e}");
                let mut r = message::packet(
                    reply_type(p),
                    code::INTERNAL_SERVER_ERROR,
                    p.header.message_id,
                    p.get_token(),
                );
                r.payload = b"internal error".to_vec();
                Some(r)
            }
        }
    }

    /// RFC 9175 §2.4: 4.01 Unauthorized with a fresh Echo value (no payload).
    fn echo_challenge(&self, ids: &ScopeIds, now: Instant) -> Packet {
        let mut r = message::packet(MessageType::Acknowledgement, code::UNAUTHORIZED, 0, &[]);
        message::set(&mut r, opt::ECHO, self.echo.issue(ids.scope(), now));
        r
    }

    /// Block-wise handling and freshness around the application handler (RFC 7959, RFC
    /// 9175). Returns the inner response (type, id and token are set by the caller).
    #[allow(clippy::too_many_arguments)] // two call sites; a struct would only rename them
    fn app(
        &self,
        peer: SocketAddr,
        req: &Packet,
        protected: Option<(&[u8], &ScopeIds)>,
        echo_age: Option<Duration>,
        now: Instant,
        handler: &dyn Handler,
        observation: &mut Option<Vec<Notification>>,
    ) -> AppAnswer {
        let kid = protected.map(|(k, _)| k);
        let method = message::code_of(req);
        // RFC 7252 §5.4.1: a request with an unrecognised critical option is rejected with 4.02.
        if let Some(n) = message::unknown_critical(req) {
            return plain(simple(
                code::BAD_OPTION,
                &format!("unrecognised critical option {n}"),
            ));
        }
        let Ok(path) = message::path_of(req) else {
            return plain(simple(code::BAD_OPTION, "Uri-Path is not UTF-8"));
        };
        let gate = FreshnessGate {
            endpoint: self,
            handler,
            method,
            path: &path,
            protected,
            echo_age,
            now,
        };
        let (body, block1_done) = match self.request_body(peer, req, &gate) {
            Ok(b) => b,
            Err(answer) => return answer,
        };
        let request = Request {
            method,
            path,
            payload: body,
            peer,
            kid: kid.map(<[u8]>::to_vec),
            message: req.clone(),
            echo_age,
        };
        let reply = handler.handle(&request);
        plain(self.respond(req, &request, &reply, block1_done, handler, observation))
    }

    /// The body of a request: reassembled from Block1 messages (RFC 7959 §2.3), or the
    /// payload of a single message within the size limits (§2.9.3). With it, the Block1
    /// option of its last message. `Err` is the answer in place of the handler's: 2.31
    /// Continue, 4.13, 4.08, 4.02, or the Echo challenge when the completing message is not
    /// fresh enough.
    fn request_body(
        &self,
        peer: SocketAddr,
        req: &Packet,
        gate: &FreshnessGate<'_>,
    ) -> Result<(Vec<u8>, Option<BlockValue>), AppAnswer> {
        let cfg = &self.cfg;
        let size1 = message::first(req, opt::SIZE1).and_then(|v| message::uint_value(v).ok());
        let Some(v) = message::first(req, opt::BLOCK1) else {
            let body = &req.payload;
            if !body.is_empty() && body.len() > 1usize << (cfg.block_szx + 4) {
                // RFC 7959 §2.9.3: a body larger than our block size must come block-wise;
                // the Block1 option in the 4.13 names the size we accept.
                let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "send block-wise");
                message::set(
                    &mut r,
                    opt::BLOCK1,
                    BlockValue::new(0, false, cfg.block_szx).encode(),
                );
                message::set(&mut r, opt::SIZE1, message::uint_bytes(cfg.max_body as u32));
                return Err(plain(r));
            } else if size1.is_some_and(|s| s as usize > cfg.max_body) || body.len() > cfg.max_body
            {
                let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "body too large");
                message::set(&mut r, opt::SIZE1, message::uint_bytes(cfg.max_body as u32));
                return Err(plain(r));
            } else if gate.stale() {
                return Err(gate.challenge());
            }
            return Ok((body.clone(), None));
        };
        let b = match BlockValue::decode(v) {
            Ok(b) => b,
            Err(_) => return Err(plain(simple(code::BAD_OPTION, "bad Block1"))),
        };
        // The last block completes the request: checked before it is stored, so a stale
        // one leaves the upload as it was.
        if !b.more && gate.stale() {
            return Err(gate.challenge());
        }
        let kid = gate.protected.map(|(k, _)| k);
        let key = (
            kid.map(<[u8]>::to_vec).unwrap_or_default(),
            peer,
            gate.path.to_owned(),
        );
        let outcome = match self.uploads.lock() {
            Ok(mut u) => u.feed(&key, b, size1, &req.payload, gate.now),
            Err(_) => return Err(plain(simple(code::INTERNAL_SERVER_ERROR, ""))),
        };
        match outcome {
            Block1Outcome::Continue => {
                let mut r = simple(code::CONTINUE, "");
                r.payload.clear();
                message::set(
                    &mut r,
                    opt::BLOCK1,
                    BlockValue::new(b.num, true, b.szx).encode(),
                );
                Err(plain(r))
            }
            Block1Outcome::Complete(all) => Ok((all, Some(b))),
            Block1Outcome::TooLarge { max } => {
                let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "body too large");
                message::set(&mut r, opt::SIZE1, message::uint_bytes(max as u32));
                Err(plain(r))
            }
            _ => Err(plain(simple(
                code::REQUEST_ENTITY_INCOMPLETE,
                "block out of sequence",
            ))),
        }
    }

    /// The inner response to a request the handler answered with `reply`: Observe
    /// registration (RFC 7641), the reply's options, the Block1 acknowledgement of an
    /// upload and Block2 slicing of the body (RFC 7959).
    fn respond(
        &self,
        req: &Packet,
        request: &Request,
        reply: &Reply,
        block1_done: Option<BlockValue>,
        handler: &dyn Handler,
        observation: &mut Option<Vec<Notification>>,
    ) -> Packet {
        let mut r = message::packet(MessageType::Acknowledgement, reply.code, 0, &[]);
        // RFC 7641 §2: Observe 0 registers; only protected requests (kid known) may observe.
        let registers = message::first(req, opt::OBSERVE)
            .is_some_and(|v| message::uint_value(v).ok() == Some(0));
        if registers
            && request.kid.is_some()
            && reply.code >> 5 == 2
            && let Some(n) = handler.observe(request)
        {
            message::set(&mut r, opt::OBSERVE, message::uint_bytes(1));
            *observation = Some(n);
        }
        if let Some(cf) = reply.content_format {
            message::set(&mut r, opt::CONTENT_FORMAT, message::uint_bytes(cf));
        }
        for (n, v) in &reply.options {
            r.add_option(coap_lite::CoapOption::from(*n), v.clone());
        }
        if let Some(b) = block1_done {
            message::set(
                &mut r,
                opt::BLOCK1,
                BlockValue::new(b.num, false, b.szx).encode(),
            );
        }
        match block2(&self.cfg, req, reply, r) {
            Ok(r) | Err(r) => r,
        }
    }

    /// One notification of `obs` (RFC 7641 §4.2, RFC 8613 §4.1.3.5.2): a CON message
    /// protected under the server's own Partial IV. `observe_seq` is the Observe value (2
    /// for the first notification). None when the observation's context was removed (the
    /// observation ends) or protection failed.
    pub fn notification(
        &self,
        obs: &Observation,
        observe_seq: u32,
        reply: &Reply,
    ) -> Option<Vec<u8>> {
        let mid = self.next_mid.fetch_add(1, Ordering::Relaxed);
        let mut inner = message::packet(MessageType::Confirmable, reply.code, mid, &obs.token);
        if let Some(cf) = reply.content_format {
            message::set(&mut inner, opt::CONTENT_FORMAT, message::uint_bytes(cf));
        }
        for (num, v) in &reply.options {
            inner.add_option(coap_lite::CoapOption::from(*num), v.clone());
        }
        let success = reply.code >> 5 == 2;
        if success {
            message::set(&mut inner, opt::OBSERVE, message::uint_bytes(observe_seq));
        }
        inner.payload = reply.payload.to_vec();
        let ctx_lock = obs.ctx.upgrade()?;
        let mut outer = {
            let mut ctx = ctx_lock.lock().ok()?;
            match protect::protect_response(&mut ctx, &obs.binding, &inner, true) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!("cannot protect notification: {e}");
                    return None;
                }
            }
        };
        if success {
            // Observe is Class E and U: the outer copy lets proxies see the observation.
            message::set(&mut outer, opt::OBSERVE, message::uint_bytes(observe_seq));
        }
        message::encode(&outer, self.cfg.max_message).ok()
    }
}

fn reply_only(bytes: Option<Vec<u8>>) -> Output {
    Output {
        reply: bytes.map(Arc::new),
        observation: None,
    }
}

/// RFC 7959 §2.2/§2.4: Block2 when asked for, or when the body exceeds one block. `Err` is an
/// error answer (a block beyond the end, a bad Block2 option).
fn block2(
    cfg: &ServerConfig,
    req: &Packet,
    reply: &Reply,
    mut r: Packet,
) -> Result<Packet, Packet> {
    let want = match message::first(req, opt::BLOCK2) {
        Some(v) => match BlockValue::decode(v) {
            Ok(b) => Some(b),
            Err(_) => return Err(simple(code::BAD_OPTION, "bad Block2")),
        },
        None => None,
    };
    let max_size = 1usize << (cfg.block_szx + 4);
    let total = reply.payload.len();
    if want.is_none() && total <= max_size {
        r.payload = reply.payload.to_vec();
        return Ok(r);
    }
    let (num, szx) = match want {
        Some(b) => (b.num, b.szx.min(cfg.block_szx)),
        None => (0, cfg.block_szx),
    };
    // Late negotiation: a smaller size than asked keeps the same offset (RFC 7959 §2.4).
    let asked = want.map(|b| b.offset()).unwrap_or(0);
    let size = 1usize << (szx + 4);
    let num = if want.is_some_and(|b| b.szx > szx) {
        (asked / size) as u32
    } else {
        num
    };
    let off = num as usize * size;
    if off > total || (off == total && total > 0) {
        // RFC 7959 §2.2: a block beyond the end is 4.02 Bad Option.
        return Err(simple(code::BAD_OPTION, "Block2 out of range"));
    }
    let end = (off + size).min(total);
    if total > size || want.is_some() {
        message::set(
            &mut r,
            opt::BLOCK2,
            BlockValue::new(num, end < total, szx).encode(),
        );
        if num == 0 || message::first(req, opt::SIZE2).is_some() {
            message::set(&mut r, opt::SIZE2, message::uint_bytes(total as u32));
        }
    }
    r.payload = reply.payload[off..end].to_vec();
    Ok(r)
}
