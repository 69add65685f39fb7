//! Enrolment (`dispatcher devices add`): a device gets two OSCORE contexts with fresh master
//! secrets, one per direction, so the device as server (pushes) and as client (check-ins,
//! pulls, reports) never share a sender sequence space (RFC 8613 §3.3 forbids nonce reuse;
//! two contexts from one set of parameters in one process would reuse nonces). The
//! dispatcher keeps its side under `DATA/devices/ID/` (0600); the device's side goes into
//! the provisioning bundle, which is returned once.

use std::net::SocketAddr;

use chrono::Utc;
use fleet_proto::bundle::{Bundle, FORMAT, Identity, OscoreParams, SecretHex, Trust};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;
use crate::service::Dispatcher;
use crate::store::DeviceRecord;

/// Dispatcher's sender id in both contexts (each context has its own master secret).
pub const DISPATCHER_SID: [u8; 1] = [0x00];
/// The device's sender id in the push context.
pub const DEVICE_PUSH_SID: [u8; 1] = [0x01];

/// What an operator gives to enrol a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// Unique name: 1-64 of A-Z a-z 0-9 - _ ., not starting with a dot
    /// (`fleet_proto::valid_device_name`; the device's directory is named after it).
    pub name: String,
    /// Vendor-id.
    pub vendor_id: Uuid,
    /// Class-id.
    pub class_id: Uuid,
    /// Device-id (random when absent).
    #[serde(default)]
    pub device_id: Option<Uuid>,
    /// Group for policies.
    #[serde(default)]
    pub group: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The device's CoAP address, if fixed (else learnt from check-ins).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Factory version (`fleet_proto::text::valid_version`).
    #[serde(default = "default_version")]
    pub factory_version: String,
    /// Require the approval signature (default true; false only for bench devices).
    #[serde(default = "yes")]
    pub require_approval: bool,
}

fn default_version() -> String {
    "1.0.0".into()
}

fn yes() -> bool {
    true
}

/// Groups and labels (not names of files: the device-name rule without its dot rule).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn context(secret: &[u8], salt: &[u8], sender: &[u8], recipient: &[u8]) -> OscoreParams {
    OscoreParams {
        master_secret_hex: SecretHex::from_bytes(secret),
        master_salt_hex: Some(hex::encode(salt)),
        sender_id_hex: hex::encode(sender),
        recipient_id_hex: hex::encode(recipient),
        id_context_hex: None,
    }
}

/// Writes the dispatcher's side of a context with its persistent sequence state (RFC 8613
/// Appendix B.1.1: written at enrolment, so a crash at any later time never restarts the
/// context at sequence number 0 or with a replay window it cannot vouch for).
fn write_ctx(
    path: &std::path::Path,
    secret: &[u8],
    salt: &[u8],
    sender: &[u8],
    recipient: &[u8],
) -> Result<(), Error> {
    let params = oscore::ContextParams {
        master_secret: zeroize::Zeroizing::new(secret.to_vec()),
        master_salt: salt.to_vec(),
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    };
    oscore::ctxfile::create(path, &params)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// Checks an enrolment request before anything is allocated or written.
fn validate(d: &Dispatcher, req: &EnrolRequest) -> Result<(), Error> {
    // Issue 13: "." and ".." were accepted and their context files landed in the data
    // directory itself. The rule is the one devices apply to their bundle.
    if !fleet_proto::valid_device_name(&req.name) {
        return Err(Error::BadRequest(format!(
            "device name: must be {}",
            fleet_proto::Rule::DeviceName
        )));
    }
    if let Some(g) = &req.group
        && !valid_name(g)
    {
        return Err(Error::BadRequest(format!(
            "group {g:?}: same rules as names"
        )));
    }
    if req.labels.len() > 32 || req.labels.iter().any(|l| !valid_name(l)) {
        return Err(Error::BadRequest(
            "at most 32 labels, each like a name".into(),
        ));
    }
    if !fleet_proto::text::valid_version(&req.factory_version) {
        return Err(Error::BadRequest(format!(
            "factory_version: must be {}",
            fleet_proto::Rule::Version
        )));
    }
    if d.store().device(&req.name)?.is_some() {
        return Err(Error::Conflict(format!("device {} is enrolled", req.name)));
    }
    Ok(())
}

/// The device's trust store, in the one format: the publisher and author keys of its vendor
/// in force now or later (with their scope, update types and `valid_until` as the dispatcher
/// has them), and this dispatcher's approval key. `valid_from` is left out: a device whose
/// clock lags (no battery-backed RTC, a long power-off) would otherwise refuse every release
/// of a newly valid key; the dispatcher judges `valid_from` with its own clock at intake and
/// at every approval, and nothing reaches a device without its approval.
fn device_trust(d: &Dispatcher, req: &EnrolRequest) -> Result<Trust, Error> {
    let trust = d.trust();
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let mut keys: Vec<suit::trust::KeyEntry> = trust
        .entries_for(
            &[
                suit::Role::Manufacturer,
                suit::Role::ThirdParty,
                suit::Role::Internal,
                suit::Role::Author,
            ],
            req.vendor_id,
            now,
        )
        .into_iter()
        .map(|k| suit::trust::KeyEntry {
            valid_from: None,
            ..k.clone()
        })
        .collect();
    if !keys
        .iter()
        .any(|k| k.role().is_ok_and(|r| r == suit::Role::Manufacturer))
    {
        return Err(Error::BadRequest(format!(
            "the trust store has no manufacturer key for vendor {}; add it before enrolling",
            req.vendor_id
        )));
    }
    keys.push(d.approver_entry());
    Ok(Trust::new(&suit::TrustFile { keys }, req.require_approval)
        .requiring_author(d.cfg().require_author_signature))
}

/// Fresh secrets and salts of the push and uplink contexts.
struct Secrets {
    push: zeroize::Zeroizing<[u8; 32]>,
    push_salt: [u8; 8],
    up: zeroize::Zeroizing<[u8; 32]>,
    up_salt: [u8; 8],
}

impl Secrets {
    fn new() -> Result<Secrets, Error> {
        Ok(Secrets {
            push: zeroize::Zeroizing::new(foundations::random_bytes::<32>()?),
            push_salt: foundations::random_bytes::<8>()?,
            up: zeroize::Zeroizing::new(foundations::random_bytes::<32>()?),
            up_salt: foundations::random_bytes::<8>()?,
        })
    }
}

/// Writes the dispatcher's views of both contexts (mode 0700 directory): it is the client
/// of the push context and the server of the uplink context.
fn write_contexts(dir: &std::path::Path, k: &Secrets, uplink_sid: &[u8]) -> Result<(), Error> {
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
    }
    write_ctx(
        &dir.join("push.json"),
        &*k.push,
        &k.push_salt,
        &DISPATCHER_SID,
        &DEVICE_PUSH_SID,
    )?;
    write_ctx(
        &dir.join("uplink.json"),
        &*k.up,
        &k.up_salt,
        &DISPATCHER_SID,
        uplink_sid,
    )
}

