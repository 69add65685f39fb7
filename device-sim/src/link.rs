//! The "slow or lossy link" fault (issue 5): what `DIR/link.json` and the `--loss-percent` /
//! `--delay-ms` options ask for, and a model of such a link with no I/O (randomness and time
//! are parameters). [`crate::relay`] puts the model on a UDP socket in front of a device.
//!
//! ```json
//! { "loss_percent": 20, "delay_ms": 300, "seed": 7 }
//! ```
//!
//! * `loss_percent` (0 to 50, default 0): each datagram is dropped with this probability,
//!   independently, in each direction.
//! * `delay_ms` (0 to 2000, default 0): each datagram that is not dropped is delivered this
//!   many milliseconds after it arrived at the relay. Order is kept, and a delayed datagram
//!   never holds up the next one (they are scheduled, not slept on).
//! * `seed` (optional u64): makes the drop pattern reproducible; without it the pattern is
//!   seeded from the OS.
//!
//! The file is read once when the device starts. A command-line option overrides the same
//! field of the file ([`LinkOverride`]); the fields it does not set come from the file.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// The link fault file in the device directory.
pub const LINK_FILE: &str = "link.json";
/// Largest loss percentage accepted (above it nothing useful gets through a CoAP exchange).
pub const MAX_LOSS_PERCENT: u8 = 50;
/// Largest delay accepted, in milliseconds.
pub const MAX_DELAY_MS: u32 = 2000;
/// Largest `link.json` read.
const MAX_LINK_FILE: u64 = 4096;

/// Why a link fault was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A value outside its range.
    #[error("{field}: {value} is out of range (0 to {max})")]
    OutOfRange {
        /// The field (or option).
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// `link.json` exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// `link.json` is not a valid link fault.
    #[error(
        "{}: {reason} (expected {{\"loss_percent\": 0-{MAX_LOSS_PERCENT}, \"delay_ms\": 0-{MAX_DELAY_MS}, \"seed\": u64}}, all optional)",
        path.display()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
}

/// A validated link fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFault {
    loss_percent: u8,
    delay: Duration,
    seed: Option<u64>,
}

impl LinkFault {
    /// A link fault; refuses values outside `0..=MAX_LOSS_PERCENT` and `0..=MAX_DELAY_MS`.
    pub fn new(loss_percent: u8, delay_ms: u32, seed: Option<u64>) -> Result<Self, LinkError> {
        if loss_percent > MAX_LOSS_PERCENT {
            return Err(LinkError::OutOfRange {
                field: "loss_percent",
                value: loss_percent.into(),
                max: MAX_LOSS_PERCENT.into(),
            });
        }
        if delay_ms > MAX_DELAY_MS {
            return Err(LinkError::OutOfRange {
                field: "delay_ms",
                value: delay_ms.into(),
                max: MAX_DELAY_MS.into(),
            });
        }
        Ok(LinkFault {
            loss_percent,
            delay: Duration::from_millis(delay_ms.into()),
            seed,
        })
    }

    /// Percentage of datagrams dropped in each direction.
    pub fn loss_percent(&self) -> u8 {
        self.loss_percent
    }

    /// Delay added to every datagram delivered.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The seed of the drop pattern (None: from the OS).
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Parses and validates the contents of a `link.json` (`path` names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, LinkError> {
        let invalid = |reason: String| LinkError::Invalid {
            path: path.to_owned(),
            reason,
        };
        // Raw values: serde names unknown and duplicate fields itself; type and range errors
        // are reported below with the field's name (serde's own messages omit it).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            loss_percent: Option<serde_json::Value>,
            #[serde(default)]
            delay_ms: Option<serde_json::Value>,
            #[serde(default)]
            seed: Option<serde_json::Value>,
        }
        // A struct also deserializes from a JSON array; only an object is a link file.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(invalid("expected a JSON object".into()));
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let int = |field: &'static str, v: &Option<serde_json::Value>, max: u64| match v {
            None => Ok(0),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(n),
                Some(n) => Err(invalid(
                    LinkError::OutOfRange {
                        field,
                        value: n,
                        max,
                    }
                    .to_string(),
                )),
                None => Err(invalid(format!(
                    "{field}: expected an integer from 0 to {max}, got {v}"
                ))),
            },
        };
        let loss = int("loss_percent", &raw.loss_percent, MAX_LOSS_PERCENT.into())?;
        let delay = int("delay_ms", &raw.delay_ms, MAX_DELAY_MS.into())?;
        let seed = match &raw.seed {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                invalid(format!(
                    "seed: expected an unsigned 64-bit integer, got {v}"
                ))
            })?),
        };
        // In range (checked above), so the conversions cannot fail.
        let loss = u8::try_from(loss).map_err(|_| invalid("loss_percent: too large".into()))?;
        let delay = u32::try_from(delay).map_err(|_| invalid("delay_ms: too large".into()))?;
        LinkFault::new(loss, delay, seed).map_err(|e| invalid(e.to_string()))
    }

    /// Reads `DIR/link.json`: None when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, LinkError> {
        let path = dir.join(LINK_FILE);
        let read_err = |source| LinkError::Read {
            path: path.clone(),
            source,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_LINK_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_LINK_FILE {
            return Err(LinkError::Invalid {
                path,
                reason: format!("larger than {MAX_LINK_FILE} bytes"),
            });
        }
        Self::parse(&path, &bytes).map(Some)
    }
}

