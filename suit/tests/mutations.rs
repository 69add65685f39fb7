//! Property test: any mutation of a valid envelope is rejected with an error, never a panic
//! and never a pass. (Strict decoding makes the accepted encoding unique: shortest heads,
//! no duplicate keys, no trailing bytes, so no mutation can re-encode the same content.)
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::*;
use proptest::prelude::*;
use suit::{Limits, Role, Rules, TrustStore};

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Truncate { len: usize },
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let n = v.len();
    match m {
        Mutation::Flip { at, xor } => v[at % n] ^= xor,
        Mutation::Delete { at, len } => {
            let at = at % n;
            let end = (at + len).min(n);
            v.drain(at..end);
        }
        Mutation::Insert { at, bytes } => {
            let at = at % (n + 1);
            v.splice(at..at, bytes.iter().copied());
        }
        Mutation::Truncate { len } => v.truncate(len % n),
    }
    v
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
    ]
}

struct Case {
    envelope: Vec<u8>,
    trust: TrustStore,
    rules: Rules,
}

fn cases() -> &'static [Case] {
    static CASES: std::sync::OnceLock<Vec<Case>> = std::sync::OnceLock::new();
    CASES.get_or_init(make_cases)
}

fn make_cases() -> Vec<Case> {
    let maker = key("maker");
    let dispatcher = key("dispatcher");
    let b = build(9, &maker);
    let t = trust(&[(&maker, Role::Manufacturer), (&dispatcher, Role::Approver)]);
    let plain = Case {
        envelope: b.envelope.clone(),
        trust: t.clone(),
        rules: Rules::dispatcher_intake(),
    };
    let v = verify_with(&b.envelope, &t, &Rules::dispatcher_intake()).unwrap();
    let approved = Case {
        envelope: suit::approve(&v, &dispatcher).unwrap(),
        trust: t,
        rules: Rules::device(),
    };
    vec![plain, approved]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_envelopes_are_rejected(which in 0usize..2, m in mutation()) {
        let case = &cases()[which];
        prop_assert!(verify_with(&case.envelope, &case.trust, &case.rules).is_ok());
        let mutated = apply(&case.envelope, &m);
        prop_assume!(mutated != case.envelope);
        let r = verify_with(&mutated, &case.trust, &case.rules);
        prop_assert!(r.is_err(), "mutation {:?} was accepted", m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = suit::Envelope::decode(&bytes, &Limits::default());
        let mut tagged = vec![0xd8, 0x6b];
        tagged.extend_from_slice(&bytes);
        let _ = suit::Envelope::decode(&tagged, &Limits::default());
    }
}

/// Exhaustive: every single-bit flip anywhere in the envelope is rejected. (This is how the
/// COSE nil payload 0xf6 -> 0xf7 `undefined` re-encoding was found.)
#[test]
fn every_single_bit_flip_is_rejected() {
    for case in cases() {
        for i in 0..case.envelope.len() {
            for bit in 0..8 {
                let mut m = case.envelope.clone();
                m[i] ^= 1 << bit;
                assert!(
                    verify_with(&m, &case.trust, &case.rules).is_err(),
                    "flip of bit {bit} in byte {i} (0x{:02x}) was accepted",
                    case.envelope[i]
                );
            }
        }
    }
}