/// Creates the device (see the module documentation), for operator `who`. The enrolment is
/// audited after every check and before anything is written: one that cannot be audited
/// leaves no context file and no record.
pub(crate) fn enrol(d: &Dispatcher, who: &str, req: &EnrolRequest) -> Result<Bundle, Error> {
    validate(d, req)?;
    let trust = device_trust(d, req)?;
    let n = d.store().next_counter("uplink-kid")?;
    // 4-byte uplink sender ids: unique per dispatcher, up to 2^32 enrolments.
    let uplink_sid = u32::try_from(n)
        .map_err(|_| Error::Other("uplink ids exhausted".into()))?
        .to_be_bytes();
    let k = Secrets::new()?;
    let device_id = req.device_id.unwrap_or_else(Uuid::new_v4);
    let bundle = Bundle {
        format: FORMAT.into(),
        identity: Identity {
            name: req.name.clone(),
            vendor_id: req.vendor_id,
            class_id: req.class_id,
            device_id,
        },
        trust,
        oscore: context(&*k.push, &k.push_salt, &DEVICE_PUSH_SID, &DISPATCHER_SID),
        uplink: Some(context(&*k.up, &k.up_salt, &uplink_sid, &DISPATCHER_SID)),
        dispatcher: d.cfg().coap_uri.clone(),
        factory_version: req.factory_version.clone(),
    };
    // What the device will decode, checked with its decoder before anything is written
    // (e.g. a key id or coap_uri the device would refuse).
    bundle
        .validate()
        .map_err(|e| Error::Other(format!("the provisioning bundle would be refused: {e}")))?;
    d.audit(who, "device.enrol", Some(&req.name), "ok", None)?;
    let dir = d.store().device_dir(&req.name);
    write_contexts(&dir, &k, &uplink_sid)
        .and_then(|()| store_device(d, req, device_id, uplink_sid))
        .inspect_err(|e| {
            d.audit_anyway(
                who,
                "device.enrol",
                Some(&req.name),
                "failed",
                Some(&e.to_string()),
            );
        })?;
    Ok(bundle)
}

fn store_device(
    d: &Dispatcher,
    req: &EnrolRequest,
    device_id: Uuid,
    uplink_sid: [u8; 4],
) -> Result<(), Error> {
    let record = DeviceRecord {
        id: req.name.clone(),
        device_id,
        vendor_id: req.vendor_id,
        class_id: req.class_id,
        group: req.group.clone(),
        labels: req.labels.clone(),
        uplink_kid: hex::encode(uplink_sid),
        address: req.address,
        version: req.factory_version.clone(),
        sequence: 0,
        release_id: None,
        enrolled_at: Utc::now(),
        last_seen: None,
        last_report: None,
        reports: Default::default(),
    };
    d.store().put_device(&record, true)?;
    d.register_uplink(&record)
}
