//! The thin tokio UDP layer around the sans-I/O [`crate::endpoint`]: a CoAP client
//! (confirmable messages with retransmission and exponential back-off, separate responses,
//! RST) and a CoAP server (receive/send loops, observation timers). Sockets, the clock and the
//! OS RNG live here; duplicate detection, OSCORE, Echo and block-wise live in the core.

mod client;
mod files;
mod server;

use std::time::Duration;

pub use crate::endpoint::{ContextSet, Handler, Notification, Reply, Request, ServerConfig};
pub use client::{Client, Response};
pub use files::FileHandler;
pub use server::{Server, ServerHandle};

/// Default kernel buffer size for servers (see [`bind_udp`]).
pub const SERVER_SOCKET_BUFFER: usize = 4 << 20;

/// Client transmission parameters (RFC 7252 §4.8; adjustable as §4.8.1 allows).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// ACK_TIMEOUT (default 2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR (default 1.5).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT (default 4).
    pub max_retransmit: u32,
    /// How long to wait for a separate response after an empty ACK.
    pub separate_timeout: Duration,
    /// Block size exponent used for Block1/Block2 (6 = 1024 bytes).
    pub block_szx: u8,
    /// Largest datagram accepted.
    pub max_message: usize,
    /// Largest response body assembled from Block2.
    pub max_body: usize,
    /// How many times a block exchange that timed out is retried, resuming the transfer at
    /// the last confirmed block (RFC 7959 §2.4/§2.5 let a client continue at any block).
    pub resume_attempts: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            separate_timeout: Duration::from_secs(30),
            block_szx: 6,
            max_message: crate::message::DEFAULT_MAX_MESSAGE,
            max_body: 64 << 20,
            resume_attempts: 3,
        }
    }
}

/// Tiny non-cryptographic PRNG for jitter, message ids and tokens (xorshift64*), seeded from
/// the OS. Echo values use the OS RNG directly.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn from_os() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Jitter(u64::from_le_bytes(b) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Binds a UDP socket with enlarged kernel buffers (best effort: the kernel caps them at
/// `net.core.rmem_max`/`wmem_max`). A server with many clients needs room for a burst of one
/// request per client, or the kernel drops them and the clients wait for a retransmission.
pub fn bind_udp(
    addr: std::net::SocketAddr,
    buffer_bytes: usize,
) -> std::io::Result<tokio::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(buffer_bytes);
    let _ = s.set_send_buffer_size(buffer_bytes);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}
