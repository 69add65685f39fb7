//! The dispatcher service: intake (DESIGN.md §2 flow 2), decisions and approvals, rollouts
//! (flow 3), and the device inventory. The HTTP API ([`crate::api`]), the device uplink
//! ([`crate::uplink`]) and the push driver ([`crate::push`]) all call into [`Dispatcher`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use foundations::audit::{AuditEvent, AuditLog};
use suit::{ReleaseKey, SigningKey};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::intake::{self, Trust};
use crate::operators::{Operator, OperatorRole, Operators};
use crate::rollout::{DeviceProgress, Outcome, Plan, Rollout, Status};
use crate::store::{
    Decision, DeviceRecord, DeviceReport, Facts, Part, PartState, ReleaseRecord, RolloutRecord,
    Store,
};
use crate::{Error, Metrics};

mod decisions;
mod files;
mod inventory;
mod receive;
mod rollouts;
use rollouts::rollout_number;

/// The files of an accepted release, shared by every push and pull (Block2 slices them
/// without copying).
#[derive(Debug)]
pub struct Artifacts {
    /// The envelope with the dispatcher's approval signature.
    pub approved: Arc<Vec<u8>>,
    /// The release key (COSE_Key).
    pub key: Arc<Vec<u8>>,
    /// The encrypted blob.
    pub blob: Arc<Vec<u8>>,
    /// Sequence number.
    pub sequence: u64,
}

/// The clock: real time, or (for tests of maintenance windows, `serve --injectable-clock`)
/// real time shifted by an offset set through the API, so time keeps flowing from the
/// injected instant (batch pauses and retry back-offs still elapse).
#[derive(Debug, Default)]
pub struct Clock {
    offset: RwLock<Option<chrono::Duration>>,
    injectable: bool,
}

impl Clock {
    /// Real time, optionally settable.
    pub fn new(injectable: bool) -> Clock {
        Clock {
            offset: RwLock::new(None),
            injectable,
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let real = Utc::now();
        match self.offset.read().ok().and_then(|o| *o) {
            Some(off) => real + off,
            None => real,
        }
    }

    /// Whether the clock may be set (`serve --injectable-clock`).
    pub fn injectable(&self) -> bool {
        self.injectable
    }

    /// Moves the clock to `t` (None: back to real time); only when injectable.
    pub fn set(&self, t: Option<DateTime<Utc>>) -> Result<(), Error> {
        if !self.injectable {
            return Err(Error::Forbidden(
                "the clock is not injectable (start with serve --injectable-clock)".into(),
            ));
        }
        if let Ok(mut o) = self.offset.write() {
            *o = t.map(|t| t - Utc::now());
        }
        Ok(())
    }
}

/// An operator's request to approve, reject or schedule.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why (required: it goes into the audit log).
    pub reason: String,
    /// Start not before this time (schedule).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Ignore the rule's maintenance window.
    #[serde(default)]
    pub ignore_window: bool,
    /// Use this rollout (a name from the policy) instead of the rule's.
    #[serde(default)]
    pub rollout: Option<String>,
    /// After the operator has looked at why: send the release again to exactly the devices
    /// that rejected it (their rejection is otherwise final).
    #[serde(default)]
    pub retry_rejected: bool,
}

/// What `intake` did with a release.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntakeResult {
    /// Release id.
    pub release_id: String,
    /// `created` or `unchanged`.
    pub result: &'static str,
    /// The record.
    pub release: ReleaseRecord,
}

