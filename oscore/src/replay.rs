//! Replay window for received Partial IVs (RFC 8613 §7.4, using the RFC 4303 §3.4.3 sliding
//! window with a size of 64).

use crate::error::{Error, Result};

/// Window size in sequence numbers.
pub const WINDOW: u64 = 64;

/// The state of the replay window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayWindow {
    /// A freshly provisioned context: nothing received yet, every number is new.
    Empty,
    /// `top` is the highest number received; bit i of `bits` set = `top - i` received.
    Active {
        /// Highest sequence number accepted so far.
        top: u64,
        /// Bitmap of received numbers below and including `top`.
        bits: u64,
    },
    /// The window was lost (restart without persisted window): RFC 8613 Appendix B.1.2.
    Lost,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// Empty window.
    pub fn new() -> Self {
        ReplayWindow::Empty
    }

    /// Lost window (needs the Echo exchange).
    pub fn lost() -> Self {
        ReplayWindow::Lost
    }

    /// RFC 8613 §7.4: checks `seq` without recording it.
    pub fn check(&self, seq: u64) -> Result<()> {
        match *self {
            ReplayWindow::Empty => Ok(()),
            ReplayWindow::Lost => Err(Error::EchoRequired),
            ReplayWindow::Active { top, bits } => {
                if seq > top {
                    return Ok(());
                }
                let diff = top - seq;
                if diff >= WINDOW || bits & (1u64 << diff) != 0 {
                    return Err(Error::Replay { seq });
                }
                Ok(())
            }
        }
    }

    /// Records `seq` after successful verification (§7.4: update only after decryption).
    pub fn record(&mut self, seq: u64) {
        match *self {
            ReplayWindow::Empty | ReplayWindow::Lost => {
                *self = ReplayWindow::Active { top: seq, bits: 1 };
            }
            ReplayWindow::Active { top, bits } => {
                if seq > top {
                    let shift = seq - top;
                    let bits = if shift >= WINDOW { 0 } else { bits << shift };
                    *self = ReplayWindow::Active {
                        top: seq,
                        bits: bits | 1,
                    };
                } else {
                    let diff = top - seq;
                    if diff < WINDOW {
                        *self = ReplayWindow::Active {
                            top,
                            bits: bits | (1u64 << diff),
                        };
                    }
                }
            }
        }
    }

    /// RFC 8613 Appendix B.1.2: after a verified Echo, the window restarts at `seq`, and every
    /// lower number counts as received (they may have been accepted before the restart).
    pub fn reinit(&mut self, seq: u64) {
        *self = ReplayWindow::Active {
            top: seq,
            bits: u64::MAX,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_semantics() {
        let mut w = ReplayWindow::new();
        assert!(w.check(5).is_ok());
        w.record(5);
        assert!(matches!(w.check(5), Err(Error::Replay { seq: 5 })));
        assert!(w.check(4).is_ok());
        w.record(4);
        assert!(w.check(4).is_err());
        w.record(100);
        assert!(w.check(36).is_err(), "outside the window is rejected");
        assert!(w.check(37).is_ok());
        assert!(w.check(100).is_err());
        assert!(w.check(101).is_ok());
        assert!(matches!(
            ReplayWindow::lost().check(1),
            Err(Error::EchoRequired)
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_accepts_twice(seqs in proptest::collection::vec(0u64..200, 1..100)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::HashSet::new();
            for s in seqs {
                if w.check(s).is_ok() {
                    proptest::prop_assert!(seen.insert(s), "accepted {} twice", s);
                    w.record(s);
                }
            }
        }
    }
}
