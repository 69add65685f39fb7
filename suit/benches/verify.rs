//! Hot paths: envelope verification (decode + digest + ES256), approval, and streaming
//! payload decryption. Run: cargo bench -p suit
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use suit::release::{ReleaseParams, build_release, decrypt_payload};
use suit::{
    IcsMetadata, Limits, ReleaseKey, Role, SigningKey, TrustAnchor, TrustStore, UpdateType,
};

fn release(image: &[u8]) -> (Vec<u8>, Vec<u8>, ReleaseKey, SigningKey) {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let signer = SigningKey::generate(&mut rng).with_kid(b"maker".to_vec());
    let p = ReleaseParams {
        vendor_id: uuid::Uuid::from_u128(1),
        class_id: uuid::Uuid::from_u128(2),
        device_id: None,
        sequence: 1,
        version: vec![1, 0, 0],
        requires: None,
        uri: None,
        ics: IcsMetadata::new(UpdateType::T2),
    };
    let r = build_release(&p, image, b"rk", &signer, &mut rng).unwrap();
    (r.envelope, r.blob, r.release_key, signer)
}

fn bench(c: &mut Criterion) {
    let image = vec![0x5au8; 1 << 20];
    let (env, payload, kek, signer) = release(&image);
    let mut trust = TrustStore::new();
    trust.add(TrustAnchor::new(signer.public_key(), Role::Manufacturer));
    let limits = Limits::default();

    let rules = suit::Rules::dispatcher_intake();
    c.bench_function("accept envelope (decode + digest + ES256 + profile)", |b| {
        b.iter(|| suit::accept(black_box(&env), &trust, &rules, 0).unwrap())
    });
    c.bench_function("decode envelope only", |b| {
        b.iter(|| suit::Envelope::decode(black_box(&env), &limits).unwrap())
    });
    let v = suit::accept(&env, &trust, &rules, 0).unwrap();
    let approver = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    c.bench_function("approve (add second COSE_Sign1)", |b| {
        b.iter(|| suit::approve(black_box(&v), &approver).unwrap())
    });
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("check + decrypt + check 1 MiB", |b| {
        b.iter(|| decrypt_payload(&v, black_box(&payload), &kek).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
