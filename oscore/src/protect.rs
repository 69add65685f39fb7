//! Protecting and verifying messages (RFC 8613 §4, §6, §8).

use coap_lite::{CoapOption, MessageType, Packet};
use subtle::ConstantTimeEq;

use crate::context::{self, NONCE_LEN, SecurityContext, piv_from_seq, seq_from_piv};
use crate::error::{Error, Result};
use crate::message::{self, code, opt};

/// Decoded OSCORE option value (RFC 8613 §6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OscoreOption {
    /// Partial IV.
    pub piv: Option<Vec<u8>>,
    /// kid context.
    pub kid_context: Option<Vec<u8>>,
    /// kid.
    pub kid: Option<Vec<u8>>,
}

impl OscoreOption {
    /// Strictly decodes an option value.
    pub fn decode(v: &[u8]) -> Result<Self> {
        // RFC 8613 §6.1: an all-zero flag byte is sent as an empty option; empty = no fields.
        let Some((&flags, mut rest)) = v.split_first() else {
            return Ok(OscoreOption::default());
        };
        if flags == 0 {
            return Err(Error::MalformedOscoreOption(
                "flag byte 0x00 must be sent as an empty option",
            ));
        }
        // RFC 8613 §6.1: bits 0-2 (0xe0) are reserved and MUST be zero (no extension byte).
        if flags & 0xe0 != 0 {
            return Err(Error::MalformedOscoreOption("reserved flag bits set"));
        }
        let n = usize::from(flags & 0x07);
        // RFC 8613 §6.1: n = 6 and 7 are reserved.
        if n > 5 {
            return Err(Error::MalformedOscoreOption("reserved Partial IV length"));
        }
        let mut out = OscoreOption::default();
        if n > 0 {
            if rest.len() < n {
                return Err(Error::MalformedOscoreOption("truncated Partial IV"));
            }
            let (piv, r) = rest.split_at(n);
            // RFC 8613 §6.1: the Partial IV is encoded in the fewest bytes (leading zero only
            // for the single byte 0x00).
            if n > 1 && piv[0] == 0 {
                return Err(Error::MalformedOscoreOption("non-minimal Partial IV"));
            }
            out.piv = Some(piv.to_vec());
            rest = r;
        }
        if flags & 0x10 != 0 {
            let (&s, r) = rest
                .split_first()
                .ok_or(Error::MalformedOscoreOption("missing kid context length"))?;
            let s = usize::from(s);
            if r.len() < s {
                return Err(Error::MalformedOscoreOption("truncated kid context"));
            }
            out.kid_context = Some(r[..s].to_vec());
            rest = &r[s..];
        }
        if flags & 0x08 != 0 {
            out.kid = Some(rest.to_vec());
        } else if !rest.is_empty() {
            return Err(Error::MalformedOscoreOption(
                "trailing bytes without k flag",
            ));
        }
        Ok(out)
    }

    /// Encodes the value (empty when no field is present).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        let mut v = vec![0];
        if let Some(p) = &self.piv {
            flags |= p.len() as u8 & 0x07;
            v.extend_from_slice(p);
        }
        if let Some(c) = &self.kid_context {
            flags |= 0x10;
            v.push(c.len() as u8);
            v.extend_from_slice(c);
        }
        if let Some(k) = &self.kid {
            flags |= 0x08;
            v.extend_from_slice(k);
        }
        if flags == 0 {
            return Vec::new();
        }
        v[0] = flags;
        v
    }
}

/// What binds a response to its request (RFC 8613 §5.4: request_kid, request_piv), plus the
/// request nonce for responses without their own Partial IV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBinding {
    /// kid of the request (the client's Sender ID).
    pub kid: Vec<u8>,
    /// Partial IV of the request.
    pub piv: Vec<u8>,
    /// AEAD nonce of the request.
    pub nonce: [u8; NONCE_LEN],
}

/// Freshness of a verified request (RFC 8613 §7.4, Appendix B.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// Checked against the replay window (or proven by Echo): process it.
    Fresh,
    /// Authentic, but the replay window is lost: answer 4.01 with an Echo option, protected
    /// with the server's own Partial IV, and do not act on the request.
    NeedsEcho,
}

/// A request that passed verification.
#[derive(Debug)]
pub struct VerifiedRequest {
    /// The reconstructed inner request (outer Class U options, inner Class E options).
    pub request: Packet,
    /// Binding for the response.
    pub binding: RequestBinding,
    /// Sequence number of the request.
    pub seq: u64,
    /// Freshness verdict.
    pub freshness: Freshness,
}

