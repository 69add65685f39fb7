//! An in-process UDP relay that puts a [`LinkFault`] between clients and one endpoint: each
//! datagram, in both directions, is dropped with the fault's probability and delivered after
//! its delay ([`LinkModel`]).
//!
//! One task owns the public ("front") socket, the delay queue and the client table. Each
//! client address gets its own upstream socket, connected to the endpoint, so the endpoint
//! sees one stable peer per client (its duplicate detection, Block1 reassembly and replies
//! keep working) and several clients can use the relay at once. A small reader task per
//! upstream socket hands answers back to the relay task. The table is bounded
//! ([`RelayLimits::max_clients`]): a new client evicts the least recently active one, and
//! clients idle for [`RelayLimits::idle_timeout`] are dropped.
//!
//! Delays never block: a datagram is queued with its due time and the task goes on receiving;
//! a timer wakes it for the earliest due datagram. Datagrams larger than [`MAX_DATAGRAM`] are
//! dropped (CoAP messages here are at most 1500 bytes).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::link::{Direction, LinkFault, LinkModel, QueueLimits, Verdict};

/// Largest datagram relayed.
pub const MAX_DATAGRAM: usize = 4096;
/// Answers waiting for the relay task (over all clients); more are dropped.
const BACKLOG: usize = 256;

/// Bounds of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Clients with their own upstream socket at once.
    pub max_clients: usize,
    /// A client silent for this long loses its upstream socket.
    pub idle_timeout: Duration,
    /// The delay queue.
    pub queue: QueueLimits,
}

impl Default for RelayLimits {
    /// 64 clients; idle after EXCHANGE_LIFETIME (RFC 7252 §4.8.2, 247 s), when the endpoint
    /// has forgotten the client's exchanges anyway.
    fn default() -> Self {
        RelayLimits {
            max_clients: 64,
            idle_timeout: Duration::from_secs(247),
            queue: QueueLimits::default(),
        }
    }
}

/// Counters of one direction of a relay (datagrams).
#[derive(Debug, Default)]
pub struct DirectionStats {
    /// Delivered.
    pub forwarded: AtomicU64,
    /// Dropped by the simulated loss.
    pub lost: AtomicU64,
    /// Dropped for lack of room (delay queue or backlog full, oversized, send failed).
    pub overflowed: AtomicU64,
}

impl DirectionStats {
    /// Datagrams the relay has dealt with: forwarded or dropped.
    pub fn decided(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
            + self.lost.load(Ordering::Relaxed)
            + self.overflowed.load(Ordering::Relaxed)
    }
}

/// Counters of a relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// From clients to the endpoint.
    pub upstream: DirectionStats,
    /// From the endpoint back to clients.
    pub downstream: DirectionStats,
    /// Clients evicted from the table to make room for a new one.
    pub evicted: AtomicU64,
}

impl RelayStats {
    fn of(&self, dir: Direction) -> &DirectionStats {
        match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }
}

/// A running relay. Dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Relays datagrams arriving on `front` to `upstream` and the answers back, through the
    /// link `fault` with the drop pattern of `seed`.
    pub fn spawn(
        front: UdpSocket,
        upstream: SocketAddr,
        fault: &LinkFault,
        seed: u64,
        limits: RelayLimits,
    ) -> std::io::Result<Relay> {
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let (tx, rx) = mpsc::channel(BACKLOG);
        let task = Task {
            front,
            upstream,
            model: LinkModel::new(fault, seed, limits.queue),
            clients: HashMap::new(),
            limits: RelayLimits {
                max_clients: limits.max_clients.max(1),
                ..limits
            },
            stats: stats.clone(),
            tx,
        };
        Ok(Relay {
            addr,
            stats,
            task: tokio::spawn(task.run(rx)),
        })
    }

    /// The public address: where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Stops the relay (datagrams still in the delay queue are lost, as on a cut link).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Where a queued datagram goes.
#[derive(Debug)]
enum Dest {
    Upstream(Arc<UdpSocket>),
    Client(SocketAddr),
}

/// A client's upstream socket and its reader task (aborted when the entry goes).
#[derive(Debug)]
struct Peer {
    sock: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    last: Instant,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Debug)]
