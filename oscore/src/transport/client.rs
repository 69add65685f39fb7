//! CoAP client over tokio UDP with OSCORE and block-wise transfer.

use std::net::SocketAddr;

use coap_lite::{MessageType, Packet};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{ClientConfig, Jitter};
use crate::block::BlockValue;
use crate::context::SecurityContext;
use crate::endpoint::{
    Block1Step, Block1Upload, Block2Download, Exchange, Step, response_error, too_large_hint,
};
use crate::error::{Error, Result};
use crate::message::{self, code, opt};

/// A complete response (after block-wise reassembly).
#[derive(Debug, Clone)]
pub struct Response {
    /// CoAP code.
    pub code: u8,
    /// Body.
    pub payload: Vec<u8>,
    /// Content-Format, if present.
    pub content_format: Option<u32>,
}

/// The guard of [`Client::set_echo_guard`].
struct EchoGuard(Box<dyn FnMut() -> bool + Send + Sync>);

impl std::fmt::Debug for EchoGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EchoGuard")
    }
}

/// A CoAP client bound to one server (and one OSCORE context, if given): a thin async loop
/// around the sans-I/O [`Exchange`], [`Block1Upload`] and [`Block2Download`] that sends,
/// retransmits (RFC 7252 §4.2) and receives.
#[derive(Debug)]
pub struct Client {
    sock: UdpSocket,
    ctx: Option<SecurityContext>,
    cfg: ClientConfig,
    mid: u16,
    token: u32,
    rng: Jitter,
    buf: Vec<u8>,
    last_separate_mid: Option<u16>,
    echo_guard: Option<EchoGuard>,
}

impl Client {
    /// Binds an ephemeral local port and connects it to `server`.
    pub async fn connect(
        server: SocketAddr,
        ctx: Option<SecurityContext>,
        cfg: ClientConfig,
    ) -> Result<Self> {
        // Bind the loopback address for a loopback server, so the ephemeral port is not
        // reachable from other hosts; the unspecified address otherwise.
        let local: SocketAddr = match (server.is_ipv4(), server.ip().is_loopback()) {
            (true, true) => "127.0.0.1:0",
            (true, false) => "0.0.0.0:0",
            (false, true) => "[::1]:0",
            (false, false) => "[::]:0",
        }
        .parse()
        .map_err(|_| Error::MalformedMessage("bad local address"))?;
        let sock = UdpSocket::bind(local).await?;
        sock.connect(server).await?;
        let mut rng = Jitter::from_os();
        let mid = rng.next() as u16;
        let token = rng.next() as u32;
        let buf = vec![0u8; cfg.max_message + 1];
        Ok(Client {
            sock,
            ctx,
            cfg,
            mid,
            token,
            rng,
            buf,
            last_separate_mid: None,
            echo_guard: None,
        })
    }

    /// The security context (e.g. to flush it on shutdown).
    pub fn context_mut(&mut self) -> Option<&mut SecurityContext> {
        self.ctx.as_mut()
    }

    /// Ends the client and hands back its security context, with the sequence number where
    /// this client left it, so that the next client to the same peer continues in the same
    /// sequence number space. This is how one context is reused across successive clients:
    /// never derive a second context from the same parameters while the first is alive (it
    /// would reuse nonces).
    pub fn into_context(self) -> Option<SecurityContext> {
        self.ctx
    }