/// RFC 8613 §4.1: options that stay outer (Class U). Everything else we carry is Class E.
/// Observe (E and U) is not supported by this implementation.
fn is_class_u(n: u16) -> bool {
    matches!(n, opt::URI_HOST | opt::URI_PORT | opt::PROXY_SCHEME)
}

/// Builds the plaintext: code | Class E options | 0xff payload (RFC 8613 §5.3).
pub(crate) fn plaintext_of(msg: &Packet) -> Result<Vec<u8>> {
    let mut pt = Vec::with_capacity(1 + 48 + msg.payload.len() + 1 + context::TAG_LEN);
    pt.push(message::code_of(msg));
    message::encode_options(
        &mut pt,
        msg.options()
            .filter(|(n, _)| !is_class_u(**n) && **n != opt::OSCORE),
    )?;
    if !msg.payload.is_empty() {
        pt.push(0xff);
        pt.extend_from_slice(&msg.payload);
    }
    Ok(pt)
}

/// Parses a decrypted plaintext into (code, inner options/payload packet).
fn parse_plaintext(pt: &[u8]) -> Result<Packet> {
    let (&code, rest) = pt
        .split_first()
        .ok_or(Error::MalformedMessage("empty plaintext"))?;
    let mut buf = Vec::with_capacity(pt.len() + 3);
    buf.extend_from_slice(&[0x40, 0x01, 0, 0]);
    buf.extend_from_slice(rest);
    let mut p = message::decode(&buf, usize::MAX)
        .map_err(|_| Error::MalformedMessage("malformed inner message"))?;
    // RFC 8613 §4.1: the OSCORE option and Class U options never appear inside.
    if p.options()
        .any(|(n, _)| *n == opt::OSCORE || is_class_u(*n))
    {
        return Err(Error::MalformedMessage(
            "OSCORE or Class U option inside the plaintext",
        ));
    }
    message::set_code(&mut p, code);
    Ok(p)
}

/// Outer message: same type, id and token; Class U options, the OSCORE option, ciphertext.
fn outer_of(msg: &Packet, outer_code: u8, oscore_value: Vec<u8>, ciphertext: Vec<u8>) -> Packet {
    let mut out = Packet::new();
    take_outer(&mut out, msg, outer_code);
    out.add_option(CoapOption::Oscore, oscore_value);
    out.payload = ciphertext;
    out
}

/// What `to` keeps of the outer message `msg`: its header (type, message id), `code`, its
/// token and its Class U options.
fn take_outer(to: &mut Packet, msg: &Packet, code: u8) {
    to.header = msg.header.clone();
    message::set_code(to, code);
    to.set_token(msg.get_token().to_vec());
    for (n, values) in msg.options() {
        if is_class_u(*n) {
            to.set_option(CoapOption::from(*n), values.clone());
        }
    }
}

/// Protects a request (RFC 8613 §8.1). Returns the outer message and the binding needed to
/// verify the response.
pub fn protect_request(
    ctx: &mut SecurityContext,
    request: &Packet,
) -> Result<(Packet, RequestBinding)> {
    let c = message::code_of(request);
    if !message::is_request_code(c) {
        return Err(Error::BadInnerCode { code: c });
    }
    // RFC 8613 §4.1.3.3: Proxy-Uri must be decomposed first; we do not act as a forward proxy
    // client, so refuse rather than leak the path.
    if message::first(request, opt::PROXY_URI).is_some() {
        return Err(Error::Unsupported("Proxy-Uri"));
    }
    // §8.1 step 2: take the next sender sequence number (persisted ahead, Appendix B.1.1).
    let seq = ctx.seq.take()?;
    let (piv_buf, piv_len) = piv_from_seq(seq);
    let piv = &piv_buf[..piv_len];
    // §8.1 step 3: nonce from the Sender ID and the Partial IV; AAD from kid and Partial IV.
    let nonce = context::nonce(&ctx.common_iv, &ctx.sender_id, piv);
    let aad = context::aad(&ctx.sender_id, piv);
    let mut buf = plaintext_of(request)?;
    ctx.sender.seal(&nonce, &aad, &mut buf)?;
    // §6.1: flags | piv | kid context (if any) | kid. The kid context is sent when configured.
    let o = OscoreOption {
        piv: Some(piv.to_vec()),
        kid_context: ctx.id_context.clone(),
        kid: Some(ctx.sender_id.clone()),
    };
    // §4.2: the outer code of a request is POST (FETCH only with Observe, unsupported).
    let outer = outer_of(request, code::POST, o.encode(), buf);
    Ok((
        outer,
        RequestBinding {
            kid: ctx.sender_id.clone(),
            piv: piv.to_vec(),
            nonce,
        },
    ))
}

