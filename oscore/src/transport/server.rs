//! CoAP server over tokio UDP with OSCORE and block-wise transfer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use coap_lite::{MessageType, Packet};
use tokio::net::UdpSocket;

use super::ContextSet;
use crate::block::{AssemblerLimits, Block1Assembler, Block1Outcome, BlockValue};
use crate::context::SecurityContext;
use crate::error::{Error, Result};
use crate::message::{self, code, opt};
use crate::protect::{self, Freshness};

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
}

/// One future notification of an accepted observation.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Delay after the previous message of the observation.
    pub delay: Duration,
    /// The notification's content.
    pub reply: Reply,
}

/// Notifications to send for an observation accepted while handling a request.
struct Deferred {
    /// The context that verified the registration. Weak: a context removed from the set stops
    /// its observations (the next notification is not sent).
    ctx: Weak<Mutex<SecurityContext>>,
    binding: protect::RequestBinding,
    token: Vec<u8>,
    notifications: Vec<Notification>,
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
    /// Number of receive/handle/send worker tasks.
    pub workers: usize,
    /// Duplicate-detection memory per (peer, message id) (EXCHANGE_LIFETIME, RFC 7252 §4.8.2).
    pub exchange_lifetime: Duration,
    /// Bound on remembered exchanges.
    pub max_exchanges: usize,
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
        }
    }
}

type ExchangeKey = (SocketAddr, u16);

#[derive(Debug, Default)]
struct Dedup {
    map: HashMap<ExchangeKey, Option<Arc<Vec<u8>>>>,
    order: VecDeque<(ExchangeKey, Instant)>,
}

impl Dedup {
    fn expire(&mut self, now: Instant, lifetime: Duration, max: usize) {
        while let Some((k, t)) = self.order.front() {
            if now.duration_since(*t) > lifetime || self.order.len() > max {
                self.map.remove(k);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

struct State {
    contexts: ContextSet,
    /// Unprotected requests are refused even while the set is empty (a server created with
    /// contexts, or with [`Server::new_protected`]).
    protected: bool,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
    dedup: Mutex<Dedup>,
    uploads: Mutex<Block1Assembler<(Vec<u8>, SocketAddr, String)>>,
    /// Message ids of server-initiated messages (notifications).
    next_mid: std::sync::atomic::AtomicU16,
}

/// A CoAP server. With contexts, every request must be OSCORE-protected (else 4.01).
pub struct Server {
    sock: Arc<UdpSocket>,
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("contexts", &self.state.contexts.len())
            .field("protected", &self.state.protected)
            .finish()
    }
}

/// A running server: its address, its contexts, and a way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    /// Bound address.
    pub addr: SocketAddr,
    contexts: ContextSet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl ServerHandle {
    /// The server's contexts: add or remove peers while it runs.
    pub fn contexts(&self) -> ContextSet {
        self.contexts.clone()
    }

    /// Stops the server and waits for it (contexts are flushed).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

impl Server {
    /// New server on an already bound socket (tests bind 127.0.0.1:0). With contexts, every
    /// request must be OSCORE-protected; without, it is a plain CoAP server until a context
    /// is added through [`Server::contexts`] (from then on unprotected requests get 4.01).
    /// Contexts sharing a Recipient ID must differ in ID Context; of two that do not, the
    /// first is kept.
    pub fn new(
        sock: UdpSocket,
        contexts: Vec<SecurityContext>,
        handler: Arc<dyn Handler>,
        cfg: ServerConfig,
    ) -> Self {
        let protected = !contexts.is_empty();
        let set = ContextSet::new();
        for c in contexts {
            if let Err(e) = set.add(c) {
                tracing::warn!("context ignored: {e}");
            }
        }
        Self::build(sock, set, protected, handler, cfg)
    }

    /// New server that always requires OSCORE, with a (possibly empty) shared context set to
    /// which peers are added while it runs (e.g. a dispatcher enrolling devices). Requests
    /// with a kid not in the set get 4.01.
    pub fn new_protected(
        sock: UdpSocket,
        contexts: ContextSet,
        handler: Arc<dyn Handler>,
        cfg: ServerConfig,
    ) -> Self {
        Self::build(sock, contexts, true, handler, cfg)
    }

    fn build(
        sock: UdpSocket,
        contexts: ContextSet,
        protected: bool,
        handler: Arc<dyn Handler>,
        cfg: ServerConfig,
    ) -> Self {
        let uploads = Mutex::new(Block1Assembler::new(AssemblerLimits {
            max_body: cfg.max_body,
            max_uploads: cfg.max_uploads,
            max_buffered: cfg.max_buffered,
            idle_timeout: cfg.exchange_lifetime,
        }));
        Server {
            sock: Arc::new(sock),
            state: Arc::new(State {
                contexts,
                protected,
                handler,
                cfg,
                dedup: Mutex::default(),
                uploads,
                next_mid: std::sync::atomic::AtomicU16::new(0x8000),
            }),
        }
    }

    /// Local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    /// The server's contexts (shared: changes apply to the running server).
    pub fn contexts(&self) -> ContextSet {
        self.state.contexts.clone()
    }

    /// Runs until `shutdown` completes, then flushes every context's sequence number.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut tasks = Vec::new();
        for _ in 0..self.state.cfg.workers.max(1) {
            let sock = self.sock.clone();
            let state = self.state.clone();
            tasks.push(tokio::spawn(async move { worker(sock, state).await }));
        }
        shutdown.await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Every context present at shutdown, including those added while running; removed
        // ones were flushed when removed.
        self.state.contexts.flush_all()
    }

    /// Spawns the server; the handle stops it.
    pub fn spawn(self) -> Result<ServerHandle> {
        let addr = self.local_addr()?;
        let contexts = self.contexts();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = rx.await;
        }));
        Ok(ServerHandle {
            addr,
            contexts,
            stop: Some(tx),
            task,
        })
    }
}