    /// GET with Block2 reassembly.
    pub async fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        let r = self.request(code::GET, path, &[]).await?;
        Ok(r.payload)
    }

    /// GET that hands each Block2 block to `sink` as it arrives instead of assembling the
    /// body in memory. Returns the total size.
    pub async fn get_with(
        &mut self,
        path: &str,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<usize> {
        let base = self.base_request(code::GET, path);
        let mut dl = Block2Download::new(base, 0, self.cfg.block_szx, 0, self.cfg.max_body);
        self.block2_loop(&mut dl, sink).await?;
        Ok(dl.offset())
    }

    /// GET that continues a partial download: blocks already in `body` are not fetched again
    /// (resuming an interrupted transfer from the last confirmed block).
    pub async fn get_resume(&mut self, path: &str, body: &mut Vec<u8>) -> Result<u8> {
        let size = 1usize << (self.cfg.block_szx + 4);
        body.truncate(body.len() / size * size);
        let first = (body.len() / size) as u32;
        let base = self.base_request(code::GET, path);
        let mut dl = Block2Download::new(
            base,
            first,
            self.cfg.block_szx,
            body.len(),
            self.cfg.max_body,
        );
        self.block2_loop(&mut dl, &mut |b| body.extend_from_slice(b))
            .await
    }

    /// One request, block-wise as needed: Block1 when the body exceeds one block, Block2 when
    /// the response is larger than one block. Error codes become [`Error::Response`].
    pub async fn request(&mut self, method: u8, path: &str, body: &[u8]) -> Result<Response> {
        let base = self.base_request(method, path);
        let size = 1usize << (self.cfg.block_szx + 4);
        let first = if body.len() > size {
            self.block1_upload(&base, body, self.cfg.block_szx).await?
        } else {
            let mut req = base.clone();
            if method == code::GET {
                // RFC 7959 §2.4: early negotiation of the block size.
                message::set(
                    &mut req,
                    opt::BLOCK2,
                    BlockValue::new(0, false, self.cfg.block_szx).encode(),
                );
            }
            req.payload = body.to_vec();
            let resp = self.exchange_retrying(req).await?;
            match too_large_hint(&resp) {
                // RFC 7959 §2.9.3: 4.13 with a Block1 option names the block size the server
                // wants; send the body block-wise with it.
                Some(szx) if !body.is_empty() => self.block1_upload(&base, body, szx).await?,
                _ => resp,
            }
        };
        let c = message::code_of(&first);
        if c >> 5 != 2 {
            return Err(response_error(&first));
        }
        let content_format =
            message::first(&first, opt::CONTENT_FORMAT).and_then(|v| message::uint_value(v).ok());
        let mut payload = first.payload.clone();
        if let Some(v) = message::first(&first, opt::BLOCK2) {
            let b = BlockValue::decode(v)?;
            if b.num != 0 {
                return Err(Error::Blockwise("first Block2 response is not block 0"));
            }
            if b.more {
                if payload.len() != b.size() {
                    return Err(Error::Blockwise("Block2 block of wrong size"));
                }
                let mut follow = base.clone();
                follow.payload.clear();
                let szx = b.szx.min(self.cfg.block_szx);
                let mut dl = Block2Download::new(follow, 1, szx, payload.len(), self.cfg.max_body);
                self.block2_loop(&mut dl, &mut |blk| payload.extend_from_slice(blk))
                    .await?;
            }
        }
        Ok(Response {
            code: c,
            payload,
            content_format,
        })
    }

    fn base_request(&mut self, method: u8, path: &str) -> Packet {
        let mut p = message::packet(MessageType::Confirmable, method, 0, &[]);
        message::set_path(&mut p, path);
        p
    }

    /// Runs a Block2 download to its end, handing each block to `sink`. Returns the final
    /// code.
    async fn block2_loop(
        &mut self,
        dl: &mut Block2Download,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u8> {
        loop {
            let resp = self.exchange_retrying(dl.request()).await?;
            let done = dl.on_response(&resp)?;
            sink(&resp.payload);
            if let Some(c) = done {
                return Ok(c);
            }
        }
    }

    /// Uploads `body` with Block1; returns the final response.
    async fn block1_upload(&mut self, base: &Packet, body: &[u8], szx: u8) -> Result<Packet> {
        let mut up = Block1Upload::new(base.clone(), body, szx.min(self.cfg.block_szx));
        loop {
            let resp = self.exchange_retrying(up.request()).await?;
            match up.on_response(resp)? {
                Block1Step::Next => {}
                Block1Step::Done(r) => return Ok(r),
            }
        }
    }

    /// One block exchange; on timeout it is retried (a fresh exchange of the same block).
    async fn exchange_retrying(&mut self, req: Packet) -> Result<Packet> {
        let mut attempt = 0;
        loop {
            match self.exchange(req.clone()).await {
                Err(Error::Timeout { .. }) if attempt < self.cfg.resume_attempts => attempt += 1,
                r => return r,
            }
        }
    }

    /// Sets a guard called before the client answers an Echo challenge (RFC 9175 §2.4): the
    /// server did not act on the request and will act on the repeat, so the guard decides
    /// whether the request is still wanted (e.g. a rollout still running). When it returns
    /// false, the request fails with [`Error::EchoRefused`] and is not repeated.
    pub fn set_echo_guard(&mut self, guard: Box<dyn FnMut() -> bool + Send + Sync>) {
        self.echo_guard = Some(EchoGuard(guard));
    }

    /// One request/response exchange, OSCORE-protected when a context is set. Answers Echo
    /// challenges (RFC 9175, RFC 8613 B.1.2) by repeating the request with the Echo value,
    /// after asking the guard ([`Client::set_echo_guard`]), at most
    /// [`MAX_ECHO_ROUNDS`](crate::endpoint::MAX_ECHO_ROUNDS) times.
    pub async fn exchange(&mut self, req: Packet) -> Result<Packet> {
        let mut ex = Exchange::new(req);
        loop {
            self.mid = self.mid.wrapping_add(1);
            self.token = self.token.wrapping_add(1);
            let outer = ex.outgoing(self.ctx.as_mut(), self.mid, &self.token.to_be_bytes())?;
            let bytes = message::encode(&outer, self.cfg.max_message)?;
            let resp = self.transmit(&bytes, self.mid, self.token).await?;
            match ex.on_response(self.ctx.as_mut(), &resp)? {
                Step::Echo(value) => {
                    if let Some(EchoGuard(g)) = self.echo_guard.as_mut()
                        && !g()
                    {
                        return Err(Error::EchoRefused);
                    }
                    ex.answer_echo(value)?;
                }
                Step::Response(p) => return Ok(p),
            }
        }
    }

    /// Sends a CON message and waits for the matching response (RFC 7252 §4.2, §5.2).
    async fn transmit(&mut self, bytes: &[u8], mid: u16, token: u32) -> Result<Packet> {
        let token = token.to_be_bytes();
        let factor = 1.0 + (self.cfg.ack_random_factor - 1.0).max(0.0) * self.rng.unit();
        let mut timeout = self.cfg.ack_timeout.mul_f64(factor);
        let mut sent = 1u32;
        // The previous exchange ended with a successful receive, so the runtime still marks
        // the socket readable and the first receive below would be a wasted syscall that
        // returns EAGAIN (a response cannot be there before the request is sent). Clearing
        // the mark makes the receive wait for the next readiness event instead. A datagram
        // that is already queued (a late duplicate) is still read when the answer arrives.
        let _ = self.sock.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        self.sock.send(bytes).await?;
        let mut deadline = Instant::now() + timeout;
        let mut acked = false;
        loop {
            let n = match tokio::time::timeout_at(deadline, self.sock.recv(&mut self.buf)).await {
                Ok(r) => match r {
                    Ok(n) => n,
                    // ICMP port unreachable on a connected socket: keep retransmitting.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                },
                Err(_) => {
                    if acked {
                        return Err(Error::Timeout { attempts: sent });
                    }
                    // RFC 7252 §4.2: retransmit with doubled timeout, MAX_RETRANSMIT times.
                    if sent > self.cfg.max_retransmit {
                        return Err(Error::Timeout { attempts: sent });
                    }
                    timeout *= 2;
                    sent += 1;
                    self.sock.send(bytes).await?;
                    deadline = Instant::now() + timeout;
                    continue;
                }
            };
            let Ok(p) = message::decode(&self.buf[..n], self.cfg.max_message) else {
                continue; // RFC 7252 §4.2: malformed messages are silently ignored here.
            };
            let t = p.header.get_type();
            let c = message::code_of(&p);
            match t {
                MessageType::Acknowledgement if p.header.message_id == mid => {
                    if c == 0 {
                        // RFC 7252 §5.2.2: empty ACK, a separate response follows.
                        acked = true;
                        deadline = Instant::now() + self.cfg.separate_timeout;
                        continue;
                    }
                    if p.get_token() == token {
                        return Ok(p);
                    }
                }
                MessageType::Reset if p.header.message_id == mid => return Err(Error::Reset),
                MessageType::Confirmable | MessageType::NonConfirmable
                    if c != 0 && p.get_token() == token =>
                {
                    if t == MessageType::Confirmable {
                        self.ack_empty(p.header.message_id).await?;
                        self.last_separate_mid = Some(p.header.message_id);
                    }
                    return Ok(p);
                }
                MessageType::Confirmable => {
                    // Duplicate of a separate response we already took: ACK again; else RST.
                    if self.last_separate_mid == Some(p.header.message_id) {
                        self.ack_empty(p.header.message_id).await?;
                    } else {
                        let rst = message::packet(MessageType::Reset, 0, p.header.message_id, &[]);
                        self.sock.send(&message::encode(&rst, 4)?).await?;
                    }
                }
                _ => {}
            }
        }
    }

    async fn ack_empty(&self, mid: u16) -> Result<()> {
        let ack = message::packet(MessageType::Acknowledgement, 0, mid, &[]);
        self.sock.send(&message::encode(&ack, 4)?).await?;
        Ok(())
    }
}
