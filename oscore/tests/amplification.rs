//! Reflection and amplification (issue 13, RFC 7252 §11.3, RFC 9175 §2.4 item 3): a peer
//! that forges a victim's source address must not get the server to send the victim more
//! than it sent. Sans-I/O: the server endpoint is fed datagrams through function calls, so
//! every size is exact and nothing depends on timing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use coap_lite::{MessageType, Packet};
use common::ctx::params;
use oscore::endpoint::{
    ContextSet, Exchange, Handler, MIN_REQUEST_PLAINTEXT, Reply, Request, ServerConfig,
    ServerEndpoint, Step, pad_request,
};
use oscore::message::{self, code, opt};
use oscore::protect;
use oscore::{MemorySeqStore, SecurityContext, SeqStore};

const PEER: &str = "192.0.2.7:5683";

/// Answers every request with a long error text (as an application's 4.04 might), and
/// records what it acted on.
#[derive(Default)]
struct Wordy {
    acted: Mutex<usize>,
}

impl Handler for Wordy {
    fn handle(&self, _req: &Request) -> Reply {
        *self.acted.lock().unwrap() += 1;
        Reply::new(
            code::NOT_FOUND,
            "no such resource here, and a long text about it".repeat(4),
        )
    }
}

fn server_ctx(used_before: bool) -> SecurityContext {
    let mut store = MemorySeqStore::new();
    if used_before {
        // A context opened from its persisted state: the replay window is lost.
        store.store(4096).unwrap();
    }
    SecurityContext::new(&params(7, b"\x02", b"\x01"), Box::new(store)).unwrap()
}

