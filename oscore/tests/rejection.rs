//! Adversarial inputs, each named after the attack: every one must be rejected.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use coap_lite::MessageType;
use common::ctx::{pair, params};
use oscore::message::{self, code};
use oscore::protect::{self, Freshness};
use oscore::{Error, MemorySeqStore, SecurityContext};

fn request(path: &str) -> coap_lite::Packet {
    let mut p = message::packet(MessageType::Confirmable, code::GET, 0x1234, b"tok");
    message::set_path(&mut p, path);
    p
}

fn wire(ctx: &mut SecurityContext, path: &str) -> Vec<u8> {
    let (outer, _) = protect::protect_request(ctx, &request(path)).unwrap();
    message::encode(&outer, 1500).unwrap()
}

fn verify(server: &mut SecurityContext, bytes: &[u8]) -> oscore::Result<protect::VerifiedRequest> {
    protect::unprotect_request(server, &message::decode(bytes, 1500)?)
}

#[test]
fn accepts_the_untampered_request() {
    let (mut c, mut s) = pair();
    let w = wire(&mut c, "a");
    let v = verify(&mut s, &w).unwrap();
    assert_eq!(v.freshness, Freshness::Fresh);
    assert_eq!(message::path_of(&v.request).unwrap(), "a");
}

#[test]
fn tampered_ciphertext() {
    let (mut c, mut s) = pair();
    let w = wire(&mut c, "firmware");
    for i in 0..w.len() {
        // Flip each byte of the ciphertext (after the 0xff marker).
        let marker = w.iter().position(|b| *b == 0xff).unwrap();
        if i <= marker {
            continue;
        }
        let mut t = w.clone();
        t[i] ^= 0x01;
        assert!(
            matches!(verify(&mut s, &t), Err(Error::DecryptFailed)),
            "byte {i}"
        );
    }
    // The intact one still verifies afterwards (failures did not advance the window).
    assert!(verify(&mut s, &w).is_ok());
}

#[test]
fn tampered_partial_iv() {
    let (mut c, mut s) = pair();
    let w = wire(&mut c, "x");
    let d = message::decode(&w, 1500).unwrap();
    let mut o = protect::oscore_option(&d).unwrap().unwrap();
    o.piv = Some(vec![0x05]);
    let mut d2 = d.clone();
    message::set(&mut d2, 9, o.encode());
    let t = message::encode(&d2, 1500).unwrap();
    assert!(matches!(verify(&mut s, &t), Err(Error::DecryptFailed)));
}

