//! The connection budget: who holds a slot, who is idle, whom to evict.
//!
//! Every accepted TCP connection takes a slot, from a total budget and from its peer
//! address's share. A slot held by a connection with no request in flight (still in its TLS
//! handshake, or finished with its last response) is *idle* and may be taken back: when a new
//! connection finds the budget or its address's share spent, the longest-idle connection
//! (of that address, for the share) is closed to make room. Idle connections therefore never
//! keep a newcomer out; only connections that are busy with requests do, and those are
//! bounded by the request timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// One connection's slot.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    ip: IpAddr,
    in_flight: AtomicUsize,
    /// Milliseconds since the registry's epoch when the connection was last active (accepted,
    /// a request started, a response finished).
    last_active: AtomicU64,
    /// Cancelled when the connection is evicted.
    pub(crate) evicted: CancellationToken,
    registry: Arc<Registry>,
}

impl Conn {
    fn touch(&self) {
        self.last_active
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }

    /// A request started: the connection is busy until the guard drops.
    pub(crate) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard(self.clone())
    }

    /// When the connection may be closed for idleness (if no request is in flight then).
    pub(crate) fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let ms = self.last_active.load(Ordering::Relaxed);
        tokio::time::Instant::from_std(self.registry.epoch) + Duration::from_millis(ms) + idle
    }

    /// No request in flight and nothing happened for `idle`.
    pub(crate) fn idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self
                .registry
                .now_ms()
                .saturating_sub(self.last_active.load(Ordering::Relaxed))
                >= idle.as_millis() as u64
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Held while a request (and its response body) is in progress.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.registry.room.notify_waiters();
        }
    }
}

/// A slot; released when dropped.
#[derive(Debug)]
pub(crate) struct Ticket(pub(crate) Arc<Conn>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.registry.release(self.0.id, self.0.ip);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address holds its whole share, every connection busy.
    PerAddress,
    /// The budget is spent on busy connections.
    Budget,
}

#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The budget of one serve loop.
#[derive(Debug)]
pub(crate) struct Registry {
    max_total: usize,
    max_per_ip: usize,
    epoch: Instant,
    slots: Mutex<Slots>,
    /// Signalled when a slot is released or a connection becomes idle.
    room: tokio::sync::Notify,
    evictions: AtomicU64,
}

impl Registry {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Registry> {
        Arc::new(Registry {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            epoch: Instant::now(),
            slots: Mutex::new(Slots::default()),
            room: tokio::sync::Notify::new(),
            evictions: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A poisoned lock only means another connection task panicked; the map is intact.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections holding a slot now.
    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Connections closed so far to make room.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection from `ip`, closing the longest-idle connection (of `ip`
    /// when its share is spent, of anyone when the budget is) to make room if needed.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut s = self.lock();
        if s.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            let victim = oldest_idle(&s, Some(ip)).ok_or(Refusal::PerAddress)?;
            self.evict(&mut s, victim);
        }
        if s.conns.len() >= self.max_total {
            let victim = oldest_idle(&s, None).ok_or(Refusal::Budget)?;
            self.evict(&mut s, victim);
        }
        s.next_id += 1;
        let conn = Arc::new(Conn {
            id: s.next_id,
            ip,
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            evicted: CancellationToken::new(),
            registry: self.clone(),
        });
        s.conns.insert(conn.id, conn.clone());
        *s.per_ip.entry(ip).or_default() += 1;
        Ok(Ticket(conn))
    }

    /// Waits until a new connection could be admitted without refusal by the budget: a free
    /// slot, or an idle connection to evict.
    pub(crate) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.lock();
                if s.conns.len() < self.max_total || s.conns.values().any(|c| c.is_idle()) {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until every connection has released its slot.
    pub(crate) async fn empty(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn evict(&self, s: &mut Slots, id: u64) {
        if let Some(c) = s.conns.remove(&id) {
            dec(&mut s.per_ip, c.ip);
            c.evicted.cancel();
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %c.ip, "idle connection closed to make room");
        }
    }

    fn release(&self, id: u64, ip: IpAddr) {
        let mut s = self.lock();
        // An evicted connection's slot was already given back.
        if s.conns.remove(&id).is_some() {
            dec(&mut s.per_ip, ip);
        }
        drop(s);
        self.room.notify_waiters();
    }
}

fn dec(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

fn oldest_idle(s: &Slots, ip: Option<IpAddr>) -> Option<u64> {
    s.conns
        .values()
        .filter(|c| c.is_idle() && ip.is_none_or(|ip| c.ip == ip))
        .min_by_key(|c| (c.last_active.load(Ordering::Relaxed), c.id))
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let r = Registry::new(3, 2);
        let a1 = r.admit(ip(1)).unwrap();
        let a2 = r.admit(ip(1)).unwrap();
        // Address 1's share is spent: its oldest idle connection (a1) is evicted.
        let a3 = r.admit(ip(1)).unwrap();
        assert!(a1.0.evicted.is_cancelled());
        assert!(!a2.0.evicted.is_cancelled());
        drop(a1); // the evicted connection's task ends; nothing is released twice
        assert_eq!(r.len(), 2);
        // Busy connections of address 1 are kept: the newcomer is refused.
        let _g2 = a2.0.begin_request();
        let _g3 = a3.0.begin_request();
        assert_eq!(r.admit(ip(1)).unwrap_err(), Refusal::PerAddress);
        // Another address takes the last slot of the budget...
        let b1 = r.admit(ip(2)).unwrap();
        // ...and, once it is idle, gives it up to a third address.
        let c1 = r.admit(ip(3)).unwrap();
        assert!(b1.0.evicted.is_cancelled());
        let _gc = c1.0.begin_request();
        assert_eq!(r.admit(ip(4)).unwrap_err(), Refusal::Budget);
        assert_eq!(r.evictions(), 2);
    }

    #[tokio::test]
    async fn room_is_signalled_when_a_request_ends() {
        let r = Registry::new(1, 1);
        let a = r.admit(ip(1)).unwrap();
        let g = a.0.begin_request();
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.room().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        waiter.await.unwrap();
        drop(a);
        r.empty().await;
    }
}
