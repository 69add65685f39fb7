//! Strict, bounded decoding of CoAP datagrams (RFC 7252 §3) on top of `coap-lite`, option
//! numbers in one place, and small helpers for uint option values.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet};

use crate::error::{Error, Result};

/// CoAP option numbers used here (RFC 7252 §12.2, RFC 7959 §6, RFC 8613 §2, RFC 9175 §2.2).
pub mod opt {
    /// Uri-Host (Class U).
    pub const URI_HOST: u16 = 3;
    /// ETag.
    pub const ETAG: u16 = 4;
    /// Observe.
    pub const OBSERVE: u16 = 6;
    /// Uri-Port (Class U).
    pub const URI_PORT: u16 = 7;
    /// OSCORE.
    pub const OSCORE: u16 = 9;
    /// Uri-Path.
    pub const URI_PATH: u16 = 11;
    /// Content-Format.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age.
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query.
    pub const URI_QUERY: u16 = 15;
    /// Block2.
    pub const BLOCK2: u16 = 23;
    /// Block1.
    pub const BLOCK1: u16 = 27;
    /// Size2.
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri (Class U).
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme (Class U).
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1.
    pub const SIZE1: u16 = 60;
    /// Echo (RFC 9175).
    pub const ECHO: u16 = 252;
    /// Request-Tag (RFC 9175).
    pub const REQUEST_TAG: u16 = 292;
    /// Padding of small protected requests, so that an Echo challenge fits within the
    /// request's size (see `endpoint::Exchange::outgoing`). Off-spec: no padding option is
    /// registered; this number is from the range RFC 7252 §12.2 reserves for experiments.
    /// Its number makes it elective (servers that do not know it ignore it, RFC 7252
    /// §5.4.1), safe to forward and NoCacheKey (§5.4.6: 65020 mod 32 = 28), so two requests
    /// that differ only in their padding are the same request (a Block2 download pads its
    /// block requests to different lengths; servers that key block-wise state by the cache
    /// key, as aiocoap does, must see one request). It is Class E: inside OSCORE, no proxy
    /// or observer on the path sees it.
    pub const PADDING: u16 = 65020;
}

/// RFC 7252 §5.4.1: critical (odd-numbered) options this implementation recognises: If-Match,
/// Uri-Host, If-None-Match, Uri-Port, OSCORE, Uri-Path, Uri-Query, Accept, Block2, Block1,
/// Proxy-Uri, Proxy-Scheme.
pub fn is_known_critical(n: u16) -> bool {
    matches!(n, 1 | 3 | 5 | 7 | 9 | 11 | 15 | 17 | 23 | 27 | 35 | 39)
}

/// Repeatable options among the recognised critical ones (If-Match, Uri-Path, Uri-Query).
fn is_repeatable(n: u16) -> bool {
    matches!(n, 1 | 11 | 15)
}

/// The first unrecognised critical option of a message, if any (RFC 7252 §5.4.1). Extra
/// occurrences of a non-repeatable critical option count as unrecognised (§5.4.5).
pub fn unknown_critical(p: &Packet) -> Option<u16> {
    p.options()
        .find(|(n, v)| {
            **n % 2 == 1 && (!is_known_critical(**n) || (v.len() > 1 && !is_repeatable(**n)))
        })
        .map(|(n, _)| *n)
}

/// CoAP codes used here (RFC 7252 §12.1).
pub mod code {
    /// 0.01 GET.
    pub const GET: u8 = 0x01;
    /// 0.02 POST.
    pub const POST: u8 = 0x02;
    /// 0.03 PUT.
    pub const PUT: u8 = 0x03;
    /// 2.01 Created.
    pub const CREATED: u8 = 0x41;
    /// 2.04 Changed.
    pub const CHANGED: u8 = 0x44;
    /// 2.05 Content.
    pub const CONTENT: u8 = 0x45;
    /// 2.31 Continue.
    pub const CONTINUE: u8 = 0x5f;
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: u8 = 0x80;
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: u8 = 0x81;
    /// 4.02 Bad Option.
    pub const BAD_OPTION: u8 = 0x82;
    /// 4.03 Forbidden.
    pub const FORBIDDEN: u8 = 0x83;
    /// 4.04 Not Found.
    pub const NOT_FOUND: u8 = 0x84;
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: u8 = 0x85;
    /// 4.08 Request Entity Incomplete.
    pub const REQUEST_ENTITY_INCOMPLETE: u8 = 0x88;
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: u8 = 0x8d;
    /// 4.29 Too Many Requests (RFC 8516; Max-Age: seconds until the client may try again).
    pub const TOO_MANY_REQUESTS: u8 = 0x9d;
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: u8 = 0xa0;
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: u8 = 0xa3;
}

