//! Building releases in memory for tests.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(dead_code, unreachable_pub)]

use suit::release::ReleaseParams;
use suit::{
    Accepted, Error, IcsMetadata, Limits, PublicKey, ReleaseKey, Role, Rules, SigningKey,
    TrustAnchor, TrustStore, UpdateType,
};
use uuid::Uuid;

pub const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
pub const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);
pub const OTHER: Uuid = Uuid::from_u128(0x11111111_2222_3333_4444_555555555555);

pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

pub fn key(kid: &str) -> SigningKey {
    SigningKey::generate(&mut rng()).with_kid(kid.as_bytes().to_vec())
}

pub struct Built {
    pub envelope: Vec<u8>,
    pub payload: Vec<u8>,
    pub kek: ReleaseKey,
    pub image: Vec<u8>,
}

pub fn params(sequence: u64, update_type: UpdateType) -> ReleaseParams {
    ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence,
        version: vec![1, 2, 3],
        requires: None,
        uri: Some("coaps://dispatcher.local/blob".into()),
        ics: IcsMetadata::new(update_type),
    }
}

pub fn build_with(p: &ReleaseParams, signer: &SigningKey, image: &[u8]) -> Built {
    let r = suit::release::build_release(p, image, b"rk-test", signer, &mut rng()).unwrap();
    Built {
        envelope: r.envelope,
        payload: r.blob,
        kek: r.release_key,
        image: image.to_vec(),
    }
}

pub fn build(sequence: u64, signer: &SigningKey) -> Built {
    build_with(
        &params(sequence, UpdateType::T2),
        signer,
        b"firmware image v1.2.3 for tests",
    )
}

pub fn trust(keys: &[(&SigningKey, Role)]) -> TrustStore {
    let mut t = TrustStore::new();
    for (k, role) in keys {
        t.add(TrustAnchor::new(k.public_key(), *role));
    }
    t
}

pub fn public(k: &SigningKey) -> PublicKey {
    k.public_key()
}

/// `suit::accept` under the publisher's rules (an approval is checked when present), with
/// these limits, at time 0.
pub fn verify(bytes: &[u8], t: &TrustStore, limits: &Limits) -> Result<Accepted, Error> {
    verify_with(
        bytes,
        t,
        &Rules::publisher_check().with_limits(limits.clone()),
    )
}

/// `suit::accept` under `rules` at time 0.
pub fn verify_with(bytes: &[u8], t: &TrustStore, rules: &Rules) -> Result<Accepted, Error> {
    suit::accept(bytes, t, rules, 0)
}

/// `suit::accept` of a generic SUIT envelope (published vectors).
pub fn verify_generic(bytes: &[u8], t: &TrustStore, limits: &Limits) -> Result<Accepted, Error> {
    verify_with(bytes, t, &Rules::generic().with_limits(limits.clone()))
}
