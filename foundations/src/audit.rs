//! Append-only, hash-chained audit log, shared by the key repository and the dispatcher
//! (each keeps it in a `audit` tree of its own sled database, under its own MAC key).
//!
//! Each record is stored under its big-endian sequence number as `mac ‖ body`, where `body`
//! is the JSON of [`AuditEvent`] plus `seq` and `prev` (the previous record's MAC) and
//! `mac = HMAC-SHA256(audit_key, body)`. The audit key is derived from the master key, so
//! someone who can edit the database but lacks the master key cannot re-forge the chain.
//! [`verify`] recomputes every MAC over the stored bytes and checks that sequence numbers
//! are contiguous from 0 and that each `prev` names its predecessor: any edit, insertion or
//! deletion before the head is detected. Truncation of the tail is detected by comparing
//! with a head previously recorded by an auditor (`GET /v1/audit` returns it).
//!
//! Two ways to record: [`AuditLog::record`] queues the event for the background writer
//! (chained within milliseconds, on disk at the database's next flush), and
//! [`AuditLog::record_durable`] returns only once the record is flushed to disk, so a
//! service can refuse to act (fail closed) when it cannot be. Concurrent durable records
//! share one flush (group commit). [`RefusalAggregator`] bounds the records of refusals that
//! no authenticated caller answers for, so anonymous traffic cannot flood the log.

mod refusals;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};

pub use refusals::{OVERFLOW_SOURCE, RefusalAggregator, RefusalLimits, SUMMARY_ACTION, source_of};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;

/// What happened, by whom. `result` is the outcome (the key repository writes `ok`,
/// `created`, `unchanged`, `conflict`, `not_found`, `gone` or `denied:<reason>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: u64,
    /// Client id (`anonymous` when no valid token was presented).
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// What was done: `key.read`, `token.issue`, `release.approve`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// What the action was on, when not a key (the dispatcher: a release, rollout, device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why (operator decisions carry their reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub result: String,
    /// How many occurrences this one record stands for, when more than one (a summary of
    /// refusals, see [`RefusalAggregator`]); absent for a single occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    seq: u64,
    prev: String,
    #[serde(flatten)]
    event: AuditEvent,
}

/// One record as returned by `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub prev: String,
    pub mac: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub next_seq: u64,
    pub last_mac: [u8; 32],
}

/// A record prepared for insertion (possibly inside a transaction).
#[derive(Debug)]
pub struct Prepared {
    pub key: [u8; 8],
    pub value: Vec<u8>,
    pub head: Head,
}

/// Events waiting for the background writer; beyond this, the recording request writes
/// the pending batch itself (back-pressure instead of loss).
const PENDING_MAX: usize = 4096;
/// How often the background writer moves pending events into the tree.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Told the record's sequence number once it is on disk, or why it may not be.
type Durable = oneshot::Sender<Result<u64, String>>;

/// An event waiting to be chained.
#[derive(Debug)]
struct Queued {
    event: AuditEvent,
    /// Set by [`AuditLog::record_durable`].
    durable: Option<Durable>,
}

#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    mac_key: Zeroizing<[u8; 32]>,
    head: Mutex<Head>,
    /// Events recorded but not yet chained (see [`AuditLog::record`]).
    pending: Mutex<Vec<Queued>>,
    /// Chained records whose callers wait for the next flush (group commit).
    unflushed: Mutex<Vec<(u64, Durable)>>,
    /// Wakes the writer when a durable record is waiting.
    wake: Arc<Notify>,
    writer: AtomicBool,
    /// Set when a write or flush failed: what is on disk is no longer known, so no record is
    /// promised durable again until the service restarts (fail closed).
    failed: AtomicBool,
    /// Tests: the next flushes fail.
    #[cfg(test)]
    fail_flush: AtomicBool,
}