/// Default upper bound on a datagram we accept (RFC 7252 §4.6 recommends 1152 bytes when the
/// path MTU is unknown; we leave room for 1024-byte blocks plus OSCORE and options).
pub const DEFAULT_MAX_MESSAGE: usize = 1500;

/// Formats a code as "c.dd".
pub fn code_string(code: u8) -> String {
    format!("{}.{:02}", code >> 5, code & 0x1f)
}

/// Raw code byte of a packet.
pub fn code_of(p: &Packet) -> u8 {
    u8::from(p.header.code)
}

/// Sets the raw code byte of a packet.
pub fn set_code(p: &mut Packet, code: u8) {
    p.header.code = MessageClass::from(code);
}

/// Is the code a request code (class 0, not empty)?
pub fn is_request_code(c: u8) -> bool {
    c != 0 && c >> 5 == 0
}

/// Is the code a response code (class 2..5)?
pub fn is_response_code(c: u8) -> bool {
    (2..=5).contains(&(c >> 5))
}

/// Walks the options of `buf[start..]` and returns the offset of the payload (after the
/// marker), or `buf.len()` when there is none. RFC 7252 §3.1 checks: reserved nibble 15,
/// truncated extended fields and values, and a payload marker followed by zero bytes.
fn walk_options(buf: &[u8], start: usize) -> Result<usize> {
    let mut i = start;
    let mut number: u32 = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == 0xff {
            // RFC 7252 §3: a marker followed by a zero-length payload is a format error.
            if i + 1 == buf.len() {
                return Err(Error::MalformedMessage("payload marker without payload"));
            }
            return Ok(i + 1);
        }
        i += 1;
        let mut ext = |nib: u8| -> Result<u32> {
            match nib {
                0..=12 => Ok(u32::from(nib)),
                13 => {
                    let v = *buf
                        .get(i)
                        .ok_or(Error::MalformedMessage("truncated option"))?;
                    i += 1;
                    Ok(u32::from(v) + 13)
                }
                14 => {
                    let hi = *buf
                        .get(i)
                        .ok_or(Error::MalformedMessage("truncated option"))?;
                    let lo = *buf
                        .get(i + 1)
                        .ok_or(Error::MalformedMessage("truncated option"))?;
                    i += 2;
                    Ok(u32::from(u16::from_be_bytes([hi, lo])) + 269)
                }
                // RFC 7252 §3.1: 15 is reserved (only as part of the payload marker).
                _ => Err(Error::MalformedMessage("reserved option nibble 15")),
            }
        };
        let delta = ext(b >> 4)?;
        let len = ext(b & 0x0f)? as usize;
        number += delta;
        if number > u32::from(u16::MAX) {
            return Err(Error::MalformedMessage("option number overflow"));
        }
        if buf.len() - i < len {
            return Err(Error::MalformedMessage("truncated option value"));
        }
        i += len;
    }
    Ok(buf.len())
}

