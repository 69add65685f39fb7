//! `device-sim provision` and `status` as a user runs them.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::process::Command;

fn bundle(dir: &std::path::Path, secret_hex: &str) -> std::path::PathBuf {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let maker = suit::SigningKey::generate(&mut rng);
    let dispatcher = suit::SigningKey::generate(&mut rng);
    let vendor = uuid::Uuid::parse_str("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").unwrap();
    let trust = fleet_proto::bundle::Trust::from_keys(
        vendor,
        &[
            (
                suit::Role::Manufacturer,
                "maker",
                &maker.public_key().to_pem(),
            ),
            (
                suit::Role::Approver,
                "dispatcher",
                &dispatcher.public_key().to_pem(),
            ),
        ],
        true,
    );
    let b = serde_json::json!({
        "format": "ics-device-bundle/2",
        "identity": {
            "name": "rtu-3",
            "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
            "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
            "device_id": "00000000-0000-0000-0000-000000000003"
        },
        "trust": trust,
        "oscore": { "master_secret_hex": secret_hex, "sender_id_hex": "03", "recipient_id_hex": "00" },
        "dispatcher": "coap://127.0.0.1:5683",
        "factory_version": "1.4.0"
    });
    let p = dir.join("bundle.json");
    std::fs::write(&p, serde_json::to_vec(&b).unwrap()).unwrap();
    p
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn provision_then_status() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "0123456789abcdef0123456789abcdef");
    let dir = tmp.path().join("rtu-3");
    let (b, d) = (b.to_str().unwrap(), dir.to_str().unwrap());
    let o = sim(&["provision", "--bundle", b, "--dir", d]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("running 1.4.0"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("oscore.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the OSCORE master secret must be owner-only"
        );
    }
    let o = sim(&["status", "--dir", d, "--json"]);
    assert!(o.status.success(), "{o:?}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["version"], "1.4.0");
    assert_eq!(s["state"]["active"], "a");
    assert_eq!(s["state"]["counter"], 0);
    assert_eq!(s["identity"]["name"], "rtu-3");
    // The secret is not in the status output.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("0123456789abcdef"));
    // Provisioning twice would lose state: refused.
    let o = sim(&["provision", "--bundle", b, "--dir", d]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already provisioned"));
}

#[test]
fn invalid_bundle_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(tmp.path(), "not-hex");
    let dir = tmp.path().join("x");
    let o = sim(&[
        "provision",
        "--bundle",
        b.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("master_secret_hex"), "{err}");
    assert!(!dir.exists(), "nothing is created for a bad bundle");
}

/// The optional `uplink` member is validated like `oscore`, and must not reuse its secret
/// (the two directions must never share a sequence number space).
#[test]
fn uplink_member_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let path = bundle(tmp.path(), "0123456789abcdef0123456789abcdef");
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cases = [
        (
            serde_json::json!({ "master_secret_hex": "0123456789ABCDEF0123456789ABCDEF",
                                "sender_id_hex": "0103", "recipient_id_hex": "00" }),
            "uplink.master_secret_hex: must be a master secret different from the push context's",
        ),
        (
            serde_json::json!({ "master_secret_hex": "ff".repeat(16),
                                "sender_id_hex": "00", "recipient_id_hex": "00" }),
            "uplink.sender_id_hex: must be different from the recipient id",
        ),
        (
            serde_json::json!({ "master_secret_hex": "ff".repeat(16),
                                "sender_id_hex": "0102030405060708", "recipient_id_hex": "00" }),
            "uplink.sender_id_hex",
        ),
    ];
    for (i, (uplink, reason)) in cases.into_iter().enumerate() {
        b["uplink"] = uplink;
        std::fs::write(&path, serde_json::to_vec(&b).unwrap()).unwrap();
        let dir = tmp.path().join(format!("x{i}"));
        let o = sim(&[
            "provision",
            "--bundle",
            path.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(reason), "{err}");
        assert!(!err.contains("ffffffff"), "no secret in errors: {err}");
        assert!(!dir.exists());
    }
    b["uplink"] = serde_json::json!({ "master_secret_hex": "ff".repeat(16),
                                      "sender_id_hex": "0103", "recipient_id_hex": "00" });
    std::fs::write(&path, serde_json::to_vec(&b).unwrap()).unwrap();
    let dir = tmp.path().join("ok");
    let o = sim(&[
        "provision",
        "--bundle",
        path.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("uplink.json")).unwrap()).unwrap();
    assert_eq!(written["sender_id_hex"], "0103");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("uplink.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the uplink master secret must be owner-only"
        );
    }
}
