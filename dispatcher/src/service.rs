//! The dispatcher service: intake (DESIGN.md §2 flow 2), decisions and approvals, rollouts
//! (flow 3), and the device inventory. The HTTP API ([`crate::api`]), the device uplink
//! ([`crate::uplink`]) and the push driver ([`crate::push`]) all call into [`Dispatcher`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use foundations::audit::{AuditEvent, AuditLog};
use suit::{ReleaseKey, SigningKey};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::intake::{self, TrustConfig};
use crate::operators::{Operator, OperatorRole, Operators};
use crate::rollout::{DeviceProgress, Outcome, Plan, Rollout, Status};
use crate::store::{
    Decision, DeviceRecord, DeviceReport, Facts, Part, PartState, ReleaseRecord, RolloutRecord,
    Store,
};
use crate::{Error, Metrics};

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
    trust: RwLock<TrustConfig>,
    policy: RwLock<Arc<policies::Policy>>,
    operators: RwLock<Operators>,
    approver: SigningKey,
    key_repos: Vec<(
        crate::config::KeyRepoConfig,
        key_repo::client::KeyRepoClient,
    )>,
    /// Live rollouts (the store holds the durable copy).
    rollouts: Mutex<HashMap<String, RolloutRecord>>,
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

/// Loads the trust file.
pub fn load_trust(path: &Path) -> Result<TrustConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let t: TrustConfig = toml::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.message().to_string(),
    })?;
    t.store(Utc::now()).map_err(|reason| Error::Config {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(t)
}

fn load_policy(path: &Path) -> Result<policies::Policy, Error> {
    policies::Policy::load(path).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Dispatcher {
    /// Opens the state and loads every file the configuration names.
    pub fn open(cfg: Config, injectable_clock: bool) -> Result<Dispatcher, Error> {
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
        let trust = load_trust(&cfg.trust_file)?;
        let policy = load_policy(&cfg.policy_file)?;
        let operators = Operators::load(&cfg.operators_file)?;
        let pem = read_secret(&cfg.approval_key_file)?;
        let approver = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| Error::Config {
                path: cfg.approval_key_file.display().to_string(),
                reason: e.to_string(),
            })?
            .with_kid(cfg.approval_kid.as_bytes().to_vec());
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
        let mut live = HashMap::new();
        let now = Utc::now();
        for mut r in store.rollouts()? {
            // Crash recovery: sends that were under way when the process stopped are sent
            // again; the push first asks the device what it runs, so none installs twice.
            if r.rollout.progress().in_flight > 0 {
                r.rollout.recover_in_flight(now);
                store.put_rollout(&r)?;
            }
            live.insert(r.rollout.id.clone(), r);
        }
        Ok(Dispatcher {
            cfg,
            store,
            audit,
            trust: RwLock::new(trust),
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

    /// The trust configuration.
    pub fn trust(&self) -> TrustConfig {
        self.trust.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<policies::Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Appends to the audit chain; a failure is logged and counted, never silent.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        result: &str,
        reason: Option<&str>,
    ) {
        let ev = AuditEvent {
            time: foundations::now_unix(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            reason: reason.map(str::to_owned),
            result: result.to_owned(),
            ..AuditEvent::default()
        };
        // Decisions are rare next to device traffic: each record is durable before the
        // caller answers (a crash loses no record of a decision it acknowledged).
        if let Err(e) = self.audit.append(ev).map(|_| ()).and_then(|()| {
            self.store
                .db()
                .flush()
                .map(|_| ())
                .map_err(|e| foundations::Error::Db(e.to_string()))
        }) {
            tracing::error!(error = %e, "audit append failed");
            self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
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

    /// Re-reads the policy file; a broken file is refused and the old policy stays.
    pub fn reload_policy(&self, actor: &str) -> Result<(), Error> {
        match load_policy(&self.cfg.policy_file) {
            Ok(p) => {
                if let Ok(mut cur) = self.policy.write() {
                    *cur = Arc::new(p);
                }
                self.audit(actor, "policy.reload", None, "ok", None);
                Ok(())
            }
            Err(e) => {
                self.audit(
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

    /// Re-reads the trust file (rotation, revocation).
    pub fn reload_trust(&self, actor: &str) -> Result<(), Error> {
        let t = match load_trust(&self.cfg.trust_file) {
            Ok(t) => t,
            Err(e) => {
                self.audit(actor, "trust.reload", None, "refused", Some(&e.to_string()));
                return Err(Error::BadRequest(format!(
                    "{e}; the previous trust store stays in force"
                )));
            }
        };
        if let Ok(mut cur) = self.trust.write() {
            *cur = t;
        }
        // Releases refused under the old trust store are looked at again.
        crate::poll::forget_refusals();
        self.audit(actor, "trust.reload", None, "ok", None);
        Ok(())
    }

    fn key_repo_for(&self, publisher_kid: &str) -> Option<&key_repo::client::KeyRepoClient> {
        self.key_repos
            .iter()
            .find(|(c, _)| {
                c.publishers.is_empty() || c.publishers.iter().any(|p| p == publisher_kid)
            })
            .map(|(_, c)| c)
    }

    /// Fetches the release key from the publisher's key repository (OAuth client
    /// credentials) and checks it names the recipient of the envelope.
    pub async fn fetch_key(
        &self,
        publisher_kid: &str,
        release_kid: &str,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let repo = self
            .key_repo_for(publisher_kid)
            .ok_or_else(|| Error::Refused {
                check: "key-unavailable".into(),
                detail: format!("no key repository configured for publisher {publisher_kid}"),
            })?;
        match repo.get_key(release_kid).await {
            Ok(k) => Ok(Zeroizing::new(k.cose_key)),
            Err(e) => {
                let check = match e.status() {
                    Some(410) => "key-revoked",
                    Some(404) => "key-unknown",
                    Some(401 | 403) => "key-access-denied",
                    _ => "key-unavailable",
                };
                Err(Error::Refused {
                    check: check.into(),
                    detail: format!("release key {release_kid}: {e}"),
                })
            }
        }
    }

    /// Intake of one release: verify against the trust store, check the blob against the
    /// signed ciphertext digest, obtain the release key (from the key repository, or given
    /// by an internal publisher), decrypt and check the plaintext digest, store, and apply
    /// the policy. Nothing is stored unless every check passes.
    pub async fn intake(
        &self,
        envelope: &[u8],
        blob: &[u8],
        key: Option<Zeroizing<Vec<u8>>>,
        source: &str,
        actor: &str,
    ) -> Result<IntakeResult, Error> {
        let now = self.clock.now();
        let accepted = self.accept_or_refuse(envelope, actor, now)?;
        let rid = accepted.verified.release_id();
        let _guard = self.intake_lock.lock().await;
        if let Some(existing) = self.store.release(&rid)? {
            return Ok(IntakeResult {
                release_id: rid,
                result: "unchanged",
                release: existing,
            });
        }
        let result = self
            .check_and_store(&accepted, envelope, blob, key, source, now)
            .await;
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                self.refused(actor, Some(&rid), &e);
                return Err(e);
            }
        };
        self.metrics
            .releases_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.audit(actor, "release.accept", Some(&rid), "ok", Some(source));
        let record = self.decide(record, now)?;
        Ok(IntakeResult {
            release_id: rid,
            result: "created",
            release: record,
        })
    }

    /// Verifies an envelope before its blob is downloaded (a forged or untrusted release
    /// costs the dispatcher one envelope, not a blob); refusals are audited as at intake.
    pub fn precheck(&self, envelope: &[u8], actor: &str) -> Result<(), Error> {
        self.accept_or_refuse(envelope, actor, self.clock.now())
            .map(|_| ())
    }

    /// `intake::accept` against the trust store in force; a refusal is counted and audited,
    /// naming the release when its manifest can be found.
    fn accept_or_refuse(
        &self,
        envelope: &[u8],
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<intake::Accepted, Error> {
        intake::accept(envelope, &self.trust(), now).map_err(|e| {
            let err = Error::refused(e);
            let rid = suit::Envelope::decode(envelope, &suit::Limits::default())
                .ok()
                .map(|env| env.release_id());
            self.refused(actor, rid.as_deref(), &err);
            err
        })
    }

    fn refused(&self, actor: &str, rid: Option<&str>, e: &Error) {
        let check = match e {
            Error::Refused { check, .. } => check.as_str(),
            _ => "internal",
        };
        self.metrics.refused(check);
        tracing::warn!(release = rid.unwrap_or("?"), check, error = %e, "release refused at intake");
        self.audit(
            actor,
            "release.refuse",
            rid,
            &format!("refused:{check}"),
            Some(&e.to_string()),
        );
    }

    async fn check_and_store(
        &self,
        accepted: &intake::Accepted,
        envelope: &[u8],
        blob: &[u8],
        key: Option<Zeroizing<Vec<u8>>>,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<ReleaseRecord, Error> {
        let v = &accepted.verified;
        let rid = v.release_id();
        let refuse = Error::refused;
        // The blob must be the ciphertext the publisher signed (component #1), before any
        // key is asked for.
        suit::release::check_ciphertext(v, blob).map_err(refuse)?;
        let info = suit::release::encryption_info(v).map_err(refuse)?;
        let release_kid = info
            .recipients
            .first()
            .and_then(|r| r.kid.as_ref())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .ok_or_else(|| Error::Refused {
                check: "encryption-info".into(),
                detail: "no recipient".into(),
            })?;
        let key = match key {
            Some(k) => {
                if accepted.facts.publisher_role != suit::Role::Internal
                    || accepted.facts.update_type != suit::UpdateType::T1
                {
                    return Err(Error::Refused {
                        check: "direct-upload-not-allowed".into(),
                        detail: "direct uploads are for internal publishers' T1 releases".into(),
                    });
                }
                k
            }
            None => {
                self.fetch_key(&accepted.publisher_kid, &release_kid)
                    .await?
            }
        };
        let rk = ReleaseKey::from_cose_key(&key).map_err(refuse)?;
        // Decrypt and check the plaintext digest (the dispatcher inspects what it sends).
        let image = suit::release::decrypt_payload(v, blob, &rk).map_err(refuse)?;
        let dir = self.store.release_dir(&rid);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let w = |name: &str, data: &[u8], mode: u32| {
            foundations::fs::write_file_atomic(&dir.join(name), data, mode)
        };
        w("envelope.suit", envelope, 0o644)?;
        w("blob.enc", blob, 0o644)?;
        w("key.cbor", &key, 0o600)?;
        let m = &v.envelope().manifest;
        let record = ReleaseRecord {
            id: rid.clone(),
            received_at: now,
            source: source.to_owned(),
            publisher_kid: accepted.publisher_kid.clone(),
            release_kid,
            vendor_id: accepted.facts.vendor,
            class_id: accepted.facts.class,
            sequence: m.sequence_number,
            version: m
                .set_version
                .as_ref()
                .map(|sv| suit::manifest::format_version(&sv.version)),
            facts: Facts::from_policy(&accepted.facts),
            image_size: image.len() as u64,
            envelope_size: envelope.len() as u64,
            blob_size: blob.len() as u64,
            parts: Vec::new(),
        };
        Ok(record)
    }

    /// Devices a release applies to: same vendor and class, not already at or past its
    /// sequence number.
    fn targets(&self, r: &ReleaseRecord) -> Result<Vec<DeviceRecord>, Error> {
        Ok(self
            .store
            .devices()?
            .into_iter()
            .filter(|d| r.vendor_id.is_none_or(|v| v == d.vendor_id))
            .filter(|d| r.class_id.is_none_or(|c| c == d.class_id))
            .filter(|d| d.sequence < r.sequence)
            .collect())
    }

    /// Applies the policy: the target devices are split by the rule that decides for their
    /// group; `install` parts start their rollout at once (in their window), `hold` parts
    /// wait in the approval queue.
    fn decide(&self, mut r: ReleaseRecord, now: DateTime<Utc>) -> Result<ReleaseRecord, Error> {
        let policy = self.policy();
        let facts = r.facts.to_policy(r.vendor_id, r.class_id);
        let mut parts: Vec<Part> = Vec::new();
        for d in self.targets(&r)? {
            let dec = policy.decide(&facts, d.group.as_deref());
            if let Some(p) = parts.iter_mut().find(|p| p.rule == dec.rule) {
                p.devices.push(d.id.clone());
                continue;
            }
            let state = match dec.action {
                policies::Action::Hold | policies::Action::Install => PartState::Pending,
                policies::Action::Notify => PartState::Notified,
                policies::Action::Log => PartState::Logged,
                policies::Action::Reject => PartState::Rejected {
                    decision: Decision {
                        by: format!("policy:{}", dec.rule),
                        reason: "rejected by policy".into(),
                        at: now,
                    },
                },
            };
            parts.push(Part {
                rule: dec.rule.clone(),
                action: dec.action,
                devices: vec![d.id.clone()],
                window: dec.window.as_ref().map(|w| w.name.clone()),
                rollout: dec.rollout.as_ref().map(|w| w.name.clone()),
                state,
            });
        }
        r.parts = parts;
        self.store.put_release(&r)?;
        for i in 0..r.parts.len() {
            let p = &r.parts[i];
            let actor = format!("policy:{}", p.rule);
            match p.action {
                policies::Action::Install => {
                    r = self.start_part(
                        &r.id,
                        i,
                        &actor,
                        &DecisionRequest {
                            reason: "installs automatically by policy".into(),
                            ..DecisionRequest::default()
                        },
                    )?;
                }
                policies::Action::Hold => {
                    self.audit(&actor, "release.hold", Some(&r.id), "pending", None);
                }
                policies::Action::Notify => {
                    tracing::warn!(release = %r.id, rule = %p.rule, "NOTICE: release for operators' attention");
                    self.audit(&actor, "release.notify", Some(&r.id), "ok", None);
                }
                policies::Action::Log => self.audit(&actor, "release.log", Some(&r.id), "ok", None),
                policies::Action::Reject => {
                    self.audit(&actor, "release.reject", Some(&r.id), "rejected", None);
                }
            }
        }
        Ok(r)
    }

    /// Operator approval of every pending part of a release (or schedule with `at`).
    pub async fn approve(
        &self,
        rid: &str,
        who: &Operator,
        req: &DecisionRequest,
    ) -> Result<ReleaseRecord, Error> {
        if req.reason.trim().is_empty() {
            return Err(Error::BadRequest("a reason is required".into()));
        }
        let r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let retrying = !r.pending() && req.retry_rejected;
        if !r.pending() && !retrying {
            return Err(Error::Conflict(format!(
                "release {rid} has nothing waiting for approval (to send it again to devices \
                 that rejected it, approve with retry_rejected)"
            )));
        }
        // The key may have been revoked since intake: ask again before sending anything.
        if !r.source.starts_with("upload:")
            && let Err(e) = self.fetch_key(&r.publisher_kid, &r.release_kid).await
        {
            self.audit(
                &who.name,
                "release.approve",
                Some(rid),
                "refused",
                Some(&e.to_string()),
            );
            return Err(Error::Conflict(format!("cannot approve: {e}")));
        }
        let mut r = r;
        let mut started = false;
        for i in 0..r.parts.len() {
            let p = &r.parts[i];
            let wanted = if retrying {
                matches!(p.state, PartState::Approved { .. })
                    && p.devices
                        .iter()
                        .any(|d| self.refused_by(d, rid).unwrap_or(false))
            } else {
                p.state == PartState::Pending
            };
            if wanted {
                r = self.start_part(rid, i, &who.name, req)?;
                started = true;
            }
        }
        if retrying && !started {
            return Err(Error::Conflict(format!(
                "no device rejected release {rid}: nothing to send again"
            )));
        }
        Ok(r)
    }

    /// Operator rejection of every pending part.
    pub fn reject(&self, rid: &str, who: &Operator, reason: &str) -> Result<ReleaseRecord, Error> {
        if reason.trim().is_empty() {
            return Err(Error::BadRequest("a reason is required".into()));
        }
        let mut r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        if !r.pending() {
            return Err(Error::Conflict(format!(
                "release {rid} has nothing waiting for a decision"
            )));
        }
        let now = self.clock.now();
        for p in &mut r.parts {
            if p.state == PartState::Pending {
                p.state = PartState::Rejected {
                    decision: Decision {
                        by: who.name.clone(),
                        reason: reason.to_owned(),
                        at: now,
                    },
                };
            }
        }
        self.store.put_release(&r)?;
        self.audit(
            &who.name,
            "release.reject",
            Some(rid),
            "rejected",
            Some(reason),
        );
        Ok(r)
    }

    /// Starts the rollout of one part (the approval is durable before this returns).
    fn start_part(
        &self,
        rid: &str,
        i: usize,
        actor: &str,
        req: &DecisionRequest,
    ) -> Result<ReleaseRecord, Error> {
        let now = self.clock.now();
        let mut r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let policy = self.policy();
        let part = r
            .parts
            .get(i)
            .cloned()
            .ok_or_else(|| Error::NotFound("part".into()))?;
        let rollout_name = req.rollout.clone().or(part.rollout.clone());
        let rollout_def = match &rollout_name {
            Some(n) => Some(
                policy
                    .rollouts
                    .iter()
                    .find(|x| &x.name == n)
                    .cloned()
                    .ok_or_else(|| Error::BadRequest(format!("no rollout {n:?} in the policy")))?,
            ),
            None => None,
        };
        // Devices that refused this release (a security or applicability check) are left
        // out; a re-approval with `retry_rejected` sends to exactly those devices.
        let retry = matches!(part.state, PartState::Approved { .. });
        let mut devices = Vec::new();
        for d in &part.devices {
            let refused = self.refused_by(d, rid)?;
            if refused == retry {
                devices.push(d.clone());
            }
        }
        let plan = match &rollout_def {
            Some(def) => Plan::from_policy(def, devices.len()),
            None => Plan::all_at_once(devices.len()),
        };
        let window = if req.ignore_window {
            None
        } else {
            part.window.clone()
        };
        let mut start = req.at.unwrap_or(now);
        if let Some(w) = window
            .as_ref()
            .and_then(|n| policy.windows.iter().find(|x| &x.name == n))
            && !w.is_open(start)
        {
            start = w.next_open(start).unwrap_or(start);
        }
        self.sign_approval(rid)?;
        let id = format!("r{}", self.store.next_counter("rollout")?);
        let decision = Decision {
            by: actor.to_owned(),
            reason: req.reason.clone(),
            at: now,
        };
        let rec = RolloutRecord {
            rollout: Rollout::new(&id, rid, devices, plan, start, now),
            window,
            decision: decision.clone(),
            alert: None,
        };
        self.store.put_rollout(&rec)?;
        r.parts[i].state = PartState::Approved {
            decision,
            rollout: id.clone(),
        };
        self.store.put_release(&r)?;
        let action = if start > now {
            "release.schedule"
        } else {
            "release.approve"
        };
        self.audit(
            actor,
            action,
            Some(rid),
            &format!("rollout:{id}"),
            Some(&req.reason),
        );
        self.rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .insert(id, rec);
        self.wake.notify_one();
        Ok(r)
    }

    /// Whether `device`'s last report rejected release `rid`.
    fn refused_by(&self, device: &str, rid: &str) -> Result<bool, Error> {
        Ok(self
            .store
            .device(device)?
            .and_then(|d| d.last_report)
            .is_some_and(|rep| rep.outcome == "rejected" && rep.release_id.as_deref() == Some(rid)))
    }

    /// The shared files of a release (loaded from disk once).
    pub fn artifacts(&self, rid: &str) -> Result<Arc<Artifacts>, Error> {
        if let Some(a) = self
            .artifacts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .get(rid)
        {
            return Ok(a.clone());
        }
        let r = self
            .store
            .release(rid)?
            .ok_or_else(|| Error::NotFound(format!("release {rid}")))?;
        let dir = self.store.release_dir(rid);
        let read = |n: &str| std::fs::read(dir.join(n)).map_err(|e| Error::io(dir.join(n), e));
        let a = Arc::new(Artifacts {
            approved: Arc::new(read("approved.suit")?),
            key: Arc::new(read("key.cbor")?),
            blob: Arc::new(read("blob.enc")?),
            sequence: r.sequence,
        });
        self.artifacts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .insert(rid.to_owned(), a.clone());
        Ok(a)
    }

    /// Snapshot of the live rollouts.
    pub fn rollouts(&self) -> Vec<RolloutRecord> {
        let mut v: Vec<RolloutRecord> = self
            .rollouts
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|r| {
            r.rollout
                .id
                .trim_start_matches('r')
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        v
    }

    /// One rollout.
    pub fn rollout(&self, id: &str) -> Result<RolloutRecord, Error> {
        self.rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("rollout {id}")))
    }

    /// Applies `f` to a rollout and persists the result before returning.
    pub fn update_rollout<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut RolloutRecord) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut map = self
            .rollouts
            .lock()
            .map_err(|_| Error::Other("lock".into()))?;
        let rec = map
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("rollout {id}")))?;
        let mut copy = rec.clone();
        let out = f(&mut copy)?;
        if copy != *rec {
            self.store.put_rollout(&copy)?;
            *rec = copy;
        }
        Ok(out)
    }

    /// Pause, resume or abort, by an operator.
    pub fn control(
        &self,
        id: &str,
        who: &Operator,
        what: &str,
        reason: &str,
    ) -> Result<RolloutRecord, Error> {
        if reason.trim().is_empty() {
            return Err(Error::BadRequest("a reason is required".into()));
        }
        let now = self.clock.now();
        let rec = self.update_rollout(id, |r| {
            let res = match what {
                "pause" => r.rollout.pause(),
                "resume" => {
                    r.alert = None;
                    r.rollout.resume(now)
                }
                "abort" => r.rollout.abort(reason),
                _ => return Err(Error::BadRequest(format!("unknown action {what}"))),
            };
            res.map_err(Error::Conflict)?;
            Ok(r.clone())
        })?;
        self.audit(
            &who.name,
            &format!("rollout.{what}"),
            Some(id),
            "ok",
            Some(reason),
        );
        self.wake.notify_one();
        Ok(rec)
    }

    /// Records the outcome of one device in a rollout (from a push reply or an uplink
    /// report), raising an alert when the rollout halts.
    pub fn record_outcome(
        &self,
        rollout: &str,
        device: &str,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let halted = self.update_rollout(rollout, |r| {
            let was_halted = matches!(r.rollout.status, Status::Halted { .. });
            r.rollout.record(device, outcome.clone(), now);
            if let Status::Halted { reason } = &r.rollout.status
                && !was_halted
            {
                r.alert = Some(reason.clone());
                return Ok(Some(reason.clone()));
            }
            Ok(None)
        })?;
        match &outcome {
            Outcome::Installed => self.metrics.installs_ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Rejected { .. } => self
                .metrics
                .installs_rejected
                .fetch_add(1, Ordering::Relaxed),
            Outcome::Failed { .. } => self.metrics.installs_failed.fetch_add(1, Ordering::Relaxed),
            Outcome::Transient { .. } => self
                .metrics
                .installs_transient
                .fetch_add(1, Ordering::Relaxed),
        };
        if let Some(reason) = halted {
            tracing::error!(rollout, %reason, "ALERT: rollout halted at its failure threshold");
            self.metrics.alerts.fetch_add(1, Ordering::Relaxed);
            self.audit(
                "dispatcher",
                "rollout.halt",
                Some(rollout),
                "halted",
                Some(&reason),
            );
        }
        Ok(())
    }

    /// Stores a device's install report and updates its inventory.
    pub fn device_report(&self, device: &str, rep: &DeviceReport) -> Result<(), Error> {
        // The time is the dispatcher's, whatever the device sent (the console's install
        // timeline is drawn from it).
        let rep = &DeviceReport {
            received_at: Some(self.clock.now()),
            ..rep.clone()
        };
        self.store.add_report(device, rep)?;
        let sequence = match (&rep.release_id, rep.outcome.as_str()) {
            (Some(rid), "installed") => self.artifacts(rid).ok().map(|a| a.sequence),
            _ => None,
        };
        self.store.update_device(device, |d| {
            if rep.outcome == "installed" {
                if let Some(seq) = sequence {
                    if seq >= d.sequence {
                        d.version = rep.version_after.clone();
                        d.release_id = rep.release_id.clone();
                    }
                    d.sequence = d.sequence.max(seq);
                } else {
                    d.version = rep.version_after.clone();
                }
            }
            d.last_report = Some(rep.clone());
        })?;
        Ok(())
    }

    /// The rollout in which `device` waits for `rid`, if any.
    pub fn rollout_for(&self, device: &str, rid: &str) -> Option<String> {
        self.rollouts.lock().ok().and_then(|m| {
            m.values()
                .find(|r| {
                    r.rollout.release_id == rid
                        && !matches!(r.rollout.status, Status::Aborted { .. })
                        && r.rollout.devices.contains_key(device)
                })
                .map(|r| r.rollout.id.clone())
        })
    }

    /// Devices to update now across all rollouts (marked in flight), with their rollout.
    pub fn due(&self, limit: usize) -> Vec<(String, String, String)> {
        let now = self.clock.now();
        let policy = self.policy();
        let mut out = Vec::new();
        let Ok(mut map) = self.rollouts.lock() else {
            return out;
        };
        for rec in map.values_mut() {
            if out.len() >= limit {
                break;
            }
            if !window_open(&policy, rec.window.as_deref(), now) {
                continue;
            }
            let before = rec.clone();
            let devs = rec.rollout.due(now, limit - out.len());
            if *rec != before
                && let Err(e) = self.store.put_rollout(rec)
            {
                tracing::error!(error = %e, "cannot persist rollout; not sending");
                *rec = before;
                continue;
            }
            for d in devs {
                out.push((rec.rollout.id.clone(), rec.rollout.release_id.clone(), d));
            }
        }
        out
    }

    /// Devices in flight over all rollouts.
    pub fn in_flight(&self) -> usize {
        self.rollouts
            .lock()
            .map(|m| m.values().map(|r| r.rollout.progress().in_flight).sum())
            .unwrap_or(0)
    }

    /// The approval signature (DESIGN.md §2 flow 3): made when a person or the policy
    /// approves, never at intake, so no approved envelope exists for a held or rejected
    /// release. The stored envelope is verified again against the trust store in force (a
    /// publisher key revoked since intake stops the approval).
    fn sign_approval(&self, rid: &str) -> Result<(), Error> {
        let dir = self.store.release_dir(rid);
        if dir.join("approved.suit").exists() {
            return Ok(());
        }
        let envelope = std::fs::read(dir.join("envelope.suit"))
            .map_err(|e| Error::io(dir.join("envelope.suit"), e))?;
        let accepted = intake::accept(&envelope, &self.trust(), self.clock.now()).map_err(|e| {
            Error::Conflict(format!(
                "cannot approve: the envelope no longer verifies ({}): {e}",
                e.code()
            ))
        })?;
        let approved = suit::approve(&accepted.verified, &self.approver);
        foundations::fs::write_file_atomic(&dir.join("approved.suit"), &approved, 0o644)?;
        Ok(())
    }

    /// Enrols a device: assigns its uplink id, writes the dispatcher's side of both OSCORE
    /// contexts, records it, and returns the provisioning bundle (which holds secrets).
    pub fn enrol(
        &self,
        who: &Operator,
        req: &crate::enrol::EnrolRequest,
    ) -> Result<device_sim::bundle::Bundle, Error> {
        let out = crate::enrol::enrol(self, req)?;
        self.audit(&who.name, "device.enrol", Some(&req.name), "ok", None);
        self.metrics
            .devices_enrolled
            .fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// The dispatcher's side of a device's uplink context (loaded once per process: two
    /// live contexts from one set of parameters would reuse nonces).
    pub fn uplink_context(&self, d: &DeviceRecord) -> Result<oscore::SecurityContext, Error> {
        let path = self.store.device_dir(&d.id).join("uplink.json");
        oscore::ctxfile::load(&path).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
    }

    /// Sets the running uplink server's context set (once, at start).
    pub fn set_uplink(&self, set: oscore::transport::ContextSet) {
        let _ = self.uplink.set(set);
    }

    /// Adds a newly enrolled device to the running uplink server.
    pub fn register_uplink(&self, d: &DeviceRecord) -> Result<(), Error> {
        if let Some(set) = self.uplink.get() {
            let ctx = self.uplink_context(d)?;
            set.add(ctx).map_err(|e| Error::Other(e.to_string()))?;
        }
        Ok(())
    }

    /// Keys the approval signature is made with and the devices need.
    pub fn approver_entry(&self) -> device_sim::KeyEntry {
        device_sim::KeyEntry {
            kid: self.cfg.approval_kid.clone(),
            pem: self.approver.public_key().to_pem(),
        }
    }

    /// Marks a rollout device's progress for inspection (test helper for the API).
    pub fn device_progress(&self, rollout: &str, device: &str) -> Option<DeviceProgress> {
        self.rollouts.lock().ok().and_then(|m| {
            m.get(rollout)
                .and_then(|r| r.rollout.devices.get(device).cloned())
        })
    }
}
