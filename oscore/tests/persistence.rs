//! Sender sequence numbers survive restarts and crashes without reuse (RFC 8613 B.1.1).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::HashSet;

use coap_lite::MessageType;
use common::ctx::params;
use oscore::message::{self, code};
use oscore::protect;
use oscore::{FileSeqStore, SecurityContext, SeqStore};

fn send(ctx: &mut SecurityContext) -> [u8; 13] {
    let mut p = message::packet(MessageType::Confirmable, code::GET, 1, b"t");
    message::set_path(&mut p, "x");
    protect::protect_request(ctx, &p).unwrap().1.nonce
}

#[test]
fn crash_never_reuses_a_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let seq_file = dir.path().join("ctx.json.seq");
    FileSeqStore::init(&seq_file).unwrap();
    let p = params(3, b"\x01", b"\x02");
    let mut nonces = HashSet::new();
    let mut used = 0u64;
    // Five "lifetimes", each ending in a crash (the context is dropped without flush) at a
    // different point relative to the persistence step of 10.
    for (life, n) in [7u64, 10, 11, 25, 3].into_iter().enumerate() {
        let mut ctx =
            SecurityContext::new(&p, Box::new(FileSeqStore::with_step(&seq_file, 10))).unwrap();
        for _ in 0..n {
            assert!(
                nonces.insert(send(&mut ctx)),
                "nonce reused in lifetime {life}"
            );
            used += 1;
        }
        // The persisted limit is always ahead of every number used.
        let limit = FileSeqStore::new(&seq_file).load().unwrap().unwrap();
        assert!(
            limit >= ctx.next_seq(),
            "persisted {limit} < next {}",
            ctx.next_seq()
        );
        std::mem::forget(ctx); // simulate the crash: no destructor, no flush
    }
    assert_eq!(nonces.len() as u64, used);
}

#[test]
fn graceful_restart_skips_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seq_file = dir.path().join("c.seq");
    FileSeqStore::init(&seq_file).unwrap();
    let p = params(3, b"\x01", b"\x02");
    let mut ctx = SecurityContext::new(&p, Box::new(FileSeqStore::new(&seq_file))).unwrap();
    for _ in 0..5 {
        send(&mut ctx);
    }
    ctx.flush().unwrap();
    drop(ctx);
    let ctx = SecurityContext::new(&p, Box::new(FileSeqStore::new(&seq_file))).unwrap();
    assert_eq!(ctx.next_seq(), 5);
}

/// A store that counts its writes (and keeps the value in memory).
#[derive(Debug, Clone, Default)]
struct Counting {
    value: std::sync::Arc<std::sync::Mutex<(Option<u64>, usize)>>,
}

impl SeqStore for Counting {
    fn load(&mut self) -> std::io::Result<Option<u64>> {
        Ok(self.value.lock().unwrap().0)
    }
    fn store(&mut self, limit: u64) -> std::io::Result<()> {
        let mut v = self.value.lock().unwrap();
        *v = (Some(limit), v.1 + 1);
        Ok(())
    }
}

/// A graceful stop writes a context's sequence number only when a number was taken since it
/// was last stored (a server with 10,000 contexts stopped after 20 s of fsyncs before), and
/// a restart after such a stop still skips nothing and reuses nothing.
#[test]
fn flush_writes_only_what_changed() {
    let p = params(3, b"\x01", b"\x02");
    let store = Counting::default();
    store.value.lock().unwrap().0 = Some(40);
    let mut ctx = SecurityContext::new(&p, Box::new(store.clone())).unwrap();
    ctx.flush().unwrap();
    assert_eq!(
        *store.value.lock().unwrap(),
        (Some(40), 0),
        "nothing taken: no write"
    );
    let n = send(&mut ctx);
    let writes = store.value.lock().unwrap().1;
    assert_eq!(writes, 1, "the reservation ahead of use");
    ctx.flush().unwrap();
    assert_eq!(*store.value.lock().unwrap(), (Some(41), 2), "41 exactly");
    ctx.flush().unwrap();
    assert_eq!(
        store.value.lock().unwrap().1,
        2,
        "flushed already: no write"
    );
    drop(ctx);
    let mut again = SecurityContext::new(&p, Box::new(store.clone())).unwrap();
    assert_eq!(again.next_seq(), 41);
    assert_ne!(send(&mut again), n);
}

