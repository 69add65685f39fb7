//! RFC 8613 Appendix C, reproduced byte for byte from `../shared/vectors`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::vectors::{cell, hx, load, section};
use oscore::context::{self, ContextParams, derivation_info, derive_keys, nonce};
use oscore::message;
use oscore::protect::{self, Freshness};
use oscore::{MemorySeqStore, SecurityContext, SeqStore};
use zeroize::Zeroizing;

struct Inputs {
    secret: Vec<u8>,
    salt: Vec<u8>,
    id_context: Vec<u8>,
}

fn inputs() -> Inputs {
    let t = load();
    let s = section(&t, "Shared inputs");
    Inputs {
        secret: hx(cell(s, "Master Secret", 0)),
        salt: hx(cell(s, "Master Salt (C.1, C.3)", 0)),
        id_context: hx(cell(s, "ID Context (C.3)", 0)),
    }
}

/// Parameters of vector `c` ("C.1".."C.3"), column 0 = client, 1 = server.
fn params(c: &str, col: usize) -> ContextParams {
    let t = load();
    let i = inputs();
    let s = section(&t, &format!("{c} "));
    ContextParams {
        master_secret: Zeroizing::new(i.secret.clone()),
        master_salt: if c == "C.2" { vec![] } else { i.salt.clone() },
        id_context: (c == "C.3").then(|| i.id_context.clone()),
        sender_id: hx(cell(s, "Sender ID", col)),
        recipient_id: hx(cell(s, "Recipient ID", col)),
    }
}

/// A context whose store already holds `seq` (so the sender resumes there).
fn ctx_at(p: &ContextParams, seq: u64) -> SecurityContext {
    let mut store = MemorySeqStore::new();
    store.store(seq).unwrap();
    let c = SecurityContext::new(p, Box::new(store)).unwrap();
    assert_eq!(c.next_seq(), seq);
    c
}

#[test]
fn c1_to_c3_key_derivation() {
    let t = load();
    let mut checked = 0;
    for c in ["C.1", "C.2", "C.3"] {
        let s = section(&t, &format!("{c} "));
        for col in 0..2 {
            let p = params(c, col);
            let ctx = p.id_context.as_deref();
            assert_eq!(
                hex::encode(derivation_info(&p.sender_id, ctx, "Key", 16)),
                cell(s, "info (Sender Key)", col),
                "{c}/{col}"
            );
            assert_eq!(
                hex::encode(derivation_info(&p.recipient_id, ctx, "Key", 16)),
                cell(s, "info (Recipient Key)", col)
            );
            assert_eq!(
                hex::encode(derivation_info(&[], ctx, "IV", 13)),
                cell(s, "info (Common IV)", col)
            );
            let k = derive_keys(&p).unwrap();
            assert_eq!(
                hex::encode(*k.sender_key),
                cell(s, "Sender Key", col),
                "{c}/{col}"
            );
            assert_eq!(hex::encode(*k.recipient_key), cell(s, "Recipient Key", col));
            assert_eq!(hex::encode(k.common_iv), cell(s, "Common IV", col));
            assert_eq!(
                hex::encode(nonce(&k.common_iv, &p.sender_id, &[0])),
                cell(s, "sender nonce (PIV 0)", col)
            );
            assert_eq!(
                hex::encode(nonce(&k.common_iv, &p.recipient_id, &[0])),
                cell(s, "recipient nonce (PIV 0)", col)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn c4_to_c6_protected_requests() {
    let t = load();
    let s = section(&t, "C.4");
    for (col, c) in ["C.1", "C.2", "C.3"].into_iter().enumerate() {
        let unprotected = hx(cell(s, "Unprotected request", col));
        let seq: u64 = cell(s, "Sender Sequence Number", col).parse().unwrap();
        let piv = hx(cell(s, "Partial IV", col));
        let kid = hx(cell(s, "Sender ID / kid", col));
        assert_eq!(
            hex::encode(context::aad_array(&kid, &piv)),
            cell(s, "aad_array", col)
        );
        assert_eq!(hex::encode(context::aad(&kid, &piv)), cell(s, "AAD", col));

        let mut client = ctx_at(&params(c, 0), seq);
        let req = message::decode(&unprotected, 1500).unwrap();
        let (outer, binding) = protect::protect_request(&mut client, &req).unwrap();
        assert_eq!(hex::encode(binding.nonce), cell(s, "nonce", col), "{c}");
        assert_eq!(
            hex::encode(message::first(&outer, 9).unwrap()),
            cell(s, "OSCORE option value", col)
        );
        assert_eq!(
            hex::encode(&outer.payload),
            cell(s, "ciphertext (incl. 8 B tag)", col)
        );
        let wire = message::encode(&outer, 1500).unwrap();
        assert_eq!(
            hex::encode(&wire),
            cell(s, "Protected request", col),
            "{c} protected request"
        );

        // The server side recovers the unprotected request byte for byte.
        let mut server =
            SecurityContext::new(&params(c, 1), Box::new(MemorySeqStore::new())).unwrap();
        let v = protect::unprotect_request(&mut server, &message::decode(&wire, 1500).unwrap())
            .unwrap();
        assert_eq!(v.freshness, Freshness::Fresh);
        assert_eq!(v.seq, seq);
        assert_eq!(
            hex::encode(message::encode(&v.request, 1500).unwrap()),
            hex::encode(&unprotected)
        );
    }
}

#[test]
fn c7_c8_protected_responses() {
    let t = load();
    let s = section(&t, "C.7");
    let req_section = section(&t, "C.4");
    let request_wire = hx(cell(req_section, "Protected request", 0));
    let unprotected_resp = hx("64455d1f00003974ff48656c6c6f20576f726c6421");
    for (col, own_piv) in [(0usize, false), (1usize, true)] {
        // A fresh server context: sequence number 0, empty replay window.
        let mut server =
            SecurityContext::new(&params("C.1", 1), Box::new(MemorySeqStore::new())).unwrap();
        let v =
            protect::unprotect_request(&mut server, &message::decode(&request_wire, 1500).unwrap())
                .unwrap();
        assert_eq!(
            hex::encode(context::aad_array(&v.binding.kid, &v.binding.piv)),
            cell(s, "aad_array", col)
        );
        assert_eq!(
            hex::encode(context::aad(&v.binding.kid, &v.binding.piv)),
            cell(s, "AAD", col)
        );
        let resp = message::decode(&unprotected_resp, 1500).unwrap();
        let outer = protect::protect_response(&mut server, &v.binding, &resp, own_piv).unwrap();
        assert_eq!(
            hex::encode(message::first(&outer, 9).unwrap()),
            cell(s, "OSCORE option value", col)
        );
        assert_eq!(hex::encode(&outer.payload), cell(s, "ciphertext", col));
        let wire = message::encode(&outer, 1500).unwrap();
        assert_eq!(
            hex::encode(&wire),
            cell(s, "Protected response", col),
            "col {col}"
        );

        // The client verifies it and gets "Hello World!" back.
        let mut client = ctx_at(&params("C.1", 0), 20);
        let req = message::decode(&hx(cell(req_section, "Unprotected request", 0)), 1500).unwrap();
        let (_, binding) = protect::protect_request(&mut client, &req).unwrap();
        assert_eq!(binding, v.binding);
        let inner = protect::unprotect_response(
            &mut client,
            &binding,
            &message::decode(&wire, 1500).unwrap(),
        )
        .unwrap();
        assert_eq!(
            hex::encode(message::encode(&inner, 1500).unwrap()),
            hex::encode(&unprotected_resp)
        );
    }
}
