//! The security contexts of a running server, shared with it (a dispatcher enrols devices
//! while its server runs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::context::SecurityContext;
use crate::error::{Error, Result};

/// One context of a [`ContextSet`], with its ID Context copied out so that selecting a
/// context (RFC 8613 §8.2 step 2) needs no lock on the context itself.
struct Entry {
    id_context: Option<Vec<u8>>,
    ctx: Arc<Mutex<SecurityContext>>,
}

type ContextMap = HashMap<Vec<u8>, Vec<Entry>>;

/// The security contexts of a running server, shared with it: contexts added or removed
/// through any clone take effect for the next request. Cloning is cheap (one `Arc`).
///
/// Contexts are keyed by Recipient ID (the peer's kid); several may share a kid and differ in
/// ID Context. The request path takes a read lock only long enough to clone one `Arc`.
///
/// Never add two contexts derived from the same parameters (even to different sets or
/// clients) while both are alive: they would encrypt with the same keys and sequence numbers,
/// i.e. reuse nonces. Move one context between users instead (see
/// `transport::Client::into_context`).
#[derive(Clone, Default)]
pub struct ContextSet {
    inner: Arc<RwLock<ContextMap>>,
}

impl std::fmt::Debug for ContextSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextSet")
            .field("contexts", &self.len())
            .finish()
    }
}

impl ContextSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding `contexts`. Fails like [`ContextSet::add`] on a duplicate.
    pub fn from_contexts(contexts: Vec<SecurityContext>) -> Result<Self> {
        let set = Self::new();
        for c in contexts {
            set.add(c)?;
        }
        Ok(set)
    }

    /// Adds a context; requests with its Recipient ID as kid are accepted from now on.
    /// A context with the same Recipient ID and ID Context already present is an error
    /// ([`Error::DuplicateContext`]): remove the old one first (a silent replacement would
    /// hide two peers given the same id).
    pub fn add(&self, ctx: SecurityContext) -> Result<()> {
        let mut map = self
            .inner
            .write()
            .map_err(|_| Error::Io(std::io::Error::other("context set lock poisoned")))?;
        let entries = map.entry(ctx.recipient_id().to_vec()).or_default();
        if entries
            .iter()
            .any(|e| e.id_context.as_deref() == ctx.id_context())
        {
            return Err(Error::DuplicateContext {
                kid_hex: hex::encode(ctx.recipient_id()),
            });
        }
        entries.push(Entry {
            id_context: ctx.id_context().map(<[u8]>::to_vec),
            ctx: Arc::new(Mutex::new(ctx)),
        });
        Ok(())
    }

    /// Removes every context whose Recipient ID is `recipient_id` (whatever its ID Context)
    /// and returns how many there were. Requests with that kid get 4.01 from now on. Each
    /// removed context's sender sequence number is flushed (a failure is logged: the store
    /// already holds a limit above every number used, so no nonce can be reused).
    pub fn remove(&self, recipient_id: &[u8]) -> usize {
        let removed = match self.inner.write() {
            Ok(mut map) => map.remove(recipient_id).unwrap_or_default(),
            Err(_) => return 0,
        };
        for e in &removed {
            if let Ok(mut c) = e.ctx.lock()
                && let Err(err) = c.flush()
            {
                tracing::warn!(kid = %hex::encode(recipient_id), "flush of a removed context: {err}");
            }
        }
        removed.len()
    }

    /// Whether a context with this Recipient ID is present.
    pub fn contains(&self, recipient_id: &[u8]) -> bool {
        self.inner
            .read()
            .is_ok_and(|m| m.get(recipient_id).is_some_and(|v| !v.is_empty()))
    }

    /// Number of contexts.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Persists every context's sender sequence number (graceful shutdown). Tries all and
    /// returns the first error.
    pub fn flush_all(&self) -> Result<()> {
        let all: Vec<Arc<Mutex<SecurityContext>>> = match self.inner.read() {
            Ok(m) => m.values().flatten().map(|e| e.ctx.clone()).collect(),
            Err(_) => return Ok(()),
        };
        let mut first = Ok(());
        for c in all {
            if let Ok(mut c) = c.lock()
                && let Err(e) = c.flush()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// RFC 8613 §8.2 step 2: the context for `kid`. With a kid context in the message it
    /// must match; without, prefer a context without ID Context (§5.1), else the first.
    pub(crate) fn select(
        &self,
        kid: &[u8],
        kid_context: Option<&[u8]>,
    ) -> Option<Arc<Mutex<SecurityContext>>> {
        let map = self.inner.read().ok()?;
        let candidates = map.get(kid)?;
        let found = match kid_context {
            Some(kc) => candidates
                .iter()
                .find(|e| e.id_context.as_deref() == Some(kc)),
            None => candidates
                .iter()
                .find(|e| e.id_context.is_none())
                .or(candidates.first()),
        };
        found.map(|e| e.ctx.clone())
    }
}
