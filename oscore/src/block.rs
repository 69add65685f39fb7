//! Block1/Block2 option values (RFC 7959 §2.2) and the server-side reassembly of Block1
//! uploads. The client-side loops live in `transport::client` (they only sequence requests).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A Block1/Block2 option value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockValue {
    /// Block number (20 bits at most).
    pub num: u32,
    /// More flag.
    pub more: bool,
    /// Size exponent: size = 2^(szx + 4).
    pub szx: u8,
}

/// RFC 7959 §2.2: NUM is at most 20 bits (3-byte option).
pub const MAX_NUM: u32 = (1 << 20) - 1;

impl BlockValue {
    /// New value.
    pub fn new(num: u32, more: bool, szx: u8) -> Self {
        BlockValue { num, more, szx }
    }

    /// Block size in bytes.
    pub fn size(&self) -> usize {
        1usize << (self.szx + 4)
    }

    /// Byte offset of this block.
    pub fn offset(&self) -> usize {
        self.num as usize * self.size()
    }

    /// RFC 7959 §2.2: decodes 0-3 bytes; SZX 7 is reserved (BERT, not supported here).
    pub fn decode(v: &[u8]) -> Result<Self> {
        if v.len() > 3 {
            return Err(Error::MalformedBlock("longer than 3 bytes"));
        }
        let x = v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        let szx = (x & 0x7) as u8;
        if szx == 7 {
            return Err(Error::MalformedBlock("SZX 7 is reserved"));
        }
        Ok(BlockValue {
            num: x >> 4,
            more: x & 0x8 != 0,
            szx,
        })
    }

    /// Encodes in the fewest bytes.
    pub fn encode(&self) -> Vec<u8> {
        let x =
            (self.num.min(MAX_NUM) << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 7);
        crate::message::uint_bytes(x)
    }
}

/// SZX for a block size (16..=1024, power of two); sizes are rounded down.
pub fn szx_for(size: usize) -> u8 {
    let mut szx = 0u8;
    while szx < 6 && (1usize << (szx + 5)) <= size {
        szx += 1;
    }
    szx
}

/// What the server should answer to one Block1 request.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Block1Outcome {
    /// 2.31 Continue: block stored, send the next one.
    Continue,
    /// The body is complete: hand it to the application.
    Complete(Vec<u8>),
    /// 4.08 Request Entity Incomplete (RFC 7959 §2.9.2): out-of-order block.
    Incomplete,
    /// 4.13 Request Entity Too Large (RFC 7959 §2.9.3), with the limit for Size1.
    TooLarge {
        /// Maximum body size accepted.
        max: usize,
    },
}

/// Bounds of a [`Block1Assembler`].
#[derive(Debug, Clone, Copy)]
pub struct AssemblerLimits {
    /// Largest body of one upload.
    pub max_body: usize,
    /// Most uploads in progress at once.
    pub max_uploads: usize,
    /// Most bytes buffered over all uploads in progress.
    pub max_buffered: usize,
    /// An upload without a new block for this long is dropped.
    pub idle_timeout: Duration,
}

struct Upload {
    body: Vec<u8>,
    last: Instant,
}

/// Reassembles Block1 uploads, keyed by the caller (e.g. peer + path). Bounded in the number
/// of concurrent uploads, in the size of each and in total buffered bytes; idle uploads
/// expire. Sans-I/O: the caller passes the current time.
pub struct Block1Assembler<K> {
    uploads: HashMap<K, Upload>,
    limits: AssemblerLimits,
    buffered: usize,
}

impl<K> std::fmt::Debug for Block1Assembler<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block1Assembler")
            .field("uploads", &self.uploads.len())
            .field("buffered", &self.buffered)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<K: std::hash::Hash + Eq + Clone> Block1Assembler<K> {
    /// New assembler.
    pub fn new(limits: AssemblerLimits) -> Self {
        Block1Assembler {
            uploads: HashMap::new(),
            limits,
            buffered: 0,
        }
    }

    fn remove(&mut self, key: &K) -> Option<Vec<u8>> {
        let u = self.uploads.remove(key)?;
        self.buffered -= u.body.len();
        Some(u.body)
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.limits.idle_timeout;
        let before = self.uploads.len();
        let mut freed = 0;
        self.uploads.retain(|_, u| {
            let keep = now.saturating_duration_since(u.last) < timeout;
            if !keep {
                freed += u.body.len();
            }
            keep
        });
        if self.uploads.len() != before {
            self.buffered -= freed;
        }
    }

    /// Feeds one block received at `now`. `size1` is the announced total size, if any.
    pub fn feed(
        &mut self,
        key: &K,
        block: BlockValue,
        size1: Option<u32>,
        data: &[u8],
        now: Instant,
    ) -> Block1Outcome {
        self.expire(now);
        let max_body = self.limits.max_body;
        // RFC 7959 §4: Size1 lets the server reject a too-large body up front.
        if size1.is_some_and(|s| s as usize > max_body) {
            self.remove(key);
            return Block1Outcome::TooLarge { max: max_body };
        }
        // RFC 7959 §2.3: all blocks but the last carry exactly `size` bytes.
        if block.more && data.len() != block.size() {
            self.remove(key);
            return Block1Outcome::Incomplete;
        }
        if block.num == 0 {
            self.remove(key);
            if self.uploads.len() >= self.limits.max_uploads {
                // Bound on concurrent reassemblies: refuse new ones.
                return Block1Outcome::TooLarge { max: 0 };
            }
            self.uploads.insert(
                key.clone(),
                Upload {
                    body: Vec::new(),
                    last: now,
                },
            );
        }
        let buffered = self.buffered;
        let max_buffered = self.limits.max_buffered;
        let Some(u) = self.uploads.get_mut(key) else {
            return Block1Outcome::Incomplete;
        };
        let off = block.offset();
        if off == u.body.len() {
            if u.body.len() + data.len() > max_body || buffered + data.len() > max_buffered {
                self.remove(key);
                return Block1Outcome::TooLarge { max: max_body };
            }
            u.body.extend_from_slice(data);
            u.last = now;
            self.buffered += data.len();
        } else if off + data.len() == u.body.len() && u.body.get(off..) == Some(data) {
            // RFC 7959 §2.5 / resuming: the same block again (its 2.31 was lost) is harmless.
            u.last = now;
        } else {
            // RFC 7959 §2.9.2: a gap or a changed block.
            return Block1Outcome::Incomplete;
        }
        if block.more {
            Block1Outcome::Continue
        } else {
            Block1Outcome::Complete(self.remove(key).unwrap_or_default())
        }
    }

    /// Number of uploads in progress.
    pub fn in_progress(&self) -> usize {
        self.uploads.len()
    }

    /// Bytes buffered over all uploads in progress.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

#[cfg(test)]
mod tests;