/// The dispatcher.
pub struct Dispatcher {
    cfg: Config,
    store: Store,
    audit: Arc<AuditLog>,
    trust: RwLock<Arc<Trust>>,
    /// Bumped at every trust reload: cached acceptances of older generations are redone.
    trust_generation: AtomicU64,
    /// When each release's approved envelope was last accepted: (trust generation, time).
    accepted_at: Mutex<HashMap<String, (u64, DateTime<Utc>)>>,
    /// Serialises every decision on one release (approve, reject, policy, rollout start).
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// (source, release id) listings refused at intake, not fetched from that source again
    /// until a restart or a trust reload.
    refused_releases: Mutex<std::collections::HashSet<(String, String)>>,
    policy: RwLock<Arc<policies::Policy>>,
    operators: RwLock<Operators>,
    approver: SigningKey,
    key_repos: Vec<(
        crate::config::KeyRepoConfig,
        key_repo::client::KeyRepoClient,
    )>,
    /// Live rollouts by number (`rN`: in the order they were made); the store holds the
    /// durable copy.
    rollouts: Mutex<BTreeMap<u64, RolloutRecord>>,
    artifacts: Mutex<HashMap<String, Arc<Artifacts>>>,
    /// Serialises intake of one release id.
    intake_lock: tokio::sync::Mutex<()>,
    /// The clock.
    pub clock: Clock,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Wakes the push driver.
    pub wake: tokio::sync::Notify,
    started: AtomicU64,
    uplink: std::sync::OnceLock<oscore::transport::ContextSet>,
    /// The lock on `DATA/devices` under which every device's OSCORE contexts are opened
    /// (`oscore::lock`): no other process can use them while this dispatcher runs.
    contexts_lock: Arc<oscore::lock::ContextLock>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

fn read_secret(path: &Path) -> Result<Zeroizing<String>, Error> {
    let s = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
    Ok(Zeroizing::new(s.trim().to_owned()))
}

/// Whether a rollout's maintenance window is open at `now` (no window: always). A window
/// the policy no longer defines counts as closed, so a policy edit never silently lifts it
/// (the operator can approve again with `ignore_window`).
pub fn window_open(policy: &policies::Policy, window: Option<&str>, now: DateTime<Utc>) -> bool {
    match window {
        None => true,
        Some(n) => match policy.windows.iter().find(|x| x.name == n) {
            Some(w) => w.is_open(now),
            None => {
                tracing::warn!(
                    window = n,
                    "rollout names a window the policy no longer defines; held"
                );
                false
            }
        },
    }
}

/// How long an acceptance of an approved envelope stands before the next push batch
/// accepts it again (key validity moves with the clock; a trust reload redoes it at once).
const REACCEPT_AFTER_SECS: i64 = 30;

fn load_policy(path: &Path) -> Result<policies::Policy, Error> {
    policies::Policy::load(path).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Dispatcher {
    /// Opens the state and loads every file the configuration names.
    pub fn open(cfg: Config, injectable_clock: bool) -> Result<Dispatcher, Error> {
        // First: a second dispatcher on the same data directory is refused here, before it
        // touches anything (two users of one OSCORE context would reuse nonces).
        let devices = cfg.data_dir.join("devices");
        std::fs::create_dir_all(&devices).map_err(|e| Error::io(&devices, e))?;
        let contexts_lock =
            oscore::lock::ContextLock::tree(&devices).map_err(|e| Error::Config {
                path: devices.display().to_string(),
                reason: e.to_string(),
            })?;
        let store = Store::open(&cfg.data_dir)?;
        let mac_hex = read_secret(&cfg.audit_key_file)?;
        let mac: [u8; 32] = hex::decode(mac_hex.as_str())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::Config {
                path: cfg.audit_key_file.display().to_string(),
                reason: "must hold 32 bytes as hex".into(),
            })?;
        let audit = Arc::new(AuditLog::open(store.db(), Zeroizing::new(mac))?);
        let policy = load_policy(&cfg.policy_file)?;
        let operators = Operators::load(&cfg.operators_file)?;
        let pem = read_secret(&cfg.approval_key_file)?;
        let approver = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| Error::Config {
                path: cfg.approval_key_file.display().to_string(),
                reason: e.to_string(),
            })?
            .with_kid(cfg.approval_kid.as_bytes().to_vec());
        let trust = intake::load_trust(&cfg.trust_file, &approver.public_key())?;
        let mut key_repos = Vec::new();
        for k in &cfg.key_repos {
            let ca = match &k.ca_file {
                Some(p) => Some(std::fs::read(p).map_err(|e| Error::io(p, e))?),
                None => None,
            };
            let secret = read_secret(&k.client_secret_file)?;
            let client = key_repo::client::KeyRepoClient::new(key_repo::client::ClientConfig {
                base_url: k.url.clone(),
                client_id: k.client_id.clone(),
                client_secret: secret.to_string(),
                ca_pem: ca,
                scopes: vec![],
            })
            .map_err(|e| Error::Config {
                path: "key_repo".into(),
                reason: e.to_string(),
            })?;
            key_repos.push((k.clone(), client));
        }
        let mut live = BTreeMap::new();
        let now = Utc::now();
        for mut r in store.rollouts()? {
            // Crash recovery: sends that were under way when the process stopped are sent
            // again; the push first asks the device what it runs, so none installs twice.
            if r.rollout.progress().in_flight > 0 {
                r.rollout.recover_in_flight(now);
                store.save_rollout(&mut r)?;
            }
            live.insert(rollout_number(&r.rollout.id), r);
        }
        Ok(Dispatcher {
            cfg,
            store,
            audit,
            trust: RwLock::new(Arc::new(trust)),
            trust_generation: AtomicU64::new(0),
            accepted_at: Mutex::new(HashMap::new()),
            release_locks: Mutex::new(HashMap::new()),
            refused_releases: Mutex::new(std::collections::HashSet::new()),
            policy: RwLock::new(Arc::new(policy)),
            operators: RwLock::new(operators),
            approver,
            key_repos,
            rollouts: Mutex::new(live),
            artifacts: Mutex::new(HashMap::new()),
            intake_lock: tokio::sync::Mutex::new(()),
            clock: Clock::new(injectable_clock),
            metrics: Metrics::default(),
            wake: tokio::sync::Notify::new(),
            started: AtomicU64::new(foundations::now_unix()),
            contexts_lock,
            uplink: std::sync::OnceLock::new(),
        })
    }

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit log.
    pub fn audit_log(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Start time (unix seconds).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// The approval public key (for provisioning bundles).
    pub fn approval_key(&self) -> suit::PublicKey {
        self.approver.public_key()
    }

    /// The trust in force.
    pub fn trust(&self) -> Arc<Trust> {
        self.trust.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// The lock that serialises decisions on release `rid`.
    fn release_lock(&self, rid: &str) -> Result<Arc<tokio::sync::Mutex<()>>, Error> {
        let mut m = self
            .release_locks
            .lock()
            .map_err(|_| Error::Other("lock".into()))?;
        Ok(m.entry(rid.to_owned()).or_default().clone())
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<policies::Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Refuses at once when an audit record could not be written now: the file system of
    /// the data directory has less free space than `limits.audit_min_free_mib` (a full
    /// disk would make the append or its flush fail). Operations that must be audited call
    /// this before any work, so that a refusal leaves nothing half done; the append itself
    /// ([`Dispatcher::audit`]) checks again.
    pub fn audit_ready(&self) -> Result<(), Error> {
        let min = self.cfg.limits.audit_min_free_mib;
        if min == 0 {
            return Ok(());
        }
        let dir = &self.cfg.data_dir;
        let free = fs2::available_space(dir)
            .map_err(|e| self.audit_failed(&format!("free space of {}: {e}", dir.display())))?;
        if free < min.saturating_mul(1 << 20) {
            return Err(self.audit_failed(&format!(
                "{} has {} MiB free, below the audit reserve of {min} MiB \
                 (limits.audit_min_free_mib)",
                dir.display(),
                free >> 20
            )));
        }
        Ok(())
    }

    /// How every operator decision starts: a reason is given, and the audit log can take
    /// the record ([`Dispatcher::audit_ready`]).
    pub(super) fn decision_ready(&self, reason: &str) -> Result<(), Error> {
        if reason.trim().is_empty() {
            return Err(Error::BadRequest("a reason is required".into()));
        }
        self.audit_ready()
    }

    fn audit_failed(&self, detail: &str) -> Error {
        tracing::error!(
            detail,
            "ALERT: cannot write the audit log; audited operations are refused"
        );
        self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
        Error::CannotAudit(detail.to_owned())
    }

    /// Appends to the audit chain and makes the record durable (flushed) before returning:
    /// the record of an operation is written **before** the operation takes effect, and an
    /// operation whose record cannot be written is not performed (fail closed): the error
    /// is [`Error::CannotAudit`] (500 `cannot-audit`), counted in
    /// `dispatcher_audit_failures_total` and logged. Callers check everything that can
    /// refuse the operation first, then call this, then act; a failure while acting is
    /// recorded by a second record (result `failed`).
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        result: &str,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        self.audit_ready()?;
        let ev = AuditEvent {
            time: foundations::now_unix(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            reason: reason.map(str::to_owned),
            result: result.to_owned(),
            ..AuditEvent::default()
        };
        self.audit
            .append(ev)
            .map(|_| ())
            .and_then(|()| {
                self.store
                    .db()
                    .flush()
                    .map(|_| ())
                    .map_err(|e| foundations::Error::Db(e.to_string()))
            })
            .map_err(|e| self.audit_failed(&format!("audit append: {e}")))
    }

    /// Records what happens whatever the audit log says: refusals (nothing changes), and
    /// the dispatcher's own stops (a rollout halted at its failure threshold, or aborted
    /// because its release is no longer acceptable) — refusing to stop because the stop
    /// cannot be recorded would fail open. A failure is logged and counted, never silent.
    pub fn audit_anyway(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        result: &str,
        reason: Option<&str>,
    ) {
        if let Err(e) = self.audit(actor, action, target, result, reason) {
            tracing::error!(error = %e, action, "audit record of a refusal or stop not written");
        }
    }

    /// Authenticates a bearer token and checks its role.
    pub fn authorize(&self, token: Option<&str>, need: OperatorRole) -> Result<Operator, Error> {
        let token = token.ok_or(Error::Unauthenticated("send Authorization: Bearer <token>"))?;
        let ops = self
            .operators
            .read()
            .map_err(|_| Error::Other("operators lock".into()))?;
        let op = ops
            .authenticate(token)
            .ok_or(Error::Unauthenticated("unknown token"))?
            .clone();
        if op.role < need {
            return Err(Error::Forbidden(format!(
                "{} has role {}, this needs {}",
                op.name,
                op.role.as_str(),
                need.as_str()
            )));
        }
        Ok(op)
    }

    /// Re-reads the policy file; a broken file is refused and the old policy stays. The new
    /// policy applies only once its reload is audited.
    pub fn reload_policy(&self, actor: &str) -> Result<(), Error> {
        self.audit_ready()?;
        match load_policy(&self.cfg.policy_file) {
            Ok(p) => {
                self.audit(actor, "policy.reload", None, "ok", None)?;
                if let Ok(mut cur) = self.policy.write() {
                    *cur = Arc::new(p);
                }
                Ok(())
            }
            Err(e) => {
                self.audit_anyway(
                    actor,
                    "policy.reload",
                    None,
                    "refused",
                    Some(&e.to_string()),
                );
                Err(Error::BadRequest(format!(
                    "{e}; the previous policy stays in force"
                )))
            }
        }
    }

    /// Re-reads the trust file (rotation, revocation). The new trust store applies only once
    /// its reload is audited.
    pub fn reload_trust(&self, actor: &str) -> Result<(), Error> {
        self.audit_ready()?;
        let t = match intake::load_trust(&self.cfg.trust_file, &self.approver.public_key()) {
            Ok(t) => t,
            Err(e) => {
                self.audit_anyway(actor, "trust.reload", None, "refused", Some(&e.to_string()));
                return Err(Error::BadRequest(format!(
                    "{e}; the previous trust store stays in force"
                )));
            }
        };
        self.audit(actor, "trust.reload", None, "ok", None)?;
        if let Ok(mut cur) = self.trust.write() {
            *cur = Arc::new(t);
        }
        // Every approved release is accepted again before its next push batch.
        self.trust_generation.fetch_add(1, Ordering::SeqCst);
        // Releases refused under the old trust store are looked at again.
        self.forget_refusals();
        Ok(())
    }
}