/// Reads the OSCORE option of a received message (None when absent).
pub fn oscore_option(msg: &Packet) -> Result<Option<OscoreOption>> {
    match msg.get_option(CoapOption::Oscore) {
        None => Ok(None),
        Some(list) => {
            // RFC 7252 §5.4.5: OSCORE is not repeatable.
            if list.len() != 1 {
                return Err(Error::MalformedOscoreOption("repeated OSCORE option"));
            }
            let v = list
                .front()
                .ok_or(Error::MalformedOscoreOption("missing value"))?;
            OscoreOption::decode(v).map(Some)
        }
    }
}

/// Verifies a request with the context selected for its kid (RFC 8613 §8.2). The caller has
/// looked the context up with [`oscore_option`]; this checks the kid (context) again. With a
/// lost replay window, the request is fresh only when it echoes the value last set with
/// [`set_echo_challenge`] (see [`unprotect_request_with`] for other Echo schemes).
pub fn unprotect_request(ctx: &mut SecurityContext, msg: &Packet) -> Result<VerifiedRequest> {
    let challenge = ctx.echo_challenge.clone();
    let mut matches = |e: &[u8]| {
        challenge
            .as_deref()
            .is_some_and(|ch| bool::from(e.ct_eq(ch)))
    };
    let v = unprotect_request_with(ctx, msg, &mut matches)?;
    if v.freshness == Freshness::Fresh && challenge.is_some() && ctx.echo_challenge == challenge {
        // A challenge is answered once.
        if message::first(&v.request, opt::ECHO).is_some() {
            ctx.echo_challenge = None;
        }
    }
    Ok(v)
}

