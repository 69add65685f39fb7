//! Every `fleet_proto` decoder over the same bytes (check-in, reply, report, pull notice,
//! status, bundle, bundle list, identity, trust, state): never panics, and whatever decodes
//! re-encodes to bytes that decode to the same value (the encoder and the decoder agree).
#![no_main]

use fleet_proto::bundle::{Bundle, Identity, Trust};
use fleet_proto::push::{PullNotice, Status};
use fleet_proto::state::State;
use fleet_proto::uplink::{CheckIn, CheckInReply, Report};
use libfuzzer_sys::fuzz_target;

macro_rules! round_trip {
    ($data:expr, $($t:ty),+) => {$(
        match <$t>::decode($data) {
            Ok(v) => match v.encode() {
                Ok(again) => {
                    let back = <$t>::decode(&again)
                        .expect(concat!(stringify!($t), ": own encoding refused"));
                    assert_eq!(back, v, concat!(stringify!($t), ": round trip changed the value"));
                }
                // Re-encoding may only grow free-form status events past the size limit
                // (`1e2` is written `100.0`); any other refusal is a disagreement.
                Err(e) => assert!(
                    e.is_too_large(),
                    concat!(stringify!($t), ": decoded but not encodable: {}"),
                    e
                ),
            },
            // Errors render without panicking and stay short (no input echoed at length).
            Err(e) => assert!(e.to_string().len() < 512),
        }
    )+};
}

fuzz_target!(|data: &[u8]| {
    round_trip!(
        data,
        CheckIn,
        CheckInReply,
        Report,
        PullNotice,
        Status,
        Bundle,
        Identity,
        Trust,
        State
    );
    if let Ok(list) = Bundle::decode_list(data) {
        for b in &list {
            let again = b.encode().expect("listed bundle not encodable");
            assert_eq!(&Bundle::decode(&again).expect("own encoding refused"), b);
        }
    }
});
