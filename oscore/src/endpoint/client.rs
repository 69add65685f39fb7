//! The client side of a CoAP/OSCORE endpoint, without I/O: one request/response exchange
//! with its Echo challenges ([`Exchange`]), and the block-wise sequences of RFC 7959
//! ([`Block1Upload`], [`Block2Download`]). The caller sends and receives (with retransmission
//! and timeouts, `transport::Client`) and picks message ids and tokens.

use coap_lite::Packet;

use crate::block::BlockValue;
use crate::context::SecurityContext;
use crate::error::{Error, Result};
use crate::message::{self, code, opt};
use crate::protect::{self, RequestBinding};

/// Echo challenges answered in one exchange before giving up: a window recovery after the
/// server restarted and a freshness requirement can come together, and a repeat that arrives
/// too late for the server's freshness bound is challenged again.
pub const MAX_ECHO_ROUNDS: u32 = 4;

/// The smallest plaintext (inner code, Class E options and payload) of a protected request
/// our client sends. RFC 9175 §2.4 item 3: a server that mitigates amplification (ours does,
/// `ServerEndpoint`) sends an Echo challenge only in answer to a request at least as large.
/// A challenge is at most 40 bytes plus the token: header 4, OSCORE option with a Partial IV
/// of up to 5 bytes 7, payload marker 1, inner code 1, Echo option with a 16-byte value
/// (`echo::ECHO_LEN`) 19, tag 8. A protected request is at least 16 bytes plus the token,
/// its kid and this plaintext: header 4, OSCORE option 3 + kid, marker 1, tag 8. So a
/// plaintext of 24 bytes always gets its challenge, whatever the kid.
pub const MIN_REQUEST_PLAINTEXT: usize = 40 - 16;

/// Pads `request` with the elective [`opt::PADDING`] option until its plaintext has at least
/// [`MIN_REQUEST_PLAINTEXT`] bytes (a no-op for larger requests, and for one padded before).
pub fn pad_request(request: &mut Packet) -> Result<()> {
    if message::first(request, opt::PADDING).is_some() {
        return Ok(());
    }
    let len = protect::plaintext_of(request)?.len();
    let Some(need) = MIN_REQUEST_PLAINTEXT.checked_sub(len).filter(|n| *n > 0) else {
        return Ok(());
    };
    // The option follows every other one (the highest number), so its delta takes a 2-byte
    // extension: 3 bytes of header for a value of 0-12 bytes, 4 for 13-268 (RFC 7252 §3.1).
    let value_len = if need <= 3 + 12 {
        need.saturating_sub(3)
    } else {
        (need - 4).max(13)
    };
    message::set(request, opt::PADDING, vec![0; value_len]);
    Ok(())
}

/// What a response to one transmission of an [`Exchange`] means.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// The (inner, verified) response.
    Response(Packet),
    /// RFC 9175 §2.4: 4.01 with an Echo value; nothing was done. Repeat the request with it
    /// ([`Exchange::answer_echo`]) if the caller still wants it done, e.g. after checking that
    /// it is still allowed: the repeat is what the server will act on.
    Echo(Vec<u8>),
}

/// One request/response exchange, OSCORE-protected when the caller passes a context.
#[derive(Debug)]
pub struct Exchange {
    request: Packet,
    binding: Option<RequestBinding>,
    echo_rounds: u32,
}

impl Exchange {
    /// An exchange of `request` (an inner request; its message id and token are set by
    /// [`Exchange::outgoing`]).
    pub fn new(request: Packet) -> Self {
        Exchange {
            request,
            binding: None,
            echo_rounds: 0,
        }
    }

    /// The outer message of the next transmission, with message id `mid` and `token`.
    /// Every call protects anew (RFC 8613 §8.1: a new sequence number); retransmissions of
    /// one transmission resend the same bytes and do not call this again.
    pub fn outgoing(
        &mut self,
        ctx: Option<&mut SecurityContext>,
        mid: u16,
        token: &[u8],
    ) -> Result<Packet> {
        self.request.header.message_id = mid;
        self.request.set_token(token.to_vec());
        let Some(ctx) = ctx else {
            self.binding = None;
            return Ok(self.request.clone());
        };
        // Small requests are padded so that a server that restarted (or asks for freshness)
        // can send its Echo challenge without answering with more than it received.
        pad_request(&mut self.request)?;
        let (outer, binding) = protect::protect_request(ctx, &self.request)?;
        self.binding = Some(binding);
        Ok(outer)
    }