/// Link fault settings from the command line. A field set here overrides the same field of
/// `link.json`; a device without `link.json` gets a link with only these faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkOverride {
    /// `--loss-percent`.
    pub loss_percent: Option<u8>,
    /// `--delay-ms`.
    pub delay_ms: Option<u32>,
}

impl LinkOverride {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        self.loss_percent.is_none() && self.delay_ms.is_none()
    }

    /// The link fault of a device: its `link.json` (if any) with these options applied.
    /// None when neither asks for one (the device is reached directly).
    pub fn apply(&self, file: Option<LinkFault>) -> Result<Option<LinkFault>, LinkError> {
        if file.is_none() && self.is_empty() {
            return Ok(None);
        }
        let base = file.unwrap_or(LinkFault {
            loss_percent: 0,
            delay: Duration::ZERO,
            seed: None,
        });
        let delay_ms = match self.delay_ms {
            Some(d) => d,
            // At most MAX_DELAY_MS (validated), so it fits.
            None => u32::try_from(base.delay.as_millis()).unwrap_or(MAX_DELAY_MS),
        };
        LinkFault::new(
            self.loss_percent.unwrap_or(base.loss_percent),
            delay_ms,
            base.seed,
        )
        .map(Some)
    }

    /// The link fault of the device in `dir`: [`LinkFault::load`], then [`Self::apply`].
    pub fn resolve(&self, dir: &Path) -> Result<Option<LinkFault>, LinkError> {
        self.apply(LinkFault::load(dir)?)
    }
}

/// Which way a datagram travels through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a client towards the relayed endpoint.
    Upstream,
    /// From the relayed endpoint back to a client.
    Downstream,
}

/// What the link did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Scheduled for delivery.
    Queued,
    /// Dropped by the simulated loss.
    Lost,
    /// Dropped because the delay queue is full (a router's full buffer).
    Overflow,
}

/// Bounds of the delay queue (over both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Datagrams held at once.
    pub max_datagrams: usize,
    /// Bytes held at once.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    /// 2048 datagrams and 2 MiB: a push to a device at full speed with the largest delay
    /// fits many times over.
    fn default() -> Self {
        QueueLimits {
            max_datagrams: 2048,
            max_bytes: 2 << 20,
        }
    }
}

/// The link model: a drop decision per datagram (one pseudo-random stream per direction, so
/// the drops of one direction do not depend on the traffic of the other) and a FIFO delay
/// queue. Items of type `T` (datagrams with their destination) go in with [`Self::offer`] and
/// come out with [`Self::pop_due`] once their time has come, in the order they went in.
#[derive(Debug)]
pub struct LinkModel<T> {
    loss_percent: u8,
    delay: Duration,
    rng: [u64; 2],
    queue: VecDeque<(Instant, usize, T)>,
    queued_bytes: usize,
    limits: QueueLimits,
}