#[test]
fn wrong_key() {
    let mut c = SecurityContext::new(
        &params(8, b"\x01", b"\x02"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    let (_, mut s) = pair();
    let w = wire(&mut c, "a");
    assert!(matches!(verify(&mut s, &w), Err(Error::DecryptFailed)));
}

#[test]
fn replayed_request() {
    let (mut c, mut s) = pair();
    let w1 = wire(&mut c, "a");
    let w2 = wire(&mut c, "b");
    assert!(verify(&mut s, &w2).is_ok());
    assert!(
        verify(&mut s, &w1).is_ok(),
        "out of order within the window is fine"
    );
    assert!(matches!(verify(&mut s, &w1), Err(Error::Replay { seq: 0 })));
    assert!(matches!(verify(&mut s, &w2), Err(Error::Replay { seq: 1 })));
    // The server's 4.01 answer for a replay (RFC 8613 §8.2) is unprotected.
    let e = verify(&mut s, &w1).unwrap_err();
    let r = protect::error_response(&message::decode(&w1, 1500).unwrap(), &e);
    assert_eq!(message::code_of(&r), code::UNAUTHORIZED);
    assert!(protect::oscore_option(&r).unwrap().is_none());
}

#[test]
fn unknown_kid() {
    let mut c = SecurityContext::new(
        &params(7, b"\x09", b"\x02"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    let (_, mut s) = pair();
    let w = wire(&mut c, "a");
    assert!(matches!(verify(&mut s, &w), Err(Error::UnknownKid { kid_hex }) if kid_hex == "09"));
}

#[test]
fn unprotected_request_is_not_accepted() {
    let (_, mut s) = pair();
    let plain = message::encode(&request("a"), 1500).unwrap();
    assert!(matches!(verify(&mut s, &plain), Err(Error::NotProtected)));
}

#[test]
fn oversized_messages() {
    let (mut c, mut s) = pair();
    let mut big = request("a");
    big.payload = vec![0; 2000];
    let (outer, _) = protect::protect_request(&mut c, &big).unwrap();
    // Refused when encoding above the limit ...
    assert!(matches!(
        message::encode(&outer, 1500),
        Err(Error::MessageTooLarge { .. })
    ));
    // ... and when receiving.
    let w = message::encode(&outer, 4000).unwrap();
    assert!(
        matches!(verify(&mut s, &w), Err(Error::MessageTooLarge { len, max: 1500 }) if len == w.len())
    );
}

#[test]
fn response_bound_to_another_request() {
    let (mut c, mut s) = pair();
    let w1 = wire(&mut c, "a");
    let (outer2, binding2) = protect::protect_request(&mut c, &request("b")).unwrap();
    let v1 = verify(&mut s, &w1).unwrap();
    let mut resp = message::packet(MessageType::Acknowledgement, code::CONTENT, 0x1234, b"tok");
    resp.payload = b"for a".to_vec();
    let r1 = protect::protect_response(&mut s, &v1.binding, &resp, false).unwrap();
    // Presented as the answer to request b: the AAD binds it to a, so it fails.
    assert!(matches!(
        protect::unprotect_response(&mut c, &binding2, &r1),
        Err(Error::DecryptFailed)
    ));
    let _ = outer2;
}

#[test]
fn malformed_oscore_options() {
    let (mut c, mut s) = pair();
    let w = wire(&mut c, "a");
    let d = message::decode(&w, 1500).unwrap();
    for bad in [
        &[0x00][..],
        &[0x20, 0x01],
        &[0x0e, 1, 2, 3, 4, 5, 6],
        &[0x02, 0x00, 0x01],
        &[0x01],
    ] {
        let mut t = d.clone();
        message::set(&mut t, 9, bad.to_vec());
        let e = protect::unprotect_request(&mut s, &t).unwrap_err();
        assert!(
            matches!(e, Error::MalformedOscoreOption(_) | Error::MissingField(_)),
            "{bad:02x?}: {e}"
        );
    }
}

#[test]
fn echo_recovery_after_lost_window() {
    // RFC 8613 Appendix B.1.2: a server that lost its replay window challenges with Echo.
    let (mut c, mut s) = pair();
    let w0 = wire(&mut c, "a");
    assert!(verify(&mut s, &w0).is_ok());
    s.forget_replay_window();
    let w1 = wire(&mut c, "a");
    let v = verify(&mut s, &w1).unwrap();
    assert_eq!(v.freshness, Freshness::NeedsEcho);
    protect::set_echo_challenge(&mut s, b"challenge".to_vec());
    // Replay of the old request: still only an Echo challenge, never Fresh.
    assert_eq!(verify(&mut s, &w0).unwrap().freshness, Freshness::NeedsEcho);
    // The client repeats with the Echo value: accepted, window re-initialised.
    let mut r = request("a");
    message::set(&mut r, message::opt::ECHO, b"challenge".to_vec());
    let (outer, _) = protect::protect_request(&mut c, &r).unwrap();
    let w2 = message::encode(&outer, 1500).unwrap();
    assert_eq!(verify(&mut s, &w2).unwrap().freshness, Freshness::Fresh);
    assert!(matches!(verify(&mut s, &w2), Err(Error::Replay { .. })));
    assert!(
        matches!(verify(&mut s, &w1), Err(Error::Replay { .. })),
        "older than the echoed request"
    );
    // A wrong Echo value is not accepted.
    s.forget_replay_window();
    protect::set_echo_challenge(&mut s, b"other".to_vec());
    let (outer, _) = protect::protect_request(&mut c, &r).unwrap();
    assert_eq!(
        verify(&mut s, &message::encode(&outer, 1500).unwrap())
            .unwrap()
            .freshness,
        Freshness::NeedsEcho
    );
}

#[test]
fn ids_too_long_or_equal() {
    assert!(matches!(
        SecurityContext::new(
            &params(1, &[0; 8], b"\x01"),
            Box::new(MemorySeqStore::new())
        ),
        Err(Error::IdTooLong { len: 8, max: 7 })
    ));
    assert!(matches!(
        SecurityContext::new(
            &params(1, b"\x01", b"\x01"),
            Box::new(MemorySeqStore::new())
        ),
        Err(Error::SenderEqualsRecipient)
    ));
}

#[test]
fn secrets_not_in_debug_output() {
    let p = params(0xab, b"\x01", b"\x02");
    let (c, _) = pair();
    let dbg = format!(
        "{p:?} {c:?} {:?}",
        oscore::context::derive_keys(&p).unwrap()
    );
    assert!(!dbg.contains("abab"), "{dbg}");
    let k = oscore::context::derive_keys(&p).unwrap();
    assert!(!dbg.contains(&hex::encode(*k.sender_key)));
    assert!(dbg.contains("redacted"));
}

proptest::proptest! {
    /// Arbitrary datagrams never panic the verifier and never verify (no key).
    #[test]
    fn random_datagrams_never_verify(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let (_, mut s) = pair();
        if let Ok(p) = message::decode(&data, 1500) {
            proptest::prop_assert!(protect::unprotect_request(&mut s, &p).is_err());
        }
    }

    /// A valid request with one byte flipped either fails verification, or the flip hit an
    /// unauthenticated outer field (type, message id, token) and the inner request is intact.
    #[test]
    fn bit_flips_are_detected(pos in 0usize..64, bit in 0u8..8) {
        let (mut c, mut s) = pair();
        let w = wire(&mut c, "firmware/blob");
        let pos = pos % w.len();
        let mut t = w.clone();
        t[pos] ^= 1 << bit;
        if let Ok(p) = message::decode(&t, 1500)
            && let Ok(v) = protect::unprotect_request(&mut s, &p) {
                proptest::prop_assert!(pos < 4 + 3, "flip at {} verified", pos);
                proptest::prop_assert_eq!(message::path_of(&v.request).unwrap(), "firmware/blob");
            }
    }
}