    /// Verifies the response to the last transmission (RFC 8613 §8.4) and classifies it.
    /// Error codes other than an Echo challenge come back as [`Step::Response`]; the caller
    /// maps them (see [`response_error`]).
    pub fn on_response(
        &mut self,
        ctx: Option<&mut SecurityContext>,
        resp: &Packet,
    ) -> Result<Step> {
        let (Some(ctx), Some(binding)) = (ctx, self.binding.as_ref()) else {
            return Ok(Step::Response(resp.clone()));
        };
        if protect::oscore_option(resp)?.is_none() {
            // RFC 8613 §8.2: verification errors come back unprotected; anything else
            // unprotected (e.g. an injected 2.05) is never taken as an answer.
            if message::code_of(resp) >> 5 == 2 {
                return Err(Error::NotProtected);
            }
            return Err(response_error(resp));
        }
        let inner = protect::unprotect_response(ctx, binding, resp)?;
        // RFC 9175 §2.4: 4.01 with Echo → the request may be repeated with the Echo value.
        if message::code_of(&inner) == code::UNAUTHORIZED
            && let Some(echo) = message::first(&inner, opt::ECHO)
        {
            return Ok(Step::Echo(echo.clone()));
        }
        Ok(Step::Response(inner))
    }

    /// Puts `value` into the request for the next transmission (RFC 9175 §2.4). At most
    /// [`MAX_ECHO_ROUNDS`] times per exchange.
    pub fn answer_echo(&mut self, value: Vec<u8>) -> Result<()> {
        self.echo_rounds += 1;
        if self.echo_rounds > MAX_ECHO_ROUNDS {
            return Err(Error::EchoLoop {
                rounds: MAX_ECHO_ROUNDS,
            });
        }
        message::set(&mut self.request, opt::ECHO, value);
        Ok(())
    }
}

/// An error response as [`Error::Response`] (code and up to 200 characters of diagnostic).
pub fn response_error(p: &Packet) -> Error {
    Error::Response {
        code: message::code_string(message::code_of(p)),
        diagnostic: String::from_utf8_lossy(&p.payload)
            .chars()
            .take(200)
            .collect(),
    }
}

/// The block size exponent a 4.13 response asks for (RFC 7959 §2.9.3), if any.
pub fn too_large_hint(p: &Packet) -> Option<u8> {
    if message::code_of(p) != code::REQUEST_ENTITY_TOO_LARGE {
        return None;
    }
    message::first(p, opt::BLOCK1)
        .and_then(|v| BlockValue::decode(v).ok())
        .map(|b| b.szx)
}

/// What to do after a Block1 response.
#[derive(Debug)]
#[non_exhaustive]
pub enum Block1Step {
    /// Send [`Block1Upload::request`] (the next block, or block 0 again at a smaller size).
    Next,
    /// The final response (to the last block, or an early final answer of the server).
    Done(Packet),
}

/// A Block1 upload (RFC 7959 §2.3, §2.5, §2.9.3): which block to send next.
#[derive(Debug)]
pub struct Block1Upload<'a> {
    base: Packet,
    body: &'a [u8],
    szx: u8,
    offset: usize,
    restarted: bool,
}

impl<'a> Block1Upload<'a> {
    /// Uploads `body` with `base` (method, path and options) in blocks of size exponent
    /// `szx`.
    pub fn new(base: Packet, body: &'a [u8], szx: u8) -> Self {
        Block1Upload {
            base,
            body,
            szx: szx.min(6),
            offset: 0,
            restarted: false,
        }
    }

    fn bounds(&self) -> (u32, usize, bool) {
        let size = 1usize << (self.szx + 4);
        let num = (self.offset / size) as u32;
        let end = (self.offset + size).min(self.body.len());
        (num, end, end < self.body.len())
    }

    /// The request carrying the current block.
    pub fn request(&self) -> Packet {
        let (num, end, more) = self.bounds();
        let mut req = self.base.clone();
        message::set(
            &mut req,
            opt::BLOCK1,
            BlockValue::new(num, more, self.szx).encode(),
        );
        if num == 0 {
            // RFC 7959 §4: Size1 announces the total size.
            message::set(
                &mut req,
                opt::SIZE1,
                message::uint_bytes(self.body.len() as u32),
            );
        }
        req.payload = self.body[self.offset..end].to_vec();
        req
    }

