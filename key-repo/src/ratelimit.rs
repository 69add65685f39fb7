//! Token-bucket rate limiting keyed by client id or remote address.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Most keys tracked; beyond this, idle buckets are dropped.
const MAX_KEYS: usize = 50_000;

#[derive(Debug)]
pub struct RateLimiter<K> {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(burst: u32, per_sec: f64) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn check(&self, key: &K) -> bool {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &K, now: Instant) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return false;
        };
        if b.len() >= MAX_KEYS {
            let (burst, rate) = (self.burst, self.per_sec);
            b.retain(|_, (tokens, t)| {
                *tokens + now.duration_since(*t).as_secs_f64() * rate < burst
            });
        }
        let entry = b.entry(key.clone()).or_insert((self.burst, now));
        let refill = now.duration_since(entry.1).as_secs_f64() * self.per_sec;
        entry.0 = (entry.0 + refill).min(self.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_empties_and_refills() {
        let rl = RateLimiter::new(3, 1.0);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rl.check_at(&"a", t0)));
        assert!(!rl.check_at(&"a", t0));
        assert!(rl.check_at(&"b", t0));
        assert!(rl.check_at(&"a", t0 + Duration::from_millis(1100)));
        assert!(!rl.check_at(&"a", t0 + Duration::from_millis(1200)));
    }
}
