//! CoAP client over tokio UDP with OSCORE and block-wise transfer.

use std::net::SocketAddr;

use coap_lite::{MessageType, Packet};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{ClientConfig, Jitter};
use crate::block::BlockValue;
use crate::context::SecurityContext;
use crate::error::{Error, Result};
use crate::message::{self, code, opt};
use crate::protect;

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

/// A CoAP client bound to one server (and one OSCORE context, if given).
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
        let mut total = 0usize;
        self.block2_loop(&base, 0, self.cfg.block_szx, &mut total, sink)
            .await?;
        Ok(total)
    }

    /// GET that continues a partial download: blocks already in `body` are not fetched again
    /// (resuming an interrupted transfer from the last confirmed block).
    pub async fn get_resume(&mut self, path: &str, body: &mut Vec<u8>) -> Result<u8> {
        let size = 1usize << (self.cfg.block_szx + 4);
        body.truncate(body.len() / size * size);
        let first = (body.len() / size) as u32;
        let base = self.base_request(code::GET, path);
        let mut offset = body.len();
        self.block2_loop(&base, first, self.cfg.block_szx, &mut offset, &mut |b| {
            body.extend_from_slice(b)
        })
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
                let mut offset = payload.len();
                let max = self.cfg.max_body;
                let mut too_big = false;
                self.block2_loop(&follow, 1, b.szx, &mut offset, &mut |blk| {
                    if payload.len() + blk.len() > max {
                        too_big = true;
                    } else {
                        payload.extend_from_slice(blk);
                    }
                })
                .await?;
                if too_big {
                    return Err(Error::MessageTooLarge { len: offset, max });
                }
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

    /// Fetches Block2 blocks from `num` on; `offset` is the number of bytes already held
    /// and advances with every block handed to `sink`. Returns the final code.
    async fn block2_loop(
        &mut self,
        base: &Packet,
        mut num: u32,
        mut szx: u8,
        offset: &mut usize,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u8> {
        szx = szx.min(self.cfg.block_szx);
        loop {
            let mut req = base.clone();
            message::set(
                &mut req,
                opt::BLOCK2,
                BlockValue::new(num, false, szx).encode(),
            );
            let resp = self.exchange_retrying(req).await?;
            let c = message::code_of(&resp);
            if c >> 5 != 2 {
                return Err(response_error(&resp));
            }
            let Some(v) = message::first(&resp, opt::BLOCK2) else {
                if num == 0 && *offset == 0 {
                    // RFC 7959 §2.2: a server may answer a small representation whole.
                    sink(&resp.payload);
                    *offset = resp.payload.len();
                    return Ok(c);
                }
                // The representation is no longer block-wise: it changed under us.
                return Err(Error::Blockwise("Block2 missing in a follow-up response"));
            };
            let b = BlockValue::decode(v)?;
            // RFC 7959 §2.4: the server may use a smaller size; offsets must match.
            if b.offset() != *offset {
                return Err(Error::Blockwise("Block2 response for an unexpected offset"));
            }
            if b.more && resp.payload.len() != b.size() {
                return Err(Error::Blockwise("Block2 block of wrong size"));
            }
            if *offset + resp.payload.len() > self.cfg.max_body {
                return Err(Error::MessageTooLarge {
                    len: *offset + resp.payload.len(),
                    max: self.cfg.max_body,
                });
            }
            sink(&resp.payload);
            *offset += resp.payload.len();
            if !b.more {
                return Ok(c);
            }
            szx = b.szx;
            num = (*offset / b.size()) as u32;
        }
    }

    /// Uploads `body` with Block1; returns the final response.
    async fn block1_upload(&mut self, base: &Packet, body: &[u8], szx: u8) -> Result<Packet> {
        let mut szx = szx.min(self.cfg.block_szx);
        let mut restarted = false;
        let mut offset = 0usize;
        loop {
            let size = 1usize << (szx + 4);
            let num = (offset / size) as u32;
            let end = (offset + size).min(body.len());
            let more = end < body.len();
            let mut req = base.clone();
            message::set(
                &mut req,
                opt::BLOCK1,
                BlockValue::new(num, more, szx).encode(),
            );
            if num == 0 {
                // RFC 7959 §4: Size1 announces the total size.
                message::set(&mut req, opt::SIZE1, message::uint_bytes(body.len() as u32));
            }
            req.payload = body[offset..end].to_vec();
            let resp = self.exchange_retrying(req).await?;
            let c = message::code_of(&resp);
            if c == code::REQUEST_ENTITY_TOO_LARGE {
                // RFC 7959 §2.9.3: a smaller block size in the 4.13 means "start over with
                // it"; anything else (Size1 below the body size) is final.
                match too_large_hint(&resp) {
                    Some(hint) if hint < szx && !restarted => {
                        szx = hint;
                        offset = 0;
                        restarted = true;
                        continue;
                    }
                    _ => return Err(response_error(&resp)),
                }
            }
            if c >> 5 != 2 {
                return Err(response_error(&resp));
            }
            let echoed = match message::first(&resp, opt::BLOCK1) {
                Some(v) => Some(BlockValue::decode(v)?),
                None => None,
            };
            if !more {
                return Ok(resp);
            }
            if c != code::CONTINUE {
                // RFC 7959 §2.3: a final response before the last block ends the transfer.
                return Ok(resp);
            }
            let Some(b) = echoed else {
                return Err(Error::Blockwise("2.31 without Block1"));
            };
            if b.num != num {
                return Err(Error::Blockwise("2.31 for another block"));
            }
            offset = end;
            // RFC 7959 §2.5: late negotiation, the server may ask for smaller blocks.
            if b.szx < szx {
                szx = b.szx;
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

    /// One request/response exchange, OSCORE-protected when a context is set. Handles the
    /// Echo challenge of RFC 9175 / RFC 8613 B.1.2 by repeating the request once with Echo.
    pub async fn exchange(&mut self, mut req: Packet) -> Result<Packet> {
        for _ in 0..2 {
            self.mid = self.mid.wrapping_add(1);
            self.token = self.token.wrapping_add(1);
            req.header.message_id = self.mid;
            req.set_token(self.token.to_be_bytes().to_vec());
            let Some(ctx) = self.ctx.as_mut() else {
                let bytes = message::encode(&req, self.cfg.max_message)?;
                return self.transmit(&bytes, self.mid, self.token).await;
            };
            let (outer, binding) = protect::protect_request(ctx, &req)?;
            let bytes = message::encode(&outer, self.cfg.max_message)?;
            let resp = self.transmit(&bytes, self.mid, self.token).await?;
            if protect::oscore_option(&resp)?.is_none() {
                // RFC 8613 §8.2: verification errors come back unprotected; anything else
                // unprotected (e.g. an injected 2.05) is never taken as an answer.
                if message::code_of(&resp) >> 5 == 2 {
                    return Err(Error::NotProtected);
                }
                return Err(response_error(&resp));
            }
            let ctx = self.ctx.as_mut().ok_or(Error::NotProtected)?;
            let inner = protect::unprotect_response(ctx, &binding, &resp)?;
            // RFC 9175 §2.4: 4.01 with Echo → repeat the request with the Echo value.
            if message::code_of(&inner) == code::UNAUTHORIZED
                && let Some(echo) = message::first(&inner, opt::ECHO)
            {
                message::set(&mut req, opt::ECHO, echo.clone());
                continue;
            }
            return Ok(inner);
        }
        Err(Error::Blockwise("peer kept asking for Echo"))
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

/// The block size exponent a 4.13 response asks for (RFC 7959 §2.9.3), if any.
fn too_large_hint(p: &Packet) -> Option<u8> {
    if message::code_of(p) != code::REQUEST_ENTITY_TOO_LARGE {
        return None;
    }
    message::first(p, opt::BLOCK1)
        .and_then(|v| BlockValue::decode(v).ok())
        .map(|b| b.szx)
}

fn response_error(p: &Packet) -> Error {
    Error::Response {
        code: message::code_string(message::code_of(p)),
        diagnostic: String::from_utf8_lossy(&p.payload)
            .chars()
            .take(200)
            .collect(),
    }
}