async fn worker(sock: Arc<UdpSocket>, state: Arc<State>) {
    let mut buf = vec![0u8; state.cfg.max_message + 1];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("recv_from: {e}");
                continue;
            }
        };
        let mut deferred = None;
        if let Some(out) = handle_datagram(&state, peer, &buf[..n], &mut deferred)
            && let Err(e) = sock.send_to(&out, peer).await
        {
            tracing::debug!("send_to {peer}: {e}");
        }
        if let Some(d) = deferred {
            tokio::spawn(notify(sock.clone(), state.clone(), peer, d));
        }
    }
}

/// Sends the notifications of one observation (RFC 7641 §4.2, RFC 8613 §4.1.3.5.2).
async fn notify(sock: Arc<UdpSocket>, state: Arc<State>, peer: SocketAddr, d: Deferred) {
    let mut observe_seq = 1u32;
    for n in d.notifications {
        tokio::time::sleep(n.delay).await;
        observe_seq += 1;
        let mid = state
            .next_mid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut inner = message::packet(MessageType::Confirmable, n.reply.code, mid, &d.token);
        if let Some(cf) = n.reply.content_format {
            message::set(&mut inner, opt::CONTENT_FORMAT, message::uint_bytes(cf));
        }
        for (num, v) in &n.reply.options {
            inner.add_option(coap_lite::CoapOption::from(*num), v.clone());
        }
        let success = n.reply.code >> 5 == 2;
        if success {
            message::set(&mut inner, opt::OBSERVE, message::uint_bytes(observe_seq));
        }
        inner.payload = n.reply.payload.to_vec();
        let Some(ctx_lock) = d.ctx.upgrade() else {
            return; // the context was removed: the observation ends
        };
        let outer = {
            let Ok(mut ctx) = ctx_lock.lock() else { return };
            match protect::protect_response(&mut ctx, &d.binding, &inner, true) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!("cannot protect notification: {e}");
                    return;
                }
            }
        };
        let mut outer = outer;
        if success {
            // Observe is Class E and U: the outer copy lets proxies see the observation.
            message::set(&mut outer, opt::OBSERVE, message::uint_bytes(observe_seq));
        }
        if let Ok(bytes) = message::encode(&outer, state.cfg.max_message) {
            let _ = sock.send_to(&bytes, peer).await;
        }
        if !success {
            return;
        }
    }
}