struct Task {
    front: UdpSocket,
    upstream: SocketAddr,
    model: LinkModel<(Dest, Vec<u8>)>,
    clients: HashMap<SocketAddr, Peer>,
    limits: RelayLimits,
    stats: Arc<RelayStats>,
    tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<(SocketAddr, Vec<u8>)>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let sweep_every = (self.limits.idle_timeout / 4).max(Duration::from_secs(1));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self.model.next_due();
            tokio::select! {
                r = self.front.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.on_client_datagram(from, &buf[..n]),
                    Err(e) => {
                        // Not expected on an unconnected UDP socket; do not spin on it.
                        tracing::debug!(relay = %self.upstream, "receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some((client, bytes)) = rx.recv() => self.on_upstream_datagram(client, bytes),
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
                _ = sweep.tick() => self.expire(Instant::now()),
            }
            self.deliver_due().await;
        }
    }

    fn verdict(&self, dir: Direction, v: Verdict) {
        let s = self.stats.of(dir);
        let counter = match v {
            Verdict::Queued => return,
            Verdict::Lost => &s.lost,
            Verdict::Overflow => &s.overflowed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn on_client_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        if bytes.len() > MAX_DATAGRAM {
            self.stats
                .upstream
                .overflowed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let sock = match self.clients.get_mut(&from) {
            Some(p) => {
                p.last = now;
                p.sock.clone()
            }
            None => match self.connect(from, now) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(relay = %self.upstream, "cannot open an upstream socket: {e}");
                    self.stats
                        .upstream
                        .overflowed
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        let v = self.model.offer(
            Direction::Upstream,
            now,
            bytes.len(),
            (Dest::Upstream(sock), bytes.to_vec()),
        );
        self.verdict(Direction::Upstream, v);
    }

    fn on_upstream_datagram(&mut self, client: SocketAddr, bytes: Vec<u8>) {
        let now = Instant::now();
        if let Some(p) = self.clients.get_mut(&client) {
            p.last = now;
        }
        let v = self.model.offer(
            Direction::Downstream,
            now,
            bytes.len(),
            (Dest::Client(client), bytes),
        );
        self.verdict(Direction::Downstream, v);
    }

    /// A new client: its own upstream socket (evicting the least recently active client when
    /// the table is full) and a reader task for the answers.
    fn connect(&mut self, client: SocketAddr, now: Instant) -> std::io::Result<Arc<UdpSocket>> {
        if self.clients.len() >= self.limits.max_clients
            && let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, p)| p.last)
                .map(|(a, _)| *a)
        {
            self.clients.remove(&oldest);
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        // As `oscore::transport::Client::connect`: loopback for a loopback endpoint, so the
        // socket is not reachable from other hosts.
        let local: SocketAddr = match (self.upstream.is_ipv4(), self.upstream.ip().is_loopback()) {
            (true, true) => ([127, 0, 0, 1], 0).into(),
            (true, false) => ([0, 0, 0, 0], 0).into(),
            (false, true) => (std::net::Ipv6Addr::LOCALHOST, 0).into(),
            (false, false) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std_sock = std::net::UdpSocket::bind(local)?;
        std_sock.connect(self.upstream)?;
        std_sock.set_nonblocking(true)?;
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
        let reader = tokio::spawn(read_upstream(
            sock.clone(),
            client,
            self.tx.clone(),
            self.stats.clone(),
        ));
        self.clients.insert(
            client,
            Peer {
                sock: sock.clone(),
                reader,
                last: now,
            },
        );
        Ok(sock)
    }

    fn expire(&mut self, now: Instant) {
        let idle = self.limits.idle_timeout;
        self.clients
            .retain(|_, p| now.saturating_duration_since(p.last) < idle);
    }

    async fn deliver_due(&mut self) {
        while let Some((dest, bytes)) = self.model.pop_due(Instant::now()) {
            let (sent, s) = match dest {
                Dest::Upstream(s) => (s.send(&bytes).await, &self.stats.upstream),
                Dest::Client(c) => (self.front.send_to(&bytes, c).await, &self.stats.downstream),
            };
            let counter = match sent {
                Ok(_) => &s.forwarded,
                // E.g. ICMP port unreachable from a stopped endpoint: the datagram is gone.
                Err(_) => &s.overflowed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hands the endpoint's answers on `sock` to the relay task, tagged with the client.
async fn read_upstream(
    sock: Arc<UdpSocket>,
    client: SocketAddr,
    tx: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    stats: Arc<RelayStats>,
) {
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) if n <= MAX_DATAGRAM => {
                if tx.try_send((client, buf[..n].to_vec())).is_err() {
                    stats.downstream.overflowed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {
                stats.downstream.overflowed.fetch_add(1, Ordering::Relaxed);
            }
            // ICMP port unreachable on a connected socket (the endpoint restarts): go on.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests;
