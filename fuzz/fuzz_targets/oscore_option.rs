//! The OSCORE option value decoder (RFC 8613 §6.1): never panics; what decodes re-encodes to
//! the same bytes (the encoding is canonical, so strict decoding accepts one form only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oscore::protect::OscoreOption;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = OscoreOption::decode(data) {
        assert_eq!(o.encode(), data, "non-canonical option value accepted");
    }
});
