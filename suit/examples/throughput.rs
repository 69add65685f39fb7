//! Component throughput on this machine (for tuning the release pipeline):
//! cargo run --release -p suit --example throughput
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
use sha2::{Digest, Sha256};
use std::time::Instant;

fn main() {
    let mut buf = vec![0x5au8; 64 << 20];
    let mb = buf.len() as f64 / 1e6;
    for _ in 0..2 {
        let t = Instant::now();
        let d = Sha256::digest(&buf);
        std::hint::black_box(d);
        println!("sha256        {:7.0} MB/s", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut g = suit::gcm::GcmStream::new(&[1u8; 16], &[2u8; 12], b"").unwrap();
        for c in buf.chunks_mut(4 << 20) {
            g.encrypt(c);
        }
        std::hint::black_box(g.finish_encrypt());
        println!("GcmStream     {:7.0} MB/s", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let tag = aes_gcm::Aes128Gcm::new_from_slice(&[1u8; 16])
            .unwrap()
            .encrypt_inout_detached(&[2u8; 12].into(), b"", buf.as_mut_slice().into())
            .unwrap();
        std::hint::black_box(tag);
        println!("aes-gcm crate {:7.0} MB/s", mb / t.elapsed().as_secs_f64());
    }
}
