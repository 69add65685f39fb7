//! Answers that must not make the endpoint an amplifier or a crash: the size bound on
//! answers to unauthenticated requests (RFC 7252 §11.3) and the rejection of datagrams that
//! do not decode (RFC 7252 §4.2).

use coap_lite::{MessageType, Packet};

use super::types::ServerConfig;
use crate::error::Error;
use crate::message::{self, code, opt};

/// The encoded size of `p` (`usize::MAX` when it does not encode, so it never passes a bound).
pub(super) fn encoded_len(p: &Packet) -> usize {
    message::encode(p, usize::MAX).map_or(usize::MAX, |b| b.len())
}

/// RFC 7252 §11.3 (amplification): an answer to a request that is not authenticated (no
/// OSCORE, a verification failure, an Echo challenge that would not fit) is never larger
/// than the request, so a peer that forges a victim's source address gains nothing. What
/// goes first: the diagnostic payload, then every option but Max-Age 0 (RFC 8613 §8.2),
/// then that too. The code alone (header and the request's token) is always as large as the
/// request's own header and token, so something always fits; `None` is kept for safety.
pub(super) fn no_larger_than(reply: Packet, request_len: usize) -> Option<Packet> {
    if encoded_len(&reply) <= request_len {
        return Some(reply);
    }
    let mut r = reply.clone();
    r.payload.clear();
    if encoded_len(&r) <= request_len {
        return Some(r);
    }
    let bare = message::packet(
        reply.header.get_type(),
        message::code_of(&reply),
        reply.header.message_id,
        reply.get_token(),
    );
    if message::first(&reply, opt::MAX_AGE).is_some() {
        let mut r = bare.clone();
        message::set(&mut r, opt::MAX_AGE, Vec::new());
        if encoded_len(&r) <= request_len {
            return Some(r);
        }
    }
    (encoded_len(&bare) <= request_len).then_some(bare)
}

/// A datagram that does not decode: RFC 7252 §4.2 rejection of a CON (4.13 when it is only
/// too large, so the sender can use smaller blocks, RFC 7959 §2.9.3; RST otherwise). Other
/// messages are ignored.
pub(super) fn reject_undecodable(bytes: &[u8], e: &Error, cfg: &ServerConfig) -> Option<Vec<u8>> {
    let is_con = bytes.len() >= 4 && (bytes[0] >> 4) & 3 == 0;
    if !is_con {
        return None;
    }
    let mid = u16::from_be_bytes([bytes[2], bytes[3]]);
    if matches!(e, Error::MessageTooLarge { .. }) {
        let mut tkl = usize::from(bytes[0] & 0x0f);
        if tkl > 8 || bytes.len() < 4 + tkl {
            tkl = 0;
        }
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
        return message::encode(&r, cfg.max_message).ok();
    }
    if bytes[0] >> 6 == 1 {
        let rst = message::packet(MessageType::Reset, 0, mid, &[]);
        return message::encode(&rst, 4).ok();
    }
    None
}