fn mac(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Decodes one stored record and checks its MAC.
fn decode(key: &[u8; 32], value: &[u8]) -> Result<(Body, [u8; 32]), String> {
    if value.len() < 32 {
        return Err("record too short".into());
    }
    let (stored_mac, body) = value.split_at(32);
    let want = mac(key, body);
    if !crate::ct_eq(stored_mac, &want) {
        return Err("MAC mismatch (record edited or foreign key)".into());
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    Ok((b, want))
}

impl AuditLog {
    pub fn open(db: &sled::Db, mac_key: Zeroizing<[u8; 32]>) -> Result<Self, Error> {
        let tree = db.open_tree("audit")?;
        let head = match tree.last()? {
            None => Head {
                next_seq: 0,
                last_mac: [0; 32],
            },
            Some((_, v)) => {
                let (b, m) = decode(&mac_key, &v).map_err(Error::Corrupt)?;
                Head {
                    next_seq: b.seq + 1,
                    last_mac: m,
                }
            }
        };
        Ok(AuditLog {
            tree,
            mac_key,
            head: Mutex::new(head),
            pending: Mutex::new(Vec::new()),
            unflushed: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            writer: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            #[cfg(test)]
            fail_flush: AtomicBool::new(false),
        })
    }

    /// Starts the background writer (inside a tokio runtime). Afterwards
    /// [`AuditLog::record`] only queues the event (a push under a mutex) and the writer
    /// chains queued events into the tree every few milliseconds, as one sled batch, in
    /// arrival order; a durable record wakes it at once, and it flushes the database once for
    /// every durable record chained since its last flush. Without the writer, `record`
    /// appends at once and `record_durable` appends and flushes.
    pub fn start_writer(self: &Arc<Self>) {
        if self.writer.swap(true, Ordering::SeqCst) {
            return;
        }
        let log = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WRITE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = wake.notified() => {}
                }
                let Some(log) = log.upgrade() else { return };
                if let Err(e) = log.drain() {
                    tracing::error!(error = %e, "audit writer failed; queued records lost");
                }
                log.flush_unflushed().await;
            }
        });
    }

    /// Chains every queued event into the tree (one batch).
    pub fn drain(&self) -> Result<(), Error> {
        let mut head = self.lock()?;
        self.drain_locked(&mut head)
    }

    /// As [`AuditLog::drain`], with the head lock already held (writers of transactional
    /// records call this first so sequence numbers follow arrival order).
    pub fn drain_locked(&self, head: &mut Head) -> Result<(), Error> {
        let queued = {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| Error::Db("audit queue poisoned".into()))?;
            if p.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut *p)
        };
        let mut batch = sled::Batch::default();
        let mut h = *head;
        let mut durable = Vec::new();
        // A failure below drops the senders: their callers learn the record is not durable.
        for q in queued {
            let p = self.prepare(&h, q.event)?;
            batch.insert(&p.key, p.value);
            if let Some(tx) = q.durable {
                durable.push((h.next_seq, tx));
            }
            h = p.head;
        }
        if let Err(e) = self.tree.apply_batch(batch) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        *head = h;
        if !durable.is_empty() {
            self.unflushed
                .lock()
                .map_err(|_| Error::Db("audit queue poisoned".into()))?
                .extend(durable);
            // Whoever drained (the writer, a transactional write, an audit read), the writer
            // makes these durable and answers their callers.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Flushes the database once for every durable record chained so far and tells their
    /// callers (group commit: one flush for all of them).
    async fn flush_unflushed(&self) {
        let waiting = match self.unflushed.lock() {
            Ok(mut u) => std::mem::take(&mut *u),
            // Dropping the senders tells their callers the records are not durable.
            Err(_) => return,
        };
        if waiting.is_empty() {
            return;
        }
        // Every record in `waiting` was in the tree before this flush started.
        let r = self.flush_tree().await.map_err(|e| e.to_string());
        for (seq, tx) in waiting {
            let _ = tx.send(r.clone().map(|()| seq));
        }
    }

    async fn flush_tree(&self) -> Result<(), Error> {
        #[cfg(test)]
        if self.fail_flush.load(Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(Error::Db("injected flush failure".into()));
        }
        if let Err(e) = self.tree.flush_async().await {
            self.failed.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

    /// Records an event: queued for the background writer if it runs, else appended now.
    pub fn record(&self, event: AuditEvent) -> Result<(), Error> {
        if !self.writer.load(Ordering::Relaxed) {
            return self.append(event).map(|_| ());
        }
        let full = {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| Error::Db("audit queue poisoned".into()))?;
            p.push(Queued {
                event,
                durable: None,
            });
            p.len() >= PENDING_MAX
        };
        if full { self.drain() } else { Ok(()) }
    }

    /// Records an event and returns its sequence number once it is on disk: chained into
    /// the tree and the database flushed. Concurrent callers share one flush. On an error
    /// the record may be lost: the caller must not do what it records (fail closed). After
    /// a failed write or flush every later call fails too, until the service restarts.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<u64, Error> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Db(
                "an earlier audit write failed; records cannot be made durable".into(),
            ));
        }
        if !self.writer.load(Ordering::Relaxed) {
            let seq = self.append(event)?;
            self.flush_tree().await?;
            return Ok(seq);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| Error::Db("audit queue poisoned".into()))?
            .push(Queued {
                event,
                durable: Some(tx),
            });
        self.wake.notify_one();
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(Error::Db(format!("audit record not durable: {e}"))),
            Err(_) => Err(Error::Db(
                "audit record dropped before it was durable".into(),
            )),
        }
    }

    /// Chains every event recorded so far, flushes, and answers waiting durable records
    /// (at shutdown).
    pub async fn sync(&self) {
        if let Err(e) = self.drain() {
            tracing::error!(error = %e, "audit drain failed");
        }
        self.flush_unflushed().await;
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Locks the head; hold the guard across [`AuditLog::prepare`] and the write.
    pub fn lock(&self) -> Result<std::sync::MutexGuard<'_, Head>, Error> {
        self.head
            .lock()
            .map_err(|_| Error::Db("audit lock poisoned".into()))
    }

    pub fn prepare(&self, head: &Head, event: AuditEvent) -> Result<Prepared, Error> {
        let body = Body {
            seq: head.next_seq,
            prev: hex::encode(head.last_mac),
            event,
        };
        let body = serde_json::to_vec(&body).map_err(|e| Error::Corrupt(e.to_string()))?;
        let m = mac(&self.mac_key, &body);
        let mut value = Vec::with_capacity(32 + body.len());
        value.extend_from_slice(&m);
        value.extend_from_slice(&body);
        Ok(Prepared {
            key: head.next_seq.to_be_bytes(),
            value,
            head: Head {
                next_seq: head.next_seq + 1,
                last_mac: m,
            },
        })
    }

    /// Appends one event (not flushed: sled flushes within `flush_every_ms`).
    pub fn append(&self, event: AuditEvent) -> Result<u64, Error> {
        let mut head = self.lock()?;
        self.drain_locked(&mut head)?;
        let p = self.prepare(&head, event)?;
        self.tree.insert(p.key, p.value)?;
        let seq = head.next_seq;
        *head = p.head;
        Ok(seq)
    }

    pub fn head(&self) -> Result<Head, Error> {
        Ok(*self.lock()?)
    }

    /// Verifies the chain as this process wrote it, while writers go on: every record
    /// before the head at the time of the call is checked (records appended meanwhile are
    /// left for the next call), and their number must reach that head, so that records
    /// deleted at the end are detected too (which [`verify`] alone cannot tell).
    pub fn verify(&self) -> Result<VerifyReport, ChainError> {
        let head = self.head().map_err(|e| ChainError::Db(e.to_string()))?;
        let end = head.next_seq;
        let report = verify_records(self.tree.range(..end.to_be_bytes()), &self.mac_key)?;
        if report.records != end {
            return Err(ChainError::Truncated {
                head: end,
                found: report.records,
            });
        }
        Ok(report)
    }

    /// Records with `seq >= from`, at most `limit`.
    pub fn page(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>, Error> {
        let mut out = Vec::new();
        for item in self.tree.range(from.to_be_bytes()..).take(limit) {
            let (_, v) = item?;
            let (b, m) = decode(&self.mac_key, &v).map_err(Error::Corrupt)?;
            out.push(AuditRecord {
                seq: b.seq,
                prev: b.prev,
                mac: hex::encode(m),
                event: b.event,
            });
        }
        Ok(out)
    }
}

