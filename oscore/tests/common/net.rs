//! Loopback helpers: a file server on 127.0.0.1:0 and a lossy UDP relay.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oscore::SecurityContext;
use oscore::transport::{FileHandler, Server, ServerConfig, ServerHandle};
use tokio::net::UdpSocket;

pub(crate) async fn file_server(dir: &Path, contexts: Vec<SecurityContext>) -> ServerHandle {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Server::new(
        sock,
        contexts,
        Arc::new(FileHandler::new(dir)),
        ServerConfig::default(),
    )
    .spawn()
    .unwrap()
}

/// Deterministic pseudo-random data.
pub(crate) fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Counters of a relay.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// A UDP relay in front of `server` that drops `loss` (0..1) of the datagrams in each
/// direction, deterministically from `seed`. Runs until the returned task is aborted.
pub(crate) async fn lossy_relay(
    server: SocketAddr,
    loss: f64,
    seed: u64,
) -> (SocketAddr, Arc<RelayStats>, tokio::task::JoinHandle<()>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let stats = Arc::new(RelayStats::default());
    let st = stats.clone();
    let task = tokio::spawn(async move {
        let mut rng = seed | 1;
        let mut drop_it = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            ((rng >> 11) as f64 / (1u64 << 53) as f64) < loss
        };
        let mut client: Option<SocketAddr> = None;
        let mut b1 = vec![0u8; 65536];
        let mut b2 = vec![0u8; 65536];
        loop {
            tokio::select! {
                r = front.recv_from(&mut b1) => {
                    let Ok((n, from)) = r else { continue };
                    client = Some(from);
                    if drop_it() { st.dropped.fetch_add(1, Ordering::Relaxed); continue; }
                    st.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = back.send(&b1[..n]).await;
                }
                r = back.recv(&mut b2) => {
                    let Ok(n) = r else { continue };
                    let Some(c) = client else { continue };
                    if drop_it() { st.dropped.fetch_add(1, Ordering::Relaxed); continue; }
                    st.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = front.send_to(&b2[..n], c).await;
                }
            }
        }
    });
    (addr, stats, task)
}
