//! Micro-benchmarks of the per-request work of a key read, each against a reference
//! measured in the same run (SHA-256 of the token, which every request pays anyway).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use foundations::token::{self, Audience, Claims, Kind, TimeRules, TokenSigner};
use key_repo::crypto::MasterKey;

fn claims(now: u64) -> Claims {
    Claims {
        iss: "https://kr.bench".into(),
        sub: Some("c".into()),
        aud: Audience::One("https://kr.bench/v1".into()),
        exp: now + 300,
        iat: now,
        nbf: Some(now),
        jti: Some("j".into()),
        client_id: Some("c".into()),
        scope: Some("keys:read".into()),
        extra: serde_json::Map::from_iter([(
            "products".to_string(),
            serde_json::json!([
                "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
            ]),
        )]),
    }
}

fn bench(c: &mut Criterion) {
    let signer = TokenSigner::generate().expect("key");
    let now = foundations::now_unix();
    let token = signer.sign(&claims(now)).expect("sign");
    let keys = signer.key_set();
    c.bench_function("reference: sha256(token)", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(token.as_bytes())))
    });
    let rules = TimeRules {
        leeway: 30,
        max_lifetime: 3600,
    };
    c.bench_function("jwt parse + ES256 verify (uncached, jsonwebtoken)", |b| {
        b.iter(|| {
            token::verify(
                black_box(&token),
                Kind::AccessToken,
                &keys,
                "https://kr.bench/v1",
                now,
                rules,
            )
            .expect("verify")
        })
    });
    let mk = MasterKey::generate().expect("mk");
    let sealed = mk.seal("kid-1", "v/c", &[7u8; 40]).expect("seal");
    c.bench_function("AES-256-GCM open of a stored key", |b| {
        b.iter(|| mk.open("kid-1", "v/c", black_box(&sealed)).expect("open"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
