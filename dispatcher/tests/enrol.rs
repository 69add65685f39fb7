//! Enrolment through the operator API (`POST /v1/devices`): names that are paths are refused
//! before anything is written (issue 13: `.` and `..` were accepted and their context files
//! landed in the data directory itself), and the bundle returned is one the device's decoder
//! (`fleet_proto`) accepts.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dispatcher::Dispatcher;
use dispatcher::config::Config;
use fleet_proto::bundle::Bundle;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";

struct Fixture {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    d: Arc<Dispatcher>,
    admin: String,
}

/// A dispatcher whose trust store holds one manufacturer key for VENDOR.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    let rep = dispatcher::init::init(&root, &dispatcher::init::InitOptions::default()).unwrap();
    let cfg = Config::load(&rep.config).unwrap();
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let maker = suit::SigningKey::generate(&mut rng);
    let trust = format!(
        "[[key]]\nkid = \"maker\"\nrole = \"manufacturer\"\nvendors = [\"{VENDOR}\"]\npem = \"\"\"\n{}\"\"\"\n",
        maker.public_key().to_pem()
    );
    std::fs::write(&cfg.trust_file, trust).unwrap();
    let data = cfg.data_dir.clone();
    let d = Arc::new(Dispatcher::open(cfg, false).unwrap());
    Fixture {
        _dir: dir,
        data,
        d,
        admin: rep.admin_token,
    }
}

async fn enrol(f: &Fixture, body: &Value) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/devices")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.admin))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let res = dispatcher::api::router(f.d.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, body)
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn names_that_are_paths_are_refused_before_anything_is_written() {
    let f = fixture();
    let devices = f.data.join("devices");
    let before = files(&devices);
    for name in [".", "..", "../escape", "a/b", ".hidden", "a\\b", ""] {
        let (status, body) = enrol(
            &f,
            &json!({"name": name, "vendor_id": VENDOR, "class_id": CLASS}),
        )
        .await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {text}");
        assert!(text.contains("device name"), "{name:?}: {text}");
        assert!(f.d.store().device(name).unwrap().is_none(), "{name:?}");
    }
    assert_eq!(files(&devices), before, "no context file was written");
    assert!(!devices.join("push.json").exists());
    assert!(!f.data.join("push.json").exists());
}

#[tokio::test]
async fn the_bundle_returned_is_one_the_device_decodes() {
    let f = fixture();
    let (status, body) = enrol(
        &f,
        &json!({"name": "plc-7", "vendor_id": VENDOR, "class_id": CLASS,
                "factory_version": "1.2.0-rc1"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let b = Bundle::decode(&body).unwrap();
    assert_eq!(b.identity.name, "plc-7");
    assert_eq!(b.factory_version, "1.2.0-rc1");
    let store = b.trust.trust_store().unwrap();
    assert_eq!(
        store.by_kid(b"maker").map(|a| a.role()),
        Some(suit::Role::Manufacturer)
    );
    assert!(
        store
            .anchors()
            .iter()
            .any(|a| a.role() == suit::Role::Approver)
    );
    assert!(b.trust.require_approval);
    let uplink = b.uplink.as_ref().unwrap();
    assert_eq!(uplink.sender_id_hex.len(), 8, "four-byte uplink kid");
    assert_ne!(uplink.master_secret_hex, b.oscore.master_secret_hex);
    // The dispatcher's side of each context is the bundle's, ids swapped.
    let push: Value = serde_json::from_slice(
        &std::fs::read(f.d.store().device_dir("plc-7").join("push.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(push["sender_id_hex"], b.oscore.recipient_id_hex.as_str());
    assert_eq!(push["recipient_id_hex"], b.oscore.sender_id_hex.as_str());
    // A factory version the device would refuse is refused at enrolment.
    let (status, body) = enrol(
        &f,
        &json!({"name": "plc-8", "vendor_id": VENDOR, "class_id": CLASS,
                "factory_version": "1.0 beta"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("factory_version"));
}
