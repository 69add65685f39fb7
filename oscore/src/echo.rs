//! Time-based Echo values (RFC 9175 §2.3, Appendix A method 3) that the server that issued
//! them can check for age without keeping any per-challenge state.
//!
//! A value is `t || tag`: `t` is the issuing time in milliseconds since the key's epoch
//! (8 bytes, big-endian) and `tag` the first 8 bytes of
//! `HMAC-SHA-256(key, "oscore-echo/1" || t || len(id_context) || id_context || recipient_id)`.
//! The key is random per server instance (the caller passes it in, with the epoch: the core
//! reads neither the clock nor an RNG), so:
//!
//! * a value issued before a restart never verifies after it (a new key): this is what lets a
//!   server that lost its replay window prove that a request was made *after* the restart
//!   (RFC 8613 Appendix B.1.2);
//! * a value is bound to the security context it was issued in (a value sent to one peer is
//!   no use to another);
//! * its age is known from the value alone, so a server can require that the request that
//!   triggers an action was made recently (RFC 9175 §2.3 freshness), whatever the number of
//!   outstanding challenges.
//!
//! The Echo option is Class E (inside OSCORE), so only the peer sees and returns the value;
//! the tag keeps even the peer from making up a younger one.

use std::fmt;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of an Echo value made here (RFC 9175 §2.2 allows 1 to 40 bytes).
pub const ECHO_LEN: usize = 16;

const LABEL: &[u8] = b"oscore-echo/1";

/// The key and epoch of one server instance's Echo values.
pub struct EchoKey {
    key: Zeroizing<[u8; 32]>,
    epoch: Instant,
}

impl fmt::Debug for EchoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoKey")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Identifies the security context an Echo value belongs to.
#[derive(Debug, Clone, Copy)]
pub struct EchoScope<'a> {
    /// The peer's Sender ID (our Recipient ID).
    pub recipient_id: &'a [u8],
    /// The context's ID Context, if any.
    pub id_context: Option<&'a [u8]>,
}

impl EchoKey {
    /// A key from 32 random bytes (the caller's RNG) and the instant its clock starts at.
    pub fn new(secret: [u8; 32], epoch: Instant) -> Self {
        EchoKey {
            key: Zeroizing::new(secret),
            epoch,
        }
    }

    fn tag(&self, t: &[u8; 8], scope: EchoScope<'_>) -> [u8; 8] {
        let mut out = [0u8; 8];
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key[..]) else {
            // HMAC accepts keys of any length; unreachable, and a zero tag never verifies
            // against a real one.
            return out;
        };
        mac.update(LABEL);
        mac.update(t);
        let ctx = scope.id_context.unwrap_or_default();
        // Lengths are at most 255 (kid context) and 7 (ids): one byte each is unambiguous.
        mac.update(&[u8::try_from(ctx.len()).unwrap_or(u8::MAX)]);
        mac.update(ctx);
        mac.update(scope.recipient_id);
        let full = mac.finalize().into_bytes();
        out.copy_from_slice(&full[..8]);
        out
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A fresh Echo value for `scope`, issued at `now`.
    pub fn issue(&self, scope: EchoScope<'_>, now: Instant) -> Vec<u8> {
        let t = self.millis(now).to_be_bytes();
        let mut v = Vec::with_capacity(ECHO_LEN);
        v.extend_from_slice(&t);
        v.extend_from_slice(&self.tag(&t, scope));
        v
    }

    /// The age at `now` of an Echo value this key issued for `scope`; `None` for anything
    /// else (another key, e.g. from before a restart; another context; a malformed value; a
    /// time after `now`). The tag is compared in constant time.
    pub fn age(&self, value: &[u8], scope: EchoScope<'_>, now: Instant) -> Option<Duration> {
        use subtle::ConstantTimeEq;
        if value.len() != ECHO_LEN {
            return None;
        }
        let (t, tag) = value.split_at(8);
        let t: [u8; 8] = t.try_into().ok()?;
        if !bool::from(self.tag(&t, scope).ct_eq(tag)) {
            return None;
        }
        let issued = u64::from_be_bytes(t);
        let now_ms = self.millis(now);
        (issued <= now_ms).then(|| Duration::from_millis(now_ms - issued))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const A: EchoScope<'static> = EchoScope {
        recipient_id: b"\x01",
        id_context: None,
    };

    #[test]
    fn age_scope_and_key() {
        let t0 = Instant::now();
        let k = EchoKey::new([7; 32], t0);
        let v = k.issue(A, t0 + Duration::from_millis(1500));
        assert_eq!(v.len(), ECHO_LEN);
        assert_eq!(
            k.age(&v, A, t0 + Duration::from_millis(4000)),
            Some(Duration::from_millis(2500))
        );
        // Not before it was issued.
        assert_eq!(k.age(&v, A, t0 + Duration::from_millis(1000)), None);
        // Another context, another key (a restart), a changed value: refused.
        let b = EchoScope {
            recipient_id: b"\x02",
            id_context: None,
        };
        assert_eq!(k.age(&v, b, t0 + Duration::from_secs(2)), None);
        let with_ctx = EchoScope {
            recipient_id: b"\x01",
            id_context: Some(b"c"),
        };
        assert_eq!(k.age(&v, with_ctx, t0 + Duration::from_secs(2)), None);
        let k2 = EchoKey::new([8; 32], t0);
        assert_eq!(k2.age(&v, A, t0 + Duration::from_secs(2)), None);
        let mut younger = v.clone();
        younger[7] ^= 1;
        assert_eq!(k.age(&younger, A, t0 + Duration::from_secs(2)), None);
        assert_eq!(k.age(&v[..15], A, t0 + Duration::from_secs(2)), None);
        assert!(!format!("{k:?}").contains("07"));
    }
}