fn reply_type(req: &Packet) -> MessageType {
    if req.header.get_type() == MessageType::Confirmable {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    }
}

/// Handles one datagram; returns the datagram to send back, if any.
fn handle_datagram(
    state: &State,
    peer: SocketAddr,
    bytes: &[u8],
    deferred: &mut Option<Deferred>,
) -> Option<Arc<Vec<u8>>> {
    let cfg = &state.cfg;
    let p = match message::decode(bytes, cfg.max_message) {
        Ok(p) => p,
        Err(Error::MessageTooLarge { .. }) if bytes.len() >= 4 && (bytes[0] >> 4) & 3 == 0 => {
            // RFC 7252 §4.2-style rejection of an oversized CON: answer 4.13 so the sender
            // can use smaller blocks (RFC 7959 §2.9.3).
            let mut tkl = usize::from(bytes[0] & 0x0f);
            if tkl > 8 || bytes.len() < 4 + tkl {
                tkl = 0;
            }
            let mid = u16::from_be_bytes([bytes[2], bytes[3]]);
            let mut r = message::packet(
                MessageType::Acknowledgement,
                code::REQUEST_ENTITY_TOO_LARGE,
                mid,
                &bytes[4..4 + tkl],
            );
            message::set(
                &mut r,
                opt::SIZE1,
                message::uint_bytes(1u32 << (cfg.block_szx + 4)),
            );
            return message::encode(&r, cfg.max_message).ok().map(Arc::new);
        }
        Err(_) => {
            // RFC 7252 §4.2: a CON we cannot process is rejected with RST; others ignored.
            if bytes.len() >= 4 && bytes[0] >> 6 == 1 && (bytes[0] >> 4) & 3 == 0 {
                let mid = u16::from_be_bytes([bytes[2], bytes[3]]);
                let rst = message::packet(MessageType::Reset, 0, mid, &[]);
                return message::encode(&rst, 4).ok().map(Arc::new);
            }
            return None;
        }
    };
    let t = p.header.get_type();
    let c = message::code_of(&p);
    if c == 0 {
        // RFC 7252 §4.3: an Empty CON is a ping, answered with RST. Empty ACK/RST: ignore.
        if t == MessageType::Confirmable {
            let rst = message::packet(MessageType::Reset, 0, p.header.message_id, &[]);
            return message::encode(&rst, 4).ok().map(Arc::new);
        }
        return None;
    }
    if !message::is_request_code(c)
        || matches!(t, MessageType::Acknowledgement | MessageType::Reset)
    {
        return None;
    }
    // RFC 7252 §4.5: duplicate detection per (endpoint, message id).
    let key = (peer, p.header.message_id);
    {
        let mut d = state.dedup.lock().ok()?;
        let now = Instant::now();
        d.expire(now, cfg.exchange_lifetime, cfg.max_exchanges);
        match d.map.get(&key) {
            Some(Some(cached)) => return Some(cached.clone()),
            Some(None) => return None, // being processed by another worker
            None => {
                d.map.insert(key, None);
                d.order.push_back((key, now));
            }
        }
    }
    let out = process(state, peer, &p, deferred);
    let bytes = out
        .and_then(|r| message::encode(&r, cfg.max_message).ok())
        .map(Arc::new);
    if let Ok(mut d) = state.dedup.lock() {
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
    bytes
}

/// OSCORE verification, application, protection. Returns the outer response.
fn process(
    state: &State,
    peer: SocketAddr,
    p: &Packet,
    deferred: &mut Option<Deferred>,
) -> Option<Packet> {
    let oscore = match protect::oscore_option(p) {
        Ok(o) => o,
        Err(e) => return Some(protect::error_response(p, &e)),
    };
    let Some(o) = oscore else {
        let open = message::path_of(p).is_ok_and(|path| state.handler.allow_unprotected(&path));
        if (state.protected || !state.contexts.is_empty()) && !open {
            // Contexts configured: unprotected requests get 4.01 (issue 3).
            return Some(protect::error_response(p, &Error::NotProtected));
        }
        let mut resp = app(state, peer, p, None, &mut None);
        resp.header.set_type(reply_type(p));
        resp.header.message_id = p.header.message_id;
        resp.set_token(p.get_token().to_vec());
        return Some(resp);
    };
    let kid = o.kid.clone().unwrap_or_default();
    // RFC 8613 §8.2 step 2: select the context by kid (and kid context).
    let Some(ctx_lock) = state.contexts.select(&kid, o.kid_context.as_deref()) else {
        return Some(protect::error_response(
            p,
            &Error::UnknownKid {
                kid_hex: hex::encode(&kid),
            },
        ));
    };
    let verified = {
        let mut ctx = ctx_lock.lock().ok()?;
        match protect::unprotect_request(&mut ctx, p) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(peer = %peer, "OSCORE request rejected: {e}");
                return Some(protect::error_response(p, &e));
            }
        }
    };
    let (inner, own_piv) = match verified.freshness {
        Freshness::Fresh => {
            let mut notifications = None;
            let r = app(
                state,
                peer,
                &verified.request,
                Some(&kid),
                &mut notifications,
            );
            match notifications {
                Some(n) => {
                    *deferred = Some(Deferred {
                        ctx: Arc::downgrade(&ctx_lock),
                        binding: verified.binding.clone(),
                        token: p.get_token().to_vec(),
                        notifications: n,
                    });
                    // RFC 8613 §4.1.3.5.2: responses of an observation carry a Partial IV.
                    (r, true)
                }
                None => (r, false),
            }
        }
        _ => {
            // RFC 8613 B.1.2 / RFC 9175 §2.4: 4.01 with a fresh Echo value; the response uses
            // the server's own Partial IV because the request may be a replay.
            let mut echo = vec![0u8; 8];
            if getrandom::fill(&mut echo).is_err() {
                return None;
            }
            if let Ok(mut ctx) = ctx_lock.lock() {
                protect::set_echo_challenge(&mut ctx, echo.clone());
            }
            let mut r = message::packet(MessageType::Acknowledgement, code::UNAUTHORIZED, 0, &[]);
            message::set(&mut r, opt::ECHO, echo);
            (r, true)
        }
    };
    let mut inner = inner;
    inner.header.set_type(reply_type(p));
    inner.header.message_id = p.header.message_id;
    inner.set_token(p.get_token().to_vec());
    let mut ctx = ctx_lock.lock().ok()?;
    match protect::protect_response(&mut ctx, &verified.binding, &inner, own_piv) {
        Ok(mut r) => {
            if deferred.is_some()
                && let Some(v) = message::first(&inner, opt::OBSERVE)
            {
                message::set(&mut r, opt::OBSERVE, v.clone());
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

fn simple(code: u8, diag: &str) -> Packet {
    let mut r = message::packet(MessageType::Acknowledgement, code, 0, &[]);
    r.payload = diag.as_bytes().to_vec();
    r
}

/// Block-wise handling around the application handler (RFC 7959). Returns the inner response
/// (type, id and token are set by the caller).
fn app(
    state: &State,
    peer: SocketAddr,
    req: &Packet,
    kid: Option<&[u8]>,
    observation: &mut Option<Vec<Notification>>,
) -> Packet {
    let cfg = &state.cfg;
    let method = message::code_of(req);
    // RFC 7252 §5.4.1: a request with an unrecognised critical option is rejected with 4.02.
    if let Some(n) = message::unknown_critical(req) {
        return simple(
            code::BAD_OPTION,
            &format!("unrecognised critical option {n}"),
        );
    }
    let Ok(path) = message::path_of(req) else {
        return simple(code::BAD_OPTION, "Uri-Path is not UTF-8");
    };
    let size1 = message::first(req, opt::SIZE1).and_then(|v| message::uint_value(v).ok());
    let mut body = req.payload.clone();
    let mut block1_done = None;
    if let Some(v) = message::first(req, opt::BLOCK1) {
        let b = match BlockValue::decode(v) {
            Ok(b) => b,
            Err(_) => return simple(code::BAD_OPTION, "bad Block1"),
        };
        // Uploads are keyed by client identity and path (RFC 7959 §2.4, RFC 9175 §3).
        let key = (
            kid.map(<[u8]>::to_vec).unwrap_or_default(),
            peer,
            path.clone(),
        );
        let outcome = match state.uploads.lock() {
            Ok(mut u) => u.feed(&key, b, size1, &req.payload, Instant::now()),
            Err(_) => return simple(code::INTERNAL_SERVER_ERROR, ""),
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
                return r;
            }
            Block1Outcome::Complete(all) => {
                body = all;
                block1_done = Some(b);
            }
            Block1Outcome::TooLarge { max } => {
                let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "body too large");
                message::set(&mut r, opt::SIZE1, message::uint_bytes(max as u32));
                return r;
            }
            _ => return simple(code::REQUEST_ENTITY_INCOMPLETE, "block out of sequence"),
        }
    } else if !body.is_empty() && body.len() > 1usize << (cfg.block_szx + 4) {
        // RFC 7959 §2.9.3: a body larger than our block size must come block-wise; the Block1
        // option in the 4.13 names the size we accept.
        let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "send block-wise");
        message::set(
            &mut r,
            opt::BLOCK1,
            BlockValue::new(0, false, cfg.block_szx).encode(),
        );
        message::set(&mut r, opt::SIZE1, message::uint_bytes(cfg.max_body as u32));
        return r;
    } else if size1.is_some_and(|s| s as usize > cfg.max_body) || body.len() > cfg.max_body {
        let mut r = simple(code::REQUEST_ENTITY_TOO_LARGE, "body too large");
        message::set(&mut r, opt::SIZE1, message::uint_bytes(cfg.max_body as u32));
        return r;
    }
    let request = Request {
        method,
        path,
        payload: body,
        peer,
        kid: kid.map(<[u8]>::to_vec),
        message: req.clone(),
    };
    let reply = state.handler.handle(&request);
    let mut r = message::packet(MessageType::Acknowledgement, reply.code, 0, &[]);
    // RFC 7641 §2: Observe 0 registers; only protected requests (kid known) may observe.
    let registers =
        message::first(req, opt::OBSERVE).is_some_and(|v| message::uint_value(v).ok() == Some(0));
    if registers
        && kid.is_some()
        && reply.code >> 5 == 2
        && let Some(n) = state.handler.observe(&request)
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
    // RFC 7959 §2.2/§2.4: Block2 when asked for, or when the body exceeds one block.
    let want = match message::first(req, opt::BLOCK2) {
        Some(v) => match BlockValue::decode(v) {
            Ok(b) => Some(b),
            Err(_) => return simple(code::BAD_OPTION, "bad Block2"),
        },
        None => None,
    };
    let max_size = 1usize << (cfg.block_szx + 4);
    let total = reply.payload.len();
    if want.is_some() || total > max_size {
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
            return simple(code::BAD_OPTION, "Block2 out of range");
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
    } else {
        r.payload = reply.payload.to_vec();
    }
    r
}