fn client_ctx() -> SecurityContext {
    SecurityContext::new(
        &params(7, b"\x01", b"\x02"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap()
}

fn endpoint(contexts: Vec<SecurityContext>, protected: bool) -> ServerEndpoint {
    let set = ContextSet::from_contexts(contexts).unwrap();
    ServerEndpoint::new(
        set,
        protected,
        ServerConfig::default(),
        [9; 32],
        Instant::now(),
    )
}

/// A deterministic stream of junk (xorshift), so a failure names a reproducible datagram.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Small datagrams of every kind an attacker can send without a key: junk, bare headers
/// of every type and code, tokens of every length, unprotected requests with and without a
/// path, unknown critical options, OSCORE options that do not parse, a kid the server does
/// not know, a known kid with a ciphertext that does not verify.
fn hostile_datagrams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut junk = Junk(0x9e37_79b9_7f4a_7c15);
    for len in 0..=64 {
        for _ in 0..8 {
            let mut d = junk.bytes(len);
            if len >= 1 && junk.next().is_multiple_of(2) {
                // Mostly version 1, so that decoding gets further than the first byte.
                d[0] = 0x40 | (d[0] & 0x3f);
            }
            out.push(d);
        }
    }
    for t in 0..4u8 {
        for c in [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x45, 0x81, 0xff] {
            for tkl in 0..=8u8 {
                let mut d = vec![0x40 | (t << 4) | tkl, c, 0x12, 0x34];
                d.extend(std::iter::repeat_n(0xaa, usize::from(tkl)));
                out.push(d);
            }
        }
    }
    let req = |tkl: usize| {
        message::packet(
            MessageType::Confirmable,
            code::GET,
            0x4242,
            &[7u8; 8][..tkl],
        )
    };
    for tkl in [0, 1, 4, 8] {
        let mut p = req(tkl);
        out.push(message::encode(&p, 1500).unwrap());
        message::set_path(&mut p, "x");
        out.push(message::encode(&p, 1500).unwrap());
        // An unrecognised critical option (RFC 7252 §5.4.1: 4.02 with a diagnostic).
        let mut c = req(tkl);
        message::set(&mut c, 2049, vec![1]);
        out.push(message::encode(&c, 1500).unwrap());
        // OSCORE options that do not parse (4.02 "Bad OSCORE option").
        for bad in [&[0x20][..], &[0x06], &[0x02, 0x01]] {
            let mut o = req(tkl);
            message::set(&mut o, opt::OSCORE, bad.to_vec());
            out.push(message::encode(&o, 1500).unwrap());
        }
        // A kid the server does not know (4.01 "Security context not found").
        let mut o = req(tkl);
        message::set(&mut o, opt::OSCORE, vec![0x09, 0x00, 0x77]);
        o.payload = vec![0; 9];
        out.push(message::encode(&o, 1500).unwrap());
        // The server's kid, a ciphertext that does not verify (4.00 "Decryption failed").
        let mut o = req(tkl);
        message::set(&mut o, opt::OSCORE, vec![0x09, 0x05, 0x01]);
        o.payload = vec![0; 9];
        out.push(message::encode(&o, 1500).unwrap());
    }
    out
}

/// RFC 7252 §11.3: error replies to unauthenticated or malformed requests are no larger than
/// the request (before the fix: 22 bytes, 4.01 + Max-Age + "OSCORE required", for a 4-byte
/// GET: 5.5 times). Both kinds of server: one holding a context (the dispatcher's uplink, a
/// device), and a plain one without contexts whose application answers with a long error.
#[test]
fn coap_error_reply_is_not_larger_than_request() {
    let peer: SocketAddr = PEER.parse().unwrap();
    let datagrams = hostile_datagrams();
    let mut answered = 0;
    for (name, ep) in [
        ("protected server", endpoint(vec![server_ctx(false)], true)),
        ("plain server", endpoint(Vec::new(), false)),
    ] {
        let h = Wordy::default();
        for (i, d) in datagrams.iter().enumerate() {
            let out = ep.handle(peer, d, Instant::now(), &h);
            if let Some(reply) = out.reply {
                answered += 1;
                assert!(
                    reply.len() <= d.len(),
                    "{name}: datagram {i} ({} bytes, {}) answered with {} bytes ({})",
                    d.len(),
                    hex::encode(d),
                    reply.len(),
                    hex::encode(&*reply)
                );
            }
        }
        if name == "protected server" {
            assert_eq!(
                *h.acted.lock().unwrap(),
                0,
                "an unauthenticated request was acted on"
            );
        }
    }
    // Not vacuous: hundreds of them are answered (RST, 4.01, 4.02, 4.00, the plain server's
    // 4.04); junk that is not a confirmable CoAP message gets nothing.
    assert!(answered > 300, "only {answered} answers");

    // What fits is still said: a large unprotected request gets the diagnostic and Max-Age 0.
    let ep = endpoint(vec![server_ctx(false)], true);
    let mut big = message::packet(MessageType::Confirmable, code::GET, 1, b"tok");
    message::set_path(&mut big, "a-path-long-enough-for-the-whole-diagnostic");
    let bytes = message::encode(&big, 1500).unwrap();
    let reply = ep
        .handle(peer, &bytes, Instant::now(), &Wordy::default())
        .reply
        .unwrap();
    let reply = message::decode(&reply, 1500).unwrap();
    assert_eq!(message::code_of(&reply), code::UNAUTHORIZED);
    assert_eq!(reply.payload, b"OSCORE required");
    assert!(message::first(&reply, opt::MAX_AGE).is_some());
}

/// One protected request from `client` for `path`, as bytes, unpadded.
fn protected(client: &mut SecurityContext, path: &str, mid: u16) -> (Vec<u8>, Packet) {
    let mut p = message::packet(MessageType::Confirmable, code::GET, mid, b"t");
    message::set_path(&mut p, path);
    let (outer, _) = protect::protect_request(client, &p).unwrap();
    (message::encode(&outer, 1500).unwrap(), p)
}

/// RFC 9175 §2.4 item 3: an Echo challenge goes only to a request at least as large. After
/// a restart (lost replay window) every verified request is answered with a challenge and
/// not acted on; a recorded small request replayed from a victim's address must not make
/// the server answer with more bytes. Our client pads its small requests, so it still gets
/// its challenge and recovers.
#[test]
fn echo_challenge_needs_a_request_as_large() {
    let peer: SocketAddr = PEER.parse().unwrap();
    let ep = endpoint(vec![server_ctx(true)], true);
    let h = Wordy::default();
    let mut client = client_ctx();

    // A small protected request (no padding, as a peer that does not pad sends it).
    let (small, _) = protected(&mut client, "s", 1);
    let reply = ep.handle(peer, &small, Instant::now(), &h).reply.unwrap();
    assert!(
        reply.len() <= small.len(),
        "{} bytes answered to {}",
        reply.len(),
        small.len()
    );
    let reply = message::decode(&reply, 1500).unwrap();
    assert_eq!(message::code_of(&reply), code::UNAUTHORIZED);
    assert!(
        protect::oscore_option(&reply).unwrap().is_none(),
        "a challenge larger than the request was sent"
    );
    assert_eq!(*h.acted.lock().unwrap(), 0);

    // The same request with our padding: the challenge fits and is sent, protected under
    // the server's own Partial IV; the repeat with the Echo value is acted on.
    let mut req = message::packet(MessageType::Confirmable, code::GET, 0, &[]);
    message::set_path(&mut req, "s");
    let mut ex = Exchange::new(req);
    let outer = ex.outgoing(Some(&mut client), 2, b"t").unwrap();
    let bytes = message::encode(&outer, 1500).unwrap();
    let reply_bytes = ep.handle(peer, &bytes, Instant::now(), &h).reply.unwrap();
    assert!(reply_bytes.len() <= bytes.len());
    let reply = message::decode(&reply_bytes, 1500).unwrap();
    let Step::Echo(echo) = ex.on_response(Some(&mut client), &reply).unwrap() else {
        panic!("a padded request was not challenged")
    };
    assert_eq!(*h.acted.lock().unwrap(), 0);
    ex.answer_echo(echo).unwrap();
    let outer = ex.outgoing(Some(&mut client), 3, b"t").unwrap();
    let bytes = message::encode(&outer, 1500).unwrap();
    let reply = ep.handle(peer, &bytes, Instant::now(), &h).reply.unwrap();
    let reply = message::decode(&reply, 1500).unwrap();
    assert!(matches!(
        ex.on_response(Some(&mut client), &reply).unwrap(),
        Step::Response(_)
    ));
    assert_eq!(*h.acted.lock().unwrap(), 1, "the window was not recovered");

    // A server configured for peers that do not pad (RFC 9175: a factor of 3) challenges
    // the small request, within three times its size.
    let set = ContextSet::from_contexts(vec![server_ctx(true)]).unwrap();
    let cfg = ServerConfig {
        echo_amplification: 3,
        ..ServerConfig::default()
    };
    let ep3 = ServerEndpoint::new(set, true, cfg, [9; 32], Instant::now());
    let mut other = client_ctx();
    let (small, _) = protected(&mut other, "s", 1);
    let reply = ep3.handle(peer, &small, Instant::now(), &h).reply.unwrap();
    assert!(reply.len() > small.len() && reply.len() <= 3 * small.len());
    let reply = message::decode(&reply, 1500).unwrap();
    assert!(
        protect::oscore_option(&reply).unwrap().is_some(),
        "no challenge"
    );

    // The bound holds for the largest challenge: every request our client makes, whatever
    // its token, is at least as large as a challenge with a 5-byte Partial IV.
    let mut big_seq = MemorySeqStore::new();
    big_seq.store(1 << 39).unwrap();
    let mut server = SecurityContext::new(&params(7, b"\x02", b"\x01"), Box::new(big_seq)).unwrap();
    for tkl in 0..=8usize {
        let mut req = message::packet(MessageType::Confirmable, code::GET, 0, &[]);
        pad_request(&mut req).unwrap();
        let mut ex = Exchange::new(req);
        let outer = ex.outgoing(Some(&mut client), 9, &[1u8; 8][..tkl]).unwrap();
        let bytes = message::encode(&outer, 1500).unwrap();
        let v = protect::unprotect_request(&mut server, &message::decode(&bytes, 1500).unwrap())
            .unwrap();
        let mut challenge = message::packet(
            MessageType::Acknowledgement,
            code::UNAUTHORIZED,
            9,
            &[1u8; 8][..tkl],
        );
        message::set(
            &mut challenge,
            opt::ECHO,
            vec![0xee; oscore::echo::ECHO_LEN],
        );
        let r = protect::protect_response(&mut server, &v.binding, &challenge, true).unwrap();
        let r = message::encode(&r, 1500).unwrap();
        assert!(
            r.len() <= bytes.len(),
            "token {tkl}: challenge {} > request {}",
            r.len(),
            bytes.len()
        );
    }
}

/// The padding reaches exactly the bound it promises, for every size of plaintext below it,
/// and leaves larger requests alone.
#[test]
fn padding_reaches_the_minimum_plaintext() {
    for payload in 0..40 {
        let mut p = message::packet(MessageType::Confirmable, code::POST, 0, &[]);
        p.payload = vec![1; payload];
        let before = p.clone();
        pad_request(&mut p).unwrap();
        let mut client = client_ctx();
        let (outer, _) = protect::protect_request(&mut client, &p).unwrap();
        // Ciphertext = plaintext + 8-byte tag.
        let pt = outer.payload.len() - 8;
        assert!(
            pt >= MIN_REQUEST_PLAINTEXT,
            "payload {payload}: plaintext {pt}"
        );
        if payload + 2 >= MIN_REQUEST_PLAINTEXT {
            assert_eq!(p, before, "payload {payload}: a large request was padded");
        } else {
            // The option costs at least 3 bytes: a plaintext 1 byte short ends 2 bytes over.
            assert!(
                pt <= MIN_REQUEST_PLAINTEXT + 2,
                "payload {payload}: padded to {pt}"
            );
        }
    }
}
