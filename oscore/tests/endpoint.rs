//! The sans-I/O endpoints without sockets: the client core ([`Exchange`], [`Block1Upload`])
//! talks to a [`ServerEndpoint`] through function calls, with the time of every datagram
//! chosen by the test (no clock, no sleeping).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use coap_lite::{MessageType, Packet};
use common::ctx::params;
use oscore::endpoint::{
    Block1Step, Block1Upload, ContextSet, Exchange, Handler, Reply, Request, ServerConfig,
    ServerEndpoint, Step,
};
use oscore::message::{self, code};
use oscore::{MemorySeqStore, SecurityContext, SeqStore};

const PEER: &str = "127.0.0.1:40000";

/// Accepts `PUT blob` only when fresh within 10 s; records what it acted on.
#[derive(Default)]
struct Installer {
    acted: Mutex<Vec<Vec<u8>>>,
}

impl Handler for Installer {
    fn handle(&self, req: &Request) -> Reply {
        self.acted.lock().unwrap().push(req.payload.clone());
        Reply::new(code::CHANGED, Vec::new())
    }
    fn required_freshness(&self, method: u8, path: &str) -> Option<Duration> {
        (method == code::PUT && path == "blob").then_some(Duration::from_secs(10))
    }
}

struct Link {
    ep: ServerEndpoint,
    client: SecurityContext,
    mid: u16,
}

impl Link {
    fn new(server_ctx: SecurityContext, t0: Instant) -> Link {
        let set = ContextSet::from_contexts(vec![server_ctx]).unwrap();
        let client = SecurityContext::new(
            &params(7, b"\x01", b"\x02"),
            Box::new(MemorySeqStore::new()),
        )
        .unwrap();
        Link {
            ep: ServerEndpoint::new(set, true, ServerConfig::default(), [3; 32], t0),
            client,
            mid: 0,
        }
    }

    /// One transmission of `ex` at `now`: (the server's datagram, the client's reading).
    fn send(&mut self, ex: &mut Exchange, now: Instant, h: &dyn Handler) -> (Packet, Step) {
        self.mid += 1;
        let outer = ex
            .outgoing(Some(&mut self.client), self.mid, &self.mid.to_be_bytes())
            .unwrap();
        let bytes = message::encode(&outer, 1500).unwrap();
        let peer: SocketAddr = PEER.parse().unwrap();
        let out = self.ep.handle(peer, &bytes, now, h);
        let resp = message::decode(&out.reply.unwrap(), 1500).unwrap();
        let step = ex.on_response(Some(&mut self.client), &resp).unwrap();
        (resp, step)
    }
}

fn piv(p: &Packet) -> Option<Vec<u8>> {
    oscore::protect::oscore_option(p)
        .unwrap()
        .and_then(|o| o.piv)
}

fn base() -> Packet {
    let mut p = message::packet(MessageType::Confirmable, code::PUT, 0, &[]);
    message::set_path(&mut p, "blob");
    p
}

/// RFC 9175 §2.3: the block that completes a fresh-only request is acted on only with an
/// Echo value of at most the required age; a stale one is challenged again (under the
/// server's own Partial IV) and the upload in progress is kept.
#[test]
fn last_block_needs_a_recent_echo_and_the_upload_survives_a_challenge() {
    let t0 = Instant::now();
    let server = SecurityContext::new(
        &params(7, b"\x02", b"\x01"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    let mut link = Link::new(server, t0);
    let h = Installer::default();
    let body: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut up = Block1Upload::new(base(), &body, 6);
    // Blocks 0 and 1: 2.31 without any Echo (only the last block triggers the action).
    for _ in 0..2 {
        let mut ex = Exchange::new(up.request());
        let (_, step) = link.send(&mut ex, t0, &h);
        let Step::Response(r) = step else {
            panic!("challenged before the last block")
        };
        assert!(matches!(up.on_response(r).unwrap(), Block1Step::Next));
    }
    // The last block without Echo: challenged, not acted on.
    let mut ex = Exchange::new(up.request());
    let (resp, step) = link.send(&mut ex, t0 + Duration::from_secs(1), &h);
    let Step::Echo(echo) = step else {
        panic!("the last block was not challenged")
    };
    assert!(
        piv(&resp).is_some(),
        "challenge under the server's own nonce"
    );
    assert!(h.acted.lock().unwrap().is_empty());
    // The repeat is held back for 11 s: too old, challenged again, still not acted on.
    ex.answer_echo(echo).unwrap();
    let (resp, step) = link.send(&mut ex, t0 + Duration::from_secs(12), &h);
    let Step::Echo(echo) = step else {
        panic!("a stale Echo was accepted")
    };
    assert!(piv(&resp).is_some());
    assert!(h.acted.lock().unwrap().is_empty());
    // Repeated in time: acted on, with the whole body (blocks 0 and 1 were kept).
    ex.answer_echo(echo).unwrap();
    let (resp, step) = link.send(&mut ex, t0 + Duration::from_secs(13), &h);
    let Step::Response(r) = step else {
        panic!("a fresh Echo was refused")
    };
    assert_eq!(
        piv(&resp),
        None,
        "a fresh request is answered under its nonce"
    );
    assert!(matches!(up.on_response(r).unwrap(), Block1Step::Done(_)));
    assert_eq!(*h.acted.lock().unwrap(), vec![body]);
}

/// RFC 8613 Appendix B.1.2: a server context that may have been used before (a persisted
/// state) starts with a lost window; a recorded request is answered with an Echo challenge
/// under the server's own Partial IV, and an Echo value of an earlier server instance (a new
/// key after the restart) does not re-establish the window.
#[test]
fn restarted_server_challenges_and_old_echo_values_do_not_count() {
    let t0 = Instant::now();
    let mut store = MemorySeqStore::new();
    store.store(4096).unwrap(); // a context that was used before
    let server =
        SecurityContext::new(&params(7, b"\x02", b"\x01"), Box::new(store.clone())).unwrap();
    let mut link = Link::new(server, t0);
    let h = Installer::default();
    let mut get = message::packet(MessageType::Confirmable, code::PUT, 0, &[]);
    message::set_path(&mut get, "other");
    let mut ex = Exchange::new(get.clone());
    let (resp, step) = link.send(&mut ex, t0, &h);
    let Step::Echo(old_echo) = step else {
        panic!("not challenged after a restart")
    };
    assert!(piv(&resp).is_some());
    assert!(h.acted.lock().unwrap().is_empty());

    // Another restart (a new endpoint with another key); the old instance's Echo value is
    // echoed: still challenged, not acted on.
    let server = SecurityContext::new(&params(7, b"\x02", b"\x01"), Box::new(store)).unwrap();
    let set = ContextSet::from_contexts(vec![server]).unwrap();
    link.ep = ServerEndpoint::new(set, true, ServerConfig::default(), [4; 32], t0);
    ex.answer_echo(old_echo).unwrap();
    let (_, step) = link.send(&mut ex, t0 + Duration::from_millis(10), &h);
    let Step::Echo(echo) = step else {
        panic!("an Echo value of a previous instance was accepted")
    };
    assert!(h.acted.lock().unwrap().is_empty());
    ex.answer_echo(echo).unwrap();
    let (_, step) = link.send(&mut ex, t0 + Duration::from_millis(20), &h);
    assert!(matches!(step, Step::Response(_)));
    assert_eq!(h.acted.lock().unwrap().len(), 1);
}