/// As [`unprotect_request`], with the server's own test of an Echo value: while the replay
/// window is lost (RFC 8613 Appendix B.1.2), the request is [`Freshness::Fresh`] (and the
/// window restarts at its sequence number) only when it carries an Echo option for which
/// `proves_fresh` returns true; otherwise it is [`Freshness::NeedsEcho`] and the window is
/// left as it was.
pub fn unprotect_request_with(
    ctx: &mut SecurityContext,
    msg: &Packet,
    proves_fresh: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<VerifiedRequest> {
    let o = oscore_option(msg)?.ok_or(Error::NotProtected)?;
    // §8.2 step 2: a request carries kid and Partial IV.
    let kid = o.kid.ok_or(Error::MissingField("kid"))?;
    let piv = o.piv.ok_or(Error::MissingField("Partial IV"))?;
    // §8.2 step 2: the kid (and kid context, when sent) must select this context.
    let ctx_ok = match (&o.kid_context, &ctx.id_context) {
        (Some(got), Some(have)) => got == have,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if kid != ctx.recipient_id || !ctx_ok {
        return Err(Error::UnknownKid {
            kid_hex: hex::encode(&kid),
        });
    }
    let seq = seq_from_piv(&piv);
    // §8.2 step 3 / §7.4: replay check before decryption; a lost window needs Echo (B.1.2).
    let window_lost = match ctx.replay.check(seq) {
        Ok(()) => false,
        Err(Error::EchoRequired) => true,
        Err(e) => return Err(e),
    };
    // §8.2 steps 4-6: AAD, nonce (kid as ID_PIV), decrypt.
    let nonce = context::nonce(&ctx.common_iv, &kid, &piv);
    let aad = context::aad(&kid, &piv);
    let mut buf = msg.payload.clone();
    ctx.recipient.open(&nonce, &aad, &mut buf)?;
    let inner = parse_plaintext(&buf)?;
    let c = message::code_of(&inner);
    if !message::is_request_code(c) {
        return Err(Error::BadInnerCode { code: c });
    }
    let freshness = if window_lost {
        // RFC 8613 B.1.2 / RFC 9175 §2.4: accept when it echoes a value that proves it was
        // made after the window was lost.
        match message::first(&inner, opt::ECHO) {
            Some(e) if proves_fresh(e) => {
                ctx.replay.reinit(seq);
                Freshness::Fresh
            }
            _ => Freshness::NeedsEcho,
        }
    } else {
        // §7.4: update the window only after successful verification.
        ctx.replay.record(seq);
        Freshness::Fresh
    };
    // §8.2 step 7: inner Class E options + outer Class U options; outer Class E discarded.
    let mut request = inner;
    take_outer(&mut request, msg, c);
    Ok(VerifiedRequest {
        request,
        binding: RequestBinding { kid, piv, nonce },
        seq,
        freshness,
    })
}

/// Sets the Echo challenge value the server sends in its 4.01 (RFC 9175 §2.4). The value
/// comes from the caller's RNG (the core has none).
pub fn set_echo_challenge(ctx: &mut SecurityContext, value: Vec<u8>) {
    ctx.echo_challenge = Some(value);
}

/// Protects a response (RFC 8613 §8.3). With `own_piv` the response uses a fresh Partial IV
/// from the server's sequence number (§8.3 step 3: required when the request nonce must not
/// be reused, e.g. answers to possibly replayed requests, B.1.2); otherwise the request nonce.
pub fn protect_response(
    ctx: &mut SecurityContext,
    binding: &RequestBinding,
    response: &Packet,
    own_piv: bool,
) -> Result<Packet> {
    let c = message::code_of(response);
    if !message::is_response_code(c) {
        return Err(Error::BadInnerCode { code: c });
    }
    // §5.4: the AAD always uses the request's kid and Partial IV.
    let aad = context::aad(&binding.kid, &binding.piv);
    let (nonce, o) = if own_piv {
        let seq = ctx.seq.take()?;
        let (b, l) = piv_from_seq(seq);
        let piv = b[..l].to_vec();
        let n = context::nonce(&ctx.common_iv, &ctx.sender_id, &piv);
        (
            n,
            OscoreOption {
                piv: Some(piv),
                ..Default::default()
            },
        )
    } else {
        (binding.nonce, OscoreOption::default())
    };
    let mut buf = plaintext_of(response)?;
    ctx.sender.seal(&nonce, &aad, &mut buf)?;
    // §4.2: the outer code of a response is 2.04 Changed.
    Ok(outer_of(response, code::CHANGED, o.encode(), buf))
}

/// Verifies a response to the request identified by `binding` (RFC 8613 §8.4).
pub fn unprotect_response(
    ctx: &mut SecurityContext,
    binding: &RequestBinding,
    msg: &Packet,
) -> Result<Packet> {
    let o = oscore_option(msg)?.ok_or(Error::NotProtected)?;
    // §8.4 step 3: with a Partial IV, the nonce uses the server's id; else the request nonce.
    let nonce = match &o.piv {
        Some(piv) => context::nonce(&ctx.common_iv, &ctx.recipient_id, piv),
        None => binding.nonce,
    };
    let aad = context::aad(&binding.kid, &binding.piv);
    let mut buf = msg.payload.clone();
    ctx.recipient.open(&nonce, &aad, &mut buf)?;
    let mut inner = parse_plaintext(&buf)?;
    let c = message::code_of(&inner);
    if !message::is_response_code(c) {
        return Err(Error::BadInnerCode { code: c });
    }
    inner.header = msg.header.clone();
    message::set_code(&mut inner, c);
    inner.set_token(msg.get_token().to_vec());
    Ok(inner)
}

/// An unprotected error response for a failed verification (RFC 8613 §8.2: such errors are
/// sent without OSCORE), with a diagnostic payload and Max-Age 0 (§8.2 note on caching).
pub fn error_response(request: &Packet, err: &Error) -> Packet {
    let (c, diag) = err.server_code();
    let t = if request.header.get_type() == MessageType::Confirmable {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    };
    let mut p = message::packet(t, c, request.header.message_id, request.get_token());
    p.add_option(CoapOption::MaxAge, Vec::new());
    p.payload = diag.as_bytes().to_vec();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_roundtrip_and_strictness() {
        for hex_v in ["0914", "091400", "19140837cbf3210017a2d3", "0100", ""] {
            let v = hex::decode(hex_v).unwrap();
            assert_eq!(OscoreOption::decode(&v).unwrap().encode(), v, "{hex_v}");
        }
        for bad in ["00", "20", "06", "0201", "02", "10", "1105", "0114aa"] {
            assert!(
                OscoreOption::decode(&hex::decode(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