/// SplitMix64: spreads a seed over the state of the generators below.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<T> LinkModel<T> {
    /// A model of `fault` whose drop pattern follows from `seed`.
    pub fn new(fault: &LinkFault, seed: u64, limits: QueueLimits) -> Self {
        LinkModel {
            loss_percent: fault.loss_percent,
            delay: fault.delay,
            // xorshift state must not be 0.
            rng: [
                splitmix64(seed) | 1,
                splitmix64(seed ^ 0x5851_f42d_4c95_7f2d) | 1,
            ],
            queue: VecDeque::new(),
            queued_bytes: 0,
            limits,
        }
    }

    /// Uniform in 0..100 (xorshift64*; a simulation, not security).
    fn percent(&mut self, dir: Direction) -> u8 {
        let x = &mut self.rng[dir as usize];
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        // The top bits are the good ones; the modulo bias over 2^32 is below 1e-7.
        (((*x).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % 100) as u8
    }

    /// A datagram of `len` bytes arrived at `now`, travelling `dir`.
    pub fn offer(&mut self, dir: Direction, now: Instant, len: usize, item: T) -> Verdict {
        if self.percent(dir) < self.loss_percent {
            return Verdict::Lost;
        }
        if self.queue.len() >= self.limits.max_datagrams
            || self.queued_bytes + len > self.limits.max_bytes
        {
            return Verdict::Overflow;
        }
        // Never before the last one queued, so the queue stays in order even if a caller's
        // clock stepped back.
        let mut due = now + self.delay;
        if let Some((last, _, _)) = self.queue.back() {
            due = due.max(*last);
        }
        self.queue.push_back((due, len, item));
        self.queued_bytes += len;
        Verdict::Queued
    }

    /// When the next datagram is due (None: nothing queued).
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _, _)| *due)
    }

    /// The next datagram if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_due()? > now {
            return None;
        }
        let (_, len, item) = self.queue.pop_front()?;
        self.queued_bytes -= len;
        Some(item)
    }

    /// Datagrams queued.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<LinkFault, LinkError> {
        LinkFault::parse(Path::new("DIR/link.json"), s.as_bytes())
    }

    #[test]
    fn link_file_fields_and_defaults() {
        let f = parse(r#"{"loss_percent": 20, "delay_ms": 300, "seed": 7}"#).unwrap();
        assert_eq!(
            (f.loss_percent(), f.delay(), f.seed()),
            (20, Duration::from_millis(300), Some(7))
        );
        let f = parse(r#"{"delay_ms": 2000}"#).unwrap();
        assert_eq!((f.loss_percent(), f.seed()), (0, None));
        let f = parse(r#"{"loss_percent": 50, "seed": 18446744073709551615}"#).unwrap();
        assert_eq!((f.delay(), f.seed()), (Duration::ZERO, Some(u64::MAX)));
        assert_eq!(parse("{}").unwrap().loss_percent(), 0);
    }

    /// Every refusal names the file and the field at fault.
    #[test]
    fn invalid_link_files_name_the_file_and_the_field() {
        for (text, field) in [
            (
                r#"{"loss_percent": 90}"#,
                "loss_percent: 90 is out of range (0 to 50)",
            ),
            (r#"{"loss_percent": 256}"#, "loss_percent: 256"),
            (
                r#"{"loss_percent": -1}"#,
                "loss_percent: expected an integer",
            ),
            (
                r#"{"loss_percent": 2.5}"#,
                "loss_percent: expected an integer",
            ),
            (
                r#"{"loss_percent": "20"}"#,
                "loss_percent: expected an integer",
            ),
            (
                r#"{"delay_ms": 2001}"#,
                "delay_ms: 2001 is out of range (0 to 2000)",
            ),
            (r#"{"delay_ms": 99999999999}"#, "delay_ms: 99999999999"),
            (r#"{"seed": -3}"#, "seed: expected an unsigned"),
            (r#"{"loss": 20}"#, "unknown field `loss`"),
            (
                r#"{"delay_ms": 1, "delay_ms": 2}"#,
                "duplicate field `delay_ms`",
            ),
            (r#"[20, 300]"#, "expected a JSON object"),
            ("not json", "expected"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("DIR/link.json: "), "{text}: {e}");
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn load_is_bounded_and_absent_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(LinkFault::load(tmp.path()).unwrap(), None);
        std::fs::write(
            tmp.path().join(LINK_FILE),
            format!("{{\"seed\": 1{}}}", " ".repeat(5000)),
        )
        .unwrap();
        let e = LinkFault::load(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("link.json: larger than 4096 bytes"), "{e}");
        std::fs::write(tmp.path().join(LINK_FILE), r#"{"loss_percent": 5}"#).unwrap();
        assert_eq!(
            LinkFault::load(tmp.path()).unwrap().unwrap().loss_percent(),
            5
        );
    }

    #[test]
    fn options_override_the_file_field_by_field() {
        let file = LinkFault::new(20, 300, Some(9)).unwrap();
        let none = LinkOverride::default();
        assert_eq!(none.apply(None).unwrap(), None);
        assert_eq!(none.apply(Some(file)).unwrap(), Some(file));
        let loss = LinkOverride {
            loss_percent: Some(5),
            delay_ms: None,
        };
        assert_eq!(
            loss.apply(Some(file)).unwrap(),
            Some(LinkFault::new(5, 300, Some(9)).unwrap())
        );
        assert_eq!(
            loss.apply(None).unwrap(),
            Some(LinkFault::new(5, 0, None).unwrap())
        );
        let delay = LinkOverride {
            loss_percent: None,
            delay_ms: Some(0),
        };
        assert_eq!(
            delay.apply(Some(file)).unwrap(),
            Some(LinkFault::new(20, 0, Some(9)).unwrap())
        );
        let bad = LinkOverride {
            loss_percent: Some(51),
            delay_ms: None,
        };
        assert!(matches!(
            bad.apply(None),
            Err(LinkError::OutOfRange {
                field: "loss_percent",
                ..
            })
        ));
    }

    /// The delay is applied per datagram from its arrival, in order: ten datagrams that
    /// arrive 1 ms apart are all due within 10 ms after the first one's delay ends, not one
    /// after another's delay.
    #[test]
    fn delay_is_scheduled_per_datagram_and_keeps_order() {
        let f = LinkFault::new(0, 100, None).unwrap();
        let mut m = LinkModel::new(&f, 1, QueueLimits::default());
        let t0 = Instant::now();
        for i in 0..10u64 {
            let dir = if i % 2 == 0 {
                Direction::Upstream
            } else {
                Direction::Downstream
            };
            let at = t0 + Duration::from_millis(i);
            assert_eq!(m.offer(dir, at, 100, i), Verdict::Queued);
        }
        assert_eq!(m.pop_due(t0 + Duration::from_millis(99)), None);
        assert_eq!(m.next_due(), Some(t0 + Duration::from_millis(100)));
        let mut out = Vec::new();
        while let Some(i) = m.pop_due(t0 + Duration::from_millis(109)) {
            out.push(i);
        }
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!((m.queued(), m.queued_bytes), (0, 0));
        // A clock that steps back does not reorder.
        m.offer(Direction::Upstream, t0 + Duration::from_millis(50), 1, 100);
        m.offer(Direction::Upstream, t0, 1, 101);
        assert_eq!(m.pop_due(t0 + Duration::from_millis(150)), Some(100));
        assert_eq!(m.pop_due(t0 + Duration::from_millis(150)), Some(101));
    }

    #[test]
    fn no_delay_is_due_at_once() {
        let f = LinkFault::new(0, 0, None).unwrap();
        let mut m = LinkModel::new(&f, 1, QueueLimits::default());
        let t0 = Instant::now();
        assert_eq!(m.offer(Direction::Upstream, t0, 10, 'a'), Verdict::Queued);
        assert_eq!(m.pop_due(t0), Some('a'));
    }

    /// The loss rate matches the fault in each direction, the pattern is reproducible from
    /// the seed, and the two directions draw from separate streams.
    #[test]
    fn loss_rate_and_seeded_pattern() {
        let f = LinkFault::new(20, 0, Some(42)).unwrap();
        let t0 = Instant::now();
        let pattern = |seed: u64, dir: Direction| {
            let mut m = LinkModel::new(&f, seed, QueueLimits::default());
            (0..10_000)
                .map(|_| {
                    let v = m.offer(dir, t0, 1, ());
                    let _ = m.pop_due(t0);
                    v == Verdict::Lost
                })
                .collect::<Vec<bool>>()
        };
        let up = pattern(42, Direction::Upstream);
        let lost = up.iter().filter(|l| **l).count();
        // 10,000 draws at p = 0.2: the standard deviation is 40, so ±500 is 12 sigma.
        assert!((1500..=2500).contains(&lost), "{lost} of 10000 lost");
        assert_eq!(
            up,
            pattern(42, Direction::Upstream),
            "same seed, same drops"
        );
        assert_ne!(up, pattern(43, Direction::Upstream), "another seed");
        assert_ne!(up, pattern(42, Direction::Downstream), "another stream");
        let none = LinkFault::new(0, 0, None).unwrap();
        let mut m = LinkModel::new(&none, 42, QueueLimits::default());
        assert!((0..1000).all(|_| {
            let v = m.offer(Direction::Downstream, t0, 1, ());
            let _ = m.pop_due(t0);
            v == Verdict::Queued
        }));
    }

    #[test]
    fn queue_is_bounded() {
        let f = LinkFault::new(0, 2000, None).unwrap();
        let limits = QueueLimits {
            max_datagrams: 3,
            max_bytes: 250,
        };
        let mut m = LinkModel::new(&f, 1, limits);
        let t0 = Instant::now();
        assert_eq!(m.offer(Direction::Upstream, t0, 100, 1), Verdict::Queued);
        assert_eq!(m.offer(Direction::Upstream, t0, 100, 2), Verdict::Queued);
        assert_eq!(m.offer(Direction::Upstream, t0, 100, 3), Verdict::Overflow);
        assert_eq!(m.offer(Direction::Upstream, t0, 50, 4), Verdict::Queued);
        assert_eq!(m.offer(Direction::Upstream, t0, 1, 5), Verdict::Overflow);
        assert_eq!(m.pop_due(t0 + Duration::from_secs(2)), Some(1));
        assert_eq!(m.offer(Direction::Upstream, t0, 100, 6), Verdict::Queued);
    }
}
