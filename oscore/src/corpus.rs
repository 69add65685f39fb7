//! Hostile datagrams for the amplification tests of every CoAP server of the project (the
//! oscore example server, the dispatcher's uplink, devices), and the probe that sends them:
//! what anyone can send without a key, and the answers it gets back (RFC 7252 §11.3).
//! Behind the `test-corpus` feature: tests only.

use std::net::SocketAddr;
use std::time::Duration;

/// Small datagrams anyone can send without a key: the 4-byte GET of issue 13 first, junk of
/// 0–40 bytes (xorshift, so a failure names a reproducible datagram), bare CoAP headers of
/// every type, an unprotected request with a path, an OSCORE option that does not parse, an
/// unknown kid (0x77), and `known_kid` (a kid the server holds) with 9 bytes of ciphertext
/// that do not verify.
pub fn hostile_datagrams(known_kid: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![vec![0x40, 0x01, 0x00, 0x01]];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for len in 0..=40usize {
        let mut d: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if let Some(b) = d.first_mut() {
            *b = 0x40 | (*b & 0x3f);
        }
        out.push(d);
    }
    for t in 0..4u8 {
        out.push(vec![0x40 | (t << 4), 0x01, 0x12, t]);
        out.push(vec![0x48 | (t << 4), 0x02, 0x12, t, 1, 2, 3, 4, 5, 6, 7, 8]);
    }
    // GET /x; OSCORE option "0x20" (malformed); kid 0x77 (unknown).
    out.push(vec![0x40, 0x01, 0x00, 0x02, 0xb1, b'x']);
    out.push(vec![0x40, 0x02, 0x00, 0x03, 0x91, 0x20, 0xff, 0]);
    out.push(
        [
            vec![0x40, 0x02, 0x00, 0x04, 0x93, 0x09, 0x00, 0x77, 0xff],
            vec![0; 9],
        ]
        .concat(),
    );
    // The known kid: option length = flags, Partial IV and kid (one nibble: kid ≤ 10 bytes).
    assert!(known_kid.len() <= 10, "a kid of at most 10 bytes");
    let mut known = vec![
        0x40,
        0x02,
        0x00,
        0x05,
        0x90 | (2 + known_kid.len() as u8),
        0x09,
        0x05,
    ];
    known.extend_from_slice(known_kid);
    known.push(0xff);
    known.extend_from_slice(&[0; 9]);
    out.push(known);
    out
}

/// Sends each datagram from a socket of its own, all at once, to `to`; the answer to each,
/// if one comes within 5 s (a late answer is only not measured). Panics if a probe cannot
/// be sent (a test that sent nothing must not pass).
pub async fn reflect(to: SocketAddr, datagrams: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let tasks: Vec<_> = datagrams
        .iter()
        .cloned()
        .map(|d| {
            tokio::spawn(async move {
                let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("a probe socket");
                s.send_to(&d, to).await.expect("a probe datagram sent");
                let mut buf = vec![0u8; 2048];
                match tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await {
                    Ok(Ok(n)) => Some(buf[..n].to_vec()),
                    _ => None,
                }
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a probe task"));
    }
    out
}