/// Strictly decodes one datagram. Rejects: more than `max` bytes (checked first), a header
/// shorter than 4 bytes, version != 1, TKL 9..15, an Empty message carrying anything after the
/// message id (RFC 7252 §4.1), reserved nibbles, truncated options, an empty payload after the
/// marker.
pub fn decode(buf: &[u8], max: usize) -> Result<Packet> {
    if buf.len() > max {
        return Err(Error::MessageTooLarge {
            len: buf.len(),
            max,
        });
    }
    // RFC 7252 §3: fixed 4-byte header.
    if buf.len() < 4 {
        return Err(Error::MalformedMessage("shorter than the 4-byte header"));
    }
    // RFC 7252 §3: version MUST be 1 (messages with unknown versions are silently ignored).
    if buf[0] >> 6 != 1 {
        return Err(Error::MalformedMessage("version is not 1"));
    }
    let tkl = usize::from(buf[0] & 0x0f);
    // RFC 7252 §3: lengths 9-15 are reserved and MUST be processed as a message format error.
    if tkl > 8 {
        return Err(Error::MalformedMessage("token length 9-15"));
    }
    if buf.len() < 4 + tkl {
        return Err(Error::MalformedMessage("truncated token"));
    }
    // RFC 7252 §4.1: an Empty message has TKL 0 and nothing after the message id.
    if buf[1] == 0 && buf.len() != 4 {
        return Err(Error::MalformedMessage("empty message with content"));
    }
    walk_options(buf, 4 + tkl)?;
    Packet::from_bytes(buf).map_err(|_| Error::MalformedMessage("rejected by coap-lite"))
}

/// Appends the option header extension for a delta or length (RFC 7252 §3.1).
fn ext_nibble(v: usize) -> u8 {
    match v {
        0..=12 => v as u8,
        13..=268 => 13,
        _ => 14,
    }
}

fn push_ext(out: &mut Vec<u8>, v: usize) {
    match v {
        0..=12 => {}
        13..=268 => out.push((v - 13) as u8),
        _ => out.extend_from_slice(&((v - 269) as u16).to_be_bytes()),
    }
}

/// Appends options (sorted by number, as a `BTreeMap` iterates) in the RFC 7252 §3.1 format.
pub fn encode_options<'a, I>(out: &mut Vec<u8>, options: I) -> Result<()>
where
    I: IntoIterator<Item = (&'a u16, &'a std::collections::LinkedList<Vec<u8>>)>,
{
    let mut last = 0u16;
    for (n, values) in options {
        for v in values {
            let delta = usize::from(
                n.checked_sub(last)
                    .ok_or(Error::MalformedMessage("options out of order"))?,
            );
            // RFC 7252 §3.1: lengths up to 65535 + 269.
            if v.len() > 65535 + 269 {
                return Err(Error::MalformedMessage("option value too long"));
            }
            out.push((ext_nibble(delta) << 4) | ext_nibble(v.len()));
            push_ext(out, delta);
            push_ext(out, v.len());
            out.extend_from_slice(v);
            last = *n;
        }
    }
    Ok(())
}

/// Encodes a packet in one allocation, refusing results above `max` bytes.
pub fn encode(p: &Packet, max: usize) -> Result<Vec<u8>> {
    let token = p.get_token();
    if token.len() > 8 {
        return Err(Error::MalformedMessage("token longer than 8 bytes"));
    }
    let t: u8 = match p.header.get_type() {
        MessageType::Confirmable => 0,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    let mut out = Vec::with_capacity(4 + token.len() + 48 + p.payload.len() + 1);
    out.push(0x40 | (t << 4) | token.len() as u8);
    out.push(code_of(p));
    out.extend_from_slice(&p.header.message_id.to_be_bytes());
    out.extend_from_slice(token);
    encode_options(&mut out, p.options())?;
    if !p.payload.is_empty() {
        out.push(0xff);
        out.extend_from_slice(&p.payload);
    }
    if out.len() > max {
        return Err(Error::MessageTooLarge {
            len: out.len(),
            max,
        });
    }
    Ok(out)
}

/// Encodes a uint option value in the fewest bytes (RFC 7252 §3.2).
pub fn uint_bytes(v: u32) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b[skip..].to_vec()
}