    /// Takes the (inner) response to [`Block1Upload::request`].
    pub fn on_response(&mut self, resp: Packet) -> Result<Block1Step> {
        let (num, end, more) = self.bounds();
        let c = message::code_of(&resp);
        if c == code::REQUEST_ENTITY_TOO_LARGE {
            // RFC 7959 §2.9.3: a smaller block size in the 4.13 means "start over with it";
            // anything else (Size1 below the body size) is final.
            return match too_large_hint(&resp) {
                Some(hint) if hint < self.szx && !self.restarted => {
                    self.szx = hint;
                    self.offset = 0;
                    self.restarted = true;
                    Ok(Block1Step::Next)
                }
                _ => Err(response_error(&resp)),
            };
        }
        if c >> 5 != 2 {
            return Err(response_error(&resp));
        }
        // RFC 7959 §2.3: a final response before the last block ends the transfer.
        if !more || c != code::CONTINUE {
            return Ok(Block1Step::Done(resp));
        }
        let Some(v) = message::first(&resp, opt::BLOCK1) else {
            return Err(Error::Blockwise("2.31 without Block1"));
        };
        let b = BlockValue::decode(v)?;
        if b.num != num {
            return Err(Error::Blockwise("2.31 for another block"));
        }
        self.offset = end;
        // RFC 7959 §2.5: late negotiation, the server may ask for smaller blocks.
        if b.szx < self.szx {
            self.szx = b.szx;
        }
        Ok(Block1Step::Next)
    }
}

/// A Block2 download (RFC 7959 §2.4): which block to ask for next, and the checks on each
/// block received.
#[derive(Debug)]
pub struct Block2Download {
    base: Packet,
    num: u32,
    szx: u8,
    offset: usize,
    max_body: usize,
}

impl Block2Download {
    /// Continues a download of `base` at block `num` of size exponent `szx`, with `offset`
    /// bytes already held (0 for a new download), refusing more than `max_body` in all.
    pub fn new(base: Packet, num: u32, szx: u8, offset: usize, max_body: usize) -> Self {
        Block2Download {
            base,
            num,
            szx: szx.min(6),
            offset,
            max_body,
        }
    }

    /// Bytes received so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The request for the next block.
    pub fn request(&self) -> Packet {
        let mut req = self.base.clone();
        message::set(
            &mut req,
            opt::BLOCK2,
            BlockValue::new(self.num, false, self.szx).encode(),
        );
        req
    }

    /// Checks the (inner) response to [`Block2Download::request`]. On success its payload is
    /// the next piece of the body (hand it to the sink); `Some(code)` when it was the last.
    pub fn on_response(&mut self, resp: &Packet) -> Result<Option<u8>> {
        let c = message::code_of(resp);
        if c >> 5 != 2 {
            return Err(response_error(resp));
        }
        let Some(v) = message::first(resp, opt::BLOCK2) else {
            if self.num == 0 && self.offset == 0 {
                // RFC 7959 §2.2: a server may answer a small representation whole.
                self.check_total(resp.payload.len())?;
                self.offset = resp.payload.len();
                return Ok(Some(c));
            }
            // The representation is no longer block-wise: it changed under us.
            return Err(Error::Blockwise("Block2 missing in a follow-up response"));
        };
        let b = BlockValue::decode(v)?;
        // RFC 7959 §2.4: the server may use a smaller size; offsets must match.
        if b.offset() != self.offset {
            return Err(Error::Blockwise("Block2 response for an unexpected offset"));
        }
        if b.more && resp.payload.len() != b.size() {
            return Err(Error::Blockwise("Block2 block of wrong size"));
        }
        self.check_total(self.offset + resp.payload.len())?;
        self.offset += resp.payload.len();
        if !b.more {
            return Ok(Some(c));
        }
        self.szx = b.szx;
        self.num = (self.offset / b.size()) as u32;
        Ok(None)
    }

    fn check_total(&self, len: usize) -> Result<()> {
        if len > self.max_body {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_body,
            });
        }
        Ok(())
    }
}
