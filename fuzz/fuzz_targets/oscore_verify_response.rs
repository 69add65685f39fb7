//! OSCORE verification of an untrusted response (RFC 8613 §8.4) by a client that sent one
//! request: must never panic and never accept a forgery.
#![no_main]

use coap_lite::MessageType;
use libfuzzer_sys::fuzz_target;
use oscore::message::{self, code};
use oscore::protect;
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let p = ContextParams {
        master_secret: Zeroizing::new(vec![0x42; 16]),
        master_salt: vec![],
        id_context: None,
        sender_id: vec![],
        recipient_id: vec![0x01],
    };
    let mut ctx = SecurityContext::new(&p, Box::new(MemorySeqStore::new())).expect("context");
    let mut req = message::packet(MessageType::Confirmable, code::GET, 1, b"t");
    message::set_path(&mut req, "x");
    let (_, binding) = protect::protect_request(&mut ctx, &req).expect("protect");
    let Ok(resp) = message::decode(data, message::DEFAULT_MAX_MESSAGE) else {
        return;
    };
    if protect::unprotect_response(&mut ctx, &binding, &resp).is_ok() {
        panic!("forged response verified");
    }
});