/// Decodes a uint option value of at most 4 bytes.
pub fn uint_value(b: &[u8]) -> Result<u32> {
    if b.len() > 4 {
        return Err(Error::MalformedMessage("uint option longer than 4 bytes"));
    }
    Ok(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
}

/// First value of option `n`.
pub fn first(p: &Packet, n: u16) -> Option<&Vec<u8>> {
    p.get_first_option(CoapOption::from(n))
}

/// Replaces all values of option `n` with one value.
pub fn set(p: &mut Packet, n: u16, v: Vec<u8>) {
    p.clear_option(CoapOption::from(n));
    p.add_option(CoapOption::from(n), v);
}

/// Removes option `n`.
pub fn clear(p: &mut Packet, n: u16) {
    p.clear_option(CoapOption::from(n));
}

/// The Uri-Path segments joined with '/'. Segments must be UTF-8 (RFC 7252 §5.10.1).
pub fn path_of(p: &Packet) -> Result<String> {
    let mut s = String::new();
    if let Some(list) = p.get_option(CoapOption::UriPath) {
        for (i, seg) in list.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.push_str(
                std::str::from_utf8(seg)
                    .map_err(|_| Error::MalformedMessage("Uri-Path not UTF-8"))?,
            );
        }
    }
    Ok(s)
}

/// Sets Uri-Path from a '/'-separated path.
pub fn set_path(p: &mut Packet, path: &str) {
    p.clear_option(CoapOption::UriPath);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
}

/// Builds a packet.
pub fn packet(t: MessageType, code: u8, mid: u16, token: &[u8]) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.set_version(1);
    set_code(&mut p, code);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert!(decode(&[0x40, 0x01, 0, 1], 100).is_ok());
        assert!(decode(&[0x40, 0x01, 0], 100).is_err());
        assert!(decode(&[0x80, 0x01, 0, 1], 100).is_err(), "version 2");
        assert!(
            decode(&[0x49, 0x01, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9], 100).is_err(),
            "tkl 9"
        );
        assert!(
            decode(&[0x40, 0x01, 0, 1, 0xff], 100).is_err(),
            "marker without payload"
        );
        assert!(
            decode(&[0x40, 0x00, 0, 1, 0xff, 1], 100).is_err(),
            "empty with payload"
        );
        assert!(
            decode(&[0x40, 0x01, 0, 1, 0xb5, b'a'], 100).is_err(),
            "truncated value"
        );
        assert!(
            decode(&[0x40, 0x01, 0, 1, 0xf0], 100).is_err(),
            "reserved delta"
        );
        assert!(matches!(
            decode(&[0x40; 200], 100),
            Err(Error::MessageTooLarge { len: 200, max: 100 })
        ));
        let p = decode(&[0x41, 0x01, 0, 1, 7, 0xb3, b'a', b'b', b'c', 0xff, 9], 100).unwrap();
        assert_eq!(path_of(&p).unwrap(), "abc");
        assert_eq!(p.payload, vec![9]);
    }

    #[test]
    fn critical_options() {
        let mut p = packet(MessageType::Confirmable, 1, 1, &[]);
        set_path(&mut p, "a/b/c");
        assert_eq!(unknown_critical(&p), None, "Uri-Path repeats");
        p.add_option(CoapOption::Block2, vec![6]);
        assert_eq!(unknown_critical(&p), None);
        p.add_option(CoapOption::Block2, vec![0x16]);
        assert_eq!(unknown_critical(&p), Some(opt::BLOCK2), "Block2 twice");
        let mut q = packet(MessageType::Confirmable, 1, 1, &[]);
        q.add_option(CoapOption::Unknown(65001), vec![]);
        assert_eq!(unknown_critical(&q), Some(65001));
        let mut r = packet(MessageType::Confirmable, 1, 1, &[]);
        r.add_option(CoapOption::Unknown(65000), vec![]);
        assert_eq!(unknown_critical(&r), None, "elective");
    }

    proptest::proptest! {
        #[test]
        fn encode_matches_coap_lite(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(p) = decode(&data, 1500) {
                let ours = encode(&p, usize::MAX).unwrap();
                proptest::prop_assert_eq!(&ours, &p.to_bytes_unlimited().unwrap());
                proptest::prop_assert_eq!(decode(&ours, usize::MAX).unwrap(), p);
            }
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&data, 1500);
        }
    }
}
