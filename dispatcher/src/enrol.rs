//! Enrolment (`dispatcher devices add`): a device gets two OSCORE contexts with fresh master
//! secrets, one per direction, so the device as server (pushes) and as client (check-ins,
//! pulls, reports) never share a sender sequence space (RFC 8613 §3.3 forbids nonce reuse;
//! two contexts from one set of parameters in one process would reuse nonces). The
//! dispatcher keeps its side under `DATA/devices/ID/` (0600); the device's side goes into
//! the provisioning bundle, which is returned once.

use std::net::SocketAddr;

use chrono::Utc;
use device_sim::bundle::{Bundle, FORMAT, OscoreParams};
use device_sim::{Identity, KeyEntry, Trust};
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
    /// Unique name (1-64 of A-Z a-z 0-9 - _ .).
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
    /// Factory version.
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

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn context(secret: &[u8], salt: &[u8], sender: &[u8], recipient: &[u8]) -> OscoreParams {
    OscoreParams {
        master_secret_hex: hex::encode(secret),
        master_salt_hex: Some(hex::encode(salt)),
        sender_id_hex: hex::encode(sender),
        recipient_id_hex: hex::encode(recipient),
        id_context_hex: None,
    }
}

fn write_ctx(path: &std::path::Path, p: &OscoreParams) -> Result<(), Error> {
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(p).map_err(|e| Error::Other(e.to_string()))?,
    );
    foundations::fs::write_file_atomic(path, &json, 0o600)?;
    Ok(())
}

/// Creates the device (see the module documentation).
pub(crate) fn enrol(d: &Dispatcher, req: &EnrolRequest) -> Result<Bundle, Error> {
    if !valid_name(&req.name) {
        return Err(Error::BadRequest(format!(
            "device name {:?}: 1-64 characters of A-Z a-z 0-9 - _ .",
            req.name
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
    if req.factory_version.is_empty() || req.factory_version.len() > 32 {
        return Err(Error::BadRequest("factory_version: 1-32 characters".into()));
    }
    if d.store().device(&req.name)?.is_some() {
        return Err(Error::Conflict(format!("device {} is enrolled", req.name)));
    }
    let trust = d.trust();
    let now = Utc::now();
    let entries = |roles: &[&str]| -> Vec<KeyEntry> {
        trust
            .keys
            .iter()
            .filter(|k| roles.contains(&k.role.as_str()) && !k.revoked)
            .filter(|k| k.valid_until.is_none_or(|u| now <= u))
            .filter(|k| k.vendors.is_empty() || k.vendors.contains(&req.vendor_id))
            .map(|k| KeyEntry {
                kid: k.kid.clone(),
                pem: k.pem.clone(),
            })
            .collect()
    };
    let manufacturer = entries(&["manufacturer"]);
    if manufacturer.is_empty() {
        return Err(Error::BadRequest(format!(
            "the trust store has no manufacturer key for vendor {}; add it before enrolling",
            req.vendor_id
        )));
    }
    let n = d.store().next_counter("uplink-kid")?;
    // 4-byte uplink sender ids: unique per dispatcher, up to 2^32 enrolments.
    let uplink_sid = u32::try_from(n)
        .map_err(|_| Error::Other("uplink ids exhausted".into()))?
        .to_be_bytes();
    let rnd = |_: ()| -> Result<[u8; 32], Error> { Ok(foundations::random_bytes::<32>()?) };
    let (push_secret, push_salt) = (rnd(())?, foundations::random_bytes::<8>()?);
    let (up_secret, up_salt) = (rnd(())?, foundations::random_bytes::<8>()?);
    let push_secret = zeroize::Zeroizing::new(push_secret);
    let up_secret = zeroize::Zeroizing::new(up_secret);

    let dir = d.store().device_dir(&req.name);
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
    }
    // The dispatcher's views: it is the client of the push context and the server of the
    // uplink context.
    write_ctx(
        &dir.join("push.json"),
        &context(&*push_secret, &push_salt, &DISPATCHER_SID, &DEVICE_PUSH_SID),
    )?;
    write_ctx(
        &dir.join("uplink.json"),
        &context(&*up_secret, &up_salt, &DISPATCHER_SID, &uplink_sid),
    )?;
    let device_id = req.device_id.unwrap_or_else(Uuid::new_v4);
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
    };
    d.store().put_device(&record, true)?;
    d.register_uplink(&record)?;
    Ok(Bundle {
        format: FORMAT.into(),
        identity: Identity {
            name: req.name.clone(),
            vendor_id: req.vendor_id,
            class_id: req.class_id,
            device_id,
        },
        trust: Trust {
            manufacturer,
            // Internal publishers sign T1 only, like third parties: devices hold them in the
            // same list (a third-party anchor may vouch for T1 alone).
            third_party: entries(&["third-party", "internal"]),
            authors: entries(&["author"]),
            approver: Some(d.approver_entry()),
            require_approval: req.require_approval,
        },
        oscore: context(&*push_secret, &push_salt, &DEVICE_PUSH_SID, &DISPATCHER_SID),
        uplink: Some(context(&*up_secret, &up_salt, &uplink_sid, &DISPATCHER_SID)),
        dispatcher: d.cfg().coap_uri.clone(),
        factory_version: req.factory_version.clone(),
    })
}
