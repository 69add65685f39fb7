//! Envelope decoding and verification on untrusted bytes: must never panic, and must never
//! accept anything not signed by the trusted key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use suit::{Limits, PublicKey, Role, TrustAnchor, TrustStore};

fn trust() -> &'static TrustStore {
    static T: OnceLock<TrustStore> = OnceLock::new();
    T.get_or_init(|| {
        // The IETF SUIT example key: seeds from the spec examples verify under it.
        let pem = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb\n\
bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==\n\
-----END PUBLIC KEY-----\n";
        let mut t = TrustStore::new();
        if let Ok(k) = PublicKey::from_pem(pem) {
            t.add(TrustAnchor::new(k, Role::Manufacturer).matching_any_kid());
        }
        t.add_mac_key(&[0x61; 32]);
        t
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(env) = suit::Envelope::decode(data, &limits) {
        let _ = suit::inspect::describe(&env);
    }
    // Both profiles: the release profile runs the one parameter resolver as well.
    for rules in [suit::Rules::generic(), suit::Rules::dispatcher_intake()] {
        if let Ok(v) = suit::accept(data, trust(), &rules, 0) {
            let _ = suit::release::encryption_info(&v);
            let dev = suit::DeviceState::new(Default::default(), Default::default());
            let _ = suit::evaluate(&v, &dev, &limits);
            // An accepted envelope's canonical form is accepted again, unchanged.
            let again = suit::accept(v.canonical(), trust(), &rules, 0).map(|a| a.canonical().to_vec());
            assert_eq!(again.as_deref().ok(), Some(v.canonical()));
        }
    }
    let _ = suit::EncryptionInfo::decode(data);
    let _ = suit::manifest::CommandSequence::decode_bstr(data, &limits);
});
