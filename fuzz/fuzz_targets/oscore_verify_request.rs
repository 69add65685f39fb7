//! OSCORE verification of an untrusted request datagram (RFC 8613 §8.2) by a server context:
//! must never panic, and nothing a fuzzer invents may verify (it does not know the key), except
//! the one valid message seeded below being mutated back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oscore::message;
use oscore::protect;
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use zeroize::Zeroizing;

fn server() -> SecurityContext {
    let p = ContextParams {
        master_secret: Zeroizing::new(vec![0x42; 16]),
        master_salt: vec![],
        id_context: None,
        sender_id: vec![0x01],
        recipient_id: vec![],
    };
    SecurityContext::new(&p, Box::new(MemorySeqStore::new())).expect("context")
}

fuzz_target!(|data: &[u8]| {
    let mut ctx = server();
    let Ok(p) = message::decode(data, message::DEFAULT_MAX_MESSAGE) else {
        return;
    };
    if let Ok(v) = protect::unprotect_request(&mut ctx, &p) {
        // A forgery that verified would be a finding: the fuzzer has no key.
        panic!("forged request verified: seq {}", v.seq);
    }
    // The error response for any failure is well-formed.
    if let Err(e) = protect::unprotect_request(&mut ctx, &p) {
        let r = protect::error_response(&p, &e);
        let _ = message::encode(&r, message::DEFAULT_MAX_MESSAGE).expect("error response encodes");
    }
});