#[test]
fn persistence_is_atomic_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let seq_file = dir.path().join("c.seq");
    let mut st = FileSeqStore::new(&seq_file);
    // No file is not "never used": the numbers used are unknown, so it is an error.
    assert!(st.load().is_err());
    let p = params(3, b"\x01", b"\x02");
    assert!(matches!(
        SecurityContext::new(&p, Box::new(FileSeqStore::new(&seq_file))),
        Err(oscore::Error::Persist(_))
    ));
    st.store(42).unwrap();
    assert_eq!(st.load().unwrap(), Some(42));
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // A corrupt file refuses to start (starting at 0 would reuse nonces).
    std::fs::write(&seq_file, b"garbage").unwrap();
    assert!(matches!(
        SecurityContext::new(&p, Box::new(FileSeqStore::new(&seq_file))),
        Err(oscore::Error::Persist(_))
    ));
}

#[test]
fn a_failing_store_blocks_sending() {
    // If the limit cannot be persisted, no sequence number beyond it is used.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    let seq_file = sub.join("c.seq");
    FileSeqStore::init(&seq_file).unwrap();
    let p = params(3, b"\x01", b"\x02");
    let mut ctx = SecurityContext::new(&p, Box::new(FileSeqStore::new(&seq_file))).unwrap();
    std::fs::remove_dir_all(&sub).unwrap();
    let mut req = message::packet(MessageType::Confirmable, code::GET, 1, b"t");
    message::set_path(&mut req, "x");
    assert!(matches!(
        protect::protect_request(&mut ctx, &req),
        Err(oscore::Error::Persist(_))
    ));
    assert_eq!(ctx.next_seq(), 0);
}

/// RFC 8613 Appendix B.1.2: a context loaded from its state starts with a lost window,
/// whatever ended the previous process (a graceful stop with `flush` too, and the very first
/// start after provisioning): nothing on disk proves which requests were accepted.
#[test]
fn restarted_server_requires_echo() {
    let dir = tempfile::tempdir().unwrap();
    let seq_file = dir.path().join("s.seq");
    FileSeqStore::init(&seq_file).unwrap();
    let sp = params(3, b"\x02", b"\x01");
    let mut client = SecurityContext::new(
        &params(3, b"\x01", b"\x02"),
        Box::new(oscore::MemorySeqStore::new()),
    )
    .unwrap();
    let mut req = message::packet(MessageType::Confirmable, code::GET, 1, b"t");
    message::set_path(&mut req, "x");
    let (o, _) = protect::protect_request(&mut client, &req).unwrap();
    for graceful in [true, false] {
        let mut server = SecurityContext::new(&sp, Box::new(FileSeqStore::new(&seq_file))).unwrap();
        // The same request, after every kind of start, is only ever an Echo case.
        assert_eq!(
            protect::unprotect_request(&mut server, &o)
                .unwrap()
                .freshness,
            protect::Freshness::NeedsEcho,
            "graceful={graceful}"
        );
        if graceful {
            server.flush().unwrap();
        } else {
            std::mem::forget(server); // a crash: no flush, no destructor
        }
    }
}

#[test]
fn sequence_number_space_is_bounded() {
    // RFC 8613 §7.2.1: after 2^40 - 1 the context must be replaced; it refuses to send.
    let mut store = oscore::MemorySeqStore::new();
    store.store(oscore::seq::MAX_SEQ).unwrap();
    let mut ctx = SecurityContext::new(&params(3, b"\x01", b"\x02"), Box::new(store)).unwrap();
    send(&mut ctx); // the last valid number, 2^40 - 1 (a 5-byte Partial IV)
    let mut p = message::packet(MessageType::Confirmable, code::GET, 1, b"t");
    message::set_path(&mut p, "x");
    assert!(matches!(
        protect::protect_request(&mut ctx, &p),
        Err(oscore::Error::SequenceExhausted)
    ));
}