/// Result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub head_mac: String,
}

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("record {seq}: {reason}")]
    BadRecord { seq: u64, reason: String },
    #[error("record {expected} is missing (found {found} next): deleted or reordered")]
    Gap { expected: u64, found: u64 },
    #[error("record {seq} does not link to its predecessor")]
    BrokenLink { seq: u64 },
    #[error("database: {0}")]
    Db(String),
    /// Fewer records than the running log has written: records at the end were deleted.
    #[error(
        "the log holds {found} records but {head} were written: records at the end are missing"
    )]
    Truncated { head: u64, found: u64 },
}

/// Walks the whole chain (see the module documentation).
pub fn verify(tree: &sled::Tree, mac_key: &[u8; 32]) -> Result<VerifyReport, ChainError> {
    verify_records(tree.iter(), mac_key)
}

/// Checks records in key order from sequence number 0.
fn verify_records(
    records: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    mac_key: &[u8; 32],
) -> Result<VerifyReport, ChainError> {
    let mut expected = 0u64;
    let mut prev = [0u8; 32];
    for item in records {
        let (k, v) = item.map_err(|e| ChainError::Db(e.to_string()))?;
        let key_seq = <[u8; 8]>::try_from(k.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| ChainError::BadRecord {
                seq: expected,
                reason: "malformed key".into(),
            })?;
        if key_seq != expected {
            return Err(ChainError::Gap {
                expected,
                found: key_seq,
            });
        }
        let (b, m) = decode(mac_key, &v).map_err(|reason| ChainError::BadRecord {
            seq: key_seq,
            reason,
        })?;
        if b.seq != key_seq {
            return Err(ChainError::BadRecord {
                seq: key_seq,
                reason: "sequence number differs from its position".into(),
            });
        }
        if b.prev != hex::encode(prev) {
            return Err(ChainError::BrokenLink { seq: key_seq });
        }
        prev = m;
        expected += 1;
    }
    Ok(VerifyReport {
        records: expected,
        head_mac: hex::encode(prev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> AuditEvent {
        AuditEvent {
            time: 1000 + i,
            actor: format!("c{i}"),
            action: "key.read".into(),
            kid: Some(format!("k{i}")),
            result: "ok".into(),
            ..Default::default()
        }
    }

    fn setup() -> (sled::Db, AuditLog, [u8; 32]) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let key = [9u8; 32];
        let log = AuditLog::open(&db, Zeroizing::new(key)).unwrap();
        for i in 0..5 {
            log.append(ev(i)).unwrap();
        }
        (db, log, key)
    }

    #[test]
    fn intact_chain_verifies_and_reopens() {
        let (db, log, key) = setup();
        let r = verify(log.tree(), &key).unwrap();
        assert_eq!(r.records, 5);
        assert_eq!(r.head_mac, hex::encode(log.head().unwrap().last_mac));
        drop(log);
        let log = AuditLog::open(&db, Zeroizing::new(key)).unwrap();
        assert_eq!(log.append(ev(5)).unwrap(), 5);
        assert_eq!(verify(log.tree(), &key).unwrap().records, 6);
        assert_eq!(log.page(4, 10).unwrap().len(), 2);
    }

    #[test]
    fn edited_record_is_detected() {
        let (_db, log, key) = setup();
        let k = 2u64.to_be_bytes();
        let v = log.tree().get(k).unwrap().unwrap().to_vec();
        let text = String::from_utf8_lossy(&v[32..]).replace("\"c2\"", "\"c9\"");
        let mut forged = v[..32].to_vec();
        forged.extend_from_slice(text.as_bytes());
        log.tree().insert(k, forged).unwrap();
        let e = verify(log.tree(), &key).unwrap_err();
        assert!(matches!(e, ChainError::BadRecord { seq: 2, .. }), "{e}");
    }

    #[test]
    fn deleted_record_is_detected() {
        let (_db, log, key) = setup();
        log.tree().remove(1u64.to_be_bytes()).unwrap();
        let e = verify(log.tree(), &key).unwrap_err();
        assert_eq!(
            e,
            ChainError::Gap {
                expected: 1,
                found: 2
            }
        );
    }

    #[test]
    fn deleted_and_renumbered_record_is_detected() {
        // Delete record 1 and move the later ones down: MACs cover seq, so this fails too.
        let (_db, log, key) = setup();
        let t = log.tree();
        for i in 1..4u64 {
            let next = t.get((i + 1).to_be_bytes()).unwrap().unwrap();
            t.insert(i.to_be_bytes(), next).unwrap();
        }
        t.remove(4u64.to_be_bytes()).unwrap();
        assert!(verify(t, &key).is_err());
    }

    #[test]
    fn live_verify_checks_up_to_the_head_and_sees_a_cut_tail() {
        let (_db, log, _key) = setup();
        assert_eq!(log.verify().unwrap().records, 5);
        log.append(ev(5)).unwrap();
        assert_eq!(log.verify().unwrap().records, 6);
        // Deleting the newest record leaves a chain that verifies on its own, but not
        // against the head the running log knows.
        log.tree().remove(5u64.to_be_bytes()).unwrap();
        assert_eq!(
            log.verify().unwrap_err(),
            ChainError::Truncated { head: 6, found: 5 }
        );
        log.tree().remove(2u64.to_be_bytes()).unwrap();
        assert!(matches!(
            log.verify().unwrap_err(),
            ChainError::Gap { expected: 2, .. }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_records_are_chained_and_share_flushes() {
        let (_db, log, key) = setup();
        let log = Arc::new(log);
        log.start_writer();
        log.record(ev(100)).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.record_durable(ev(200 + i)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap());
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 64, "one sequence number each");
        // Each durable record is in the tree when its caller is answered.
        for s in &seqs {
            assert!(log.tree().get(s.to_be_bytes()).unwrap().is_some());
        }
        assert_eq!(verify(log.tree(), &key).unwrap().records, 5 + 1 + 64);
        // A record chained by another drain (a transactional writer) is answered too.
        let pending = {
            let log = log.clone();
            tokio::spawn(async move { log.record_durable(ev(300)).await })
        };
        log.drain().unwrap();
        assert!(pending.await.unwrap().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_flush_fails_closed() {
        let (_db, log, _key) = setup();
        let log = Arc::new(log);
        log.start_writer();
        assert!(log.record_durable(ev(10)).await.is_ok());
        log.fail_flush.store(true, Ordering::SeqCst);
        let e = log.record_durable(ev(11)).await.unwrap_err();
        assert!(e.to_string().contains("not durable"), "{e}");
        // Once a flush failed, nothing is promised durable again (until a restart).
        log.fail_flush.store(false, Ordering::SeqCst);
        assert!(log.record_durable(ev(12)).await.is_err());
        // Without the writer: the same.
        let (_db, log, _key) = setup();
        log.fail_flush.store(true, Ordering::SeqCst);
        assert!(log.record_durable(ev(13)).await.is_err());
    }

    #[test]
    fn foreign_key_is_detected() {
        let (_db, log, _key) = setup();
        assert!(verify(log.tree(), &[1u8; 32]).is_err());
    }
}
