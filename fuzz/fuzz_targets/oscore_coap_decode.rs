//! Strict CoAP decoding of an untrusted datagram (RFC 7252 §3), plus the options the
//! transport reads from it: must never panic, and what decodes must re-encode and decode to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oscore::block::BlockValue;
use oscore::message::{self, opt};
use oscore::protect;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = message::decode(data, message::DEFAULT_MAX_MESSAGE) else {
        return;
    };
    let _ = message::path_of(&p);
    let _ = protect::oscore_option(&p);
    for n in [opt::BLOCK1, opt::BLOCK2] {
        if let Some(v) = message::first(&p, n) {
            let _ = BlockValue::decode(v);
        }
    }
    for n in [opt::SIZE1, opt::SIZE2, opt::CONTENT_FORMAT] {
        if let Some(v) = message::first(&p, n) {
            let _ = message::uint_value(v);
        }
    }
    if let Ok(again) = message::encode(&p, usize::MAX) {
        let q = message::decode(&again, usize::MAX).expect("re-encoded message decodes");
        assert_eq!(p, q);
    }
});
