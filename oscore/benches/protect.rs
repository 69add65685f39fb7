//! Hot paths of one block exchange: protecting and verifying a 1024-byte Block2 response
//! and the request for it, and strict datagram decoding. `cargo bench -p oscore`.

#![allow(clippy::unwrap_used)] // benchmark fixtures

use coap_lite::MessageType;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oscore::block::BlockValue;
use oscore::message::{self, code, opt};
use oscore::{ContextParams, MemorySeqStore, SecurityContext, protect};
use std::hint::black_box;
use zeroize::Zeroizing;

fn ctx(sender: &[u8], recipient: &[u8]) -> SecurityContext {
    let p = ContextParams {
        master_secret: Zeroizing::new(vec![9; 16]),
        master_salt: vec![],
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    };
    SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut client = ctx(b"\x01", b"");
    let mut server = ctx(b"", b"\x01");
    let mut req = message::packet(MessageType::Confirmable, code::GET, 1, b"tokn");
    message::set_path(&mut req, "fw/image.bin");
    message::set(
        &mut req,
        opt::BLOCK2,
        BlockValue::new(17, false, 6).encode(),
    );
    let mut resp = message::packet(MessageType::Acknowledgement, code::CONTENT, 1, b"tokn");
    message::set(
        &mut resp,
        opt::BLOCK2,
        BlockValue::new(17, true, 6).encode(),
    );
    resp.payload = vec![0xa5; 1024];

    let mut g = c.benchmark_group("block exchange");
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("client: protect request + verify 1024-byte response", |b| {
        // A server answer to a fixed request, verified against a fresh binding each time.
        let (outer, binding0) = protect::protect_request(&mut client, &req).unwrap();
        let v = protect::unprotect_request(&mut server, &outer).unwrap();
        let answer = protect::protect_response(&mut server, &v.binding, &resp, false).unwrap();
        let wire = message::encode(&answer, 1500).unwrap();
        b.iter(|| {
            let (o, _) = protect::protect_request(&mut client, black_box(&req)).unwrap();
            black_box(message::encode(&o, 1500).unwrap());
            let p = message::decode(black_box(&wire), 1500).unwrap();
            black_box(protect::unprotect_response(&mut client, &binding0, &p).unwrap());
        })
    });
    g.bench_function("server: verify request + protect 1024-byte response", |b| {
        b.iter_batched(
            || {
                message::encode(
                    &protect::protect_request(&mut client, &req).unwrap().0,
                    1500,
                )
                .unwrap()
            },
            |wire| {
                let p = message::decode(&wire, 1500).unwrap();
                let v = protect::unprotect_request(&mut server, &p).unwrap();
                let r = protect::protect_response(&mut server, &v.binding, &resp, false).unwrap();
                black_box(message::encode(&r, 1500).unwrap())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
