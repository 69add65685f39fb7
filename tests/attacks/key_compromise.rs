//! Key compromise (TUF): a publisher key stolen and then revoked or expired, a release key
//! revoked at the key repository, a signer revoked while its release is rolling out.

use std::time::Duration;

use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Chain, VENDOR, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

use crate::common::*;

fn internal_entry(kid: &str, key: &suit::SigningKey) -> suit::trust::KeyEntry {
    suit::trust::KeyEntry {
        vendors: Some(vec![VENDOR.to_owned()]),
        ..suit::trust::KeyEntry::new(kid, suit::Role::Internal, &key.public_key().to_pem())
    }
}

/// Attack (TUF key compromise; the thief of a publisher's signing key, with that
/// publisher's upload token, A3): after the key is revoked at the update server
/// (`update-server publishers revoke`, the server running), a release signed with it is
/// uploaded.
///
/// Check: the publishers file is re-read when it changes; a signature by a revoked key is
/// refused even though the key is registered.
/// Asserts: 422 `signer-revoked`; nothing listed or stored.
#[test]
fn revoked_publisher_key_refused_at_update_server() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let stolen = suit::SigningKey::generate(&mut rng()).with_kid(b"stolen-2026".to_vec());
        let pem = c.opts.root.join("stolen-2026.pub.pem");
        std::fs::write(&pem, stolen.public_key().to_pem()).unwrap();
        let cfg = c.opts.root.join("update-server/update-server.toml");
        let (cfg, pem) = (cfg.to_str().unwrap(), pem.to_str().unwrap());
        {
            let _edit = s.edits.lock().await;
            c.tool(&[
                "update-server",
                "publishers",
                "add",
                "--config",
                cfg,
                "--kid",
                "stolen-2026",
                "--public-key",
                pem,
                "--vendor-id",
                VENDOR,
                "--role",
                "third-party",
            ])
            .unwrap();
            c.tool(&[
                "update-server",
                "publishers",
                "revoke",
                "--config",
                cfg,
                "--kid",
                "stolen-2026",
            ])
            .unwrap();
        }
        let p = params(CLASS_HMI, UpdateType::T1, 920, vec![1, 92, 0]).unwrap();
        let b = build(&stolen, &p, &image(4096, 40), "stolen-1");
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "signer-revoked");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
    });
}

/// Attack (TUF key compromise; A1 holding a stolen internal publisher key): the plant
/// revoked the key in its trust store (`revoked = true`, reloaded); the thief uploads a
/// release signed with it straight to the dispatcher.
///
/// Check: validity is judged at each decision (`suit::accept` step 4).
/// Asserts: 422 `signer-revoked`; no release, file or rollout.
#[test]
fn revoked_publisher_key_refused_at_dispatcher() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let key = suit::SigningKey::generate(&mut rng()).with_kid(b"eng-revoked-2026".to_vec());
        {
            let _edit = s.edits.lock().await;
            edit_trust(c, |f| {
                f.keys.push(suit::trust::KeyEntry {
                    revoked: true,
                    ..internal_entry("eng-revoked-2026", &key)
                })
            })
            .await;
        }
        let p = params(CLASS_HMI, UpdateType::T1, 921, vec![1, 92, 1]).unwrap();
        let b = build(&key, &p, &image(2048, 41), "eng-revoked-1");
        let got = direct_upload(c, &b.envelope, &b.blob, &b.key).await;
        assert_refused(&got, 422, "signer-revoked");
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (TUF key compromise; A1 holding an old internal publisher key): the key was
/// rotated out (`valid_until` in the past); a release signed with it is uploaded.
///
/// Check: a key is in force only within `valid_from..=valid_until` at the time of the
/// decision.
/// Asserts: 422 `signer-expired`; no release, file or rollout.
#[test]
fn expired_publisher_key_refused_at_dispatcher() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let key = suit::SigningKey::generate(&mut rng()).with_kid(b"eng-expired-2025".to_vec());
        let past = foundations::now_unix() - 86_400;
        {
            let _edit = s.edits.lock().await;
            edit_trust(c, |f| {
                f.keys.push(suit::trust::KeyEntry {
                    valid_until: Some(suit::trust::Timestamp(past)),
                    ..internal_entry("eng-expired-2025", &key)
                })
            })
            .await;
        }
        let p = params(CLASS_HMI, UpdateType::T1, 922, vec![1, 92, 2]).unwrap();
        let b = build(&key, &p, &image(2048, 42), "eng-expired-1");
        let got = direct_upload(c, &b.envelope, &b.blob, &b.key).await;
        assert_refused(&got, 422, "signer-expired");
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (key compromise of a release key, A5/A3; moved from `tests/e2e.rs`): the
/// publisher revoked a release key (leaked, or the release withdrawn); its release is
/// delivered to the dispatcher anyway — once before intake, once after intake but before
/// approval.
///
/// Check: the key repository answers 410 for a revoked key; the dispatcher fetches the key
/// at intake and again at every approval.
/// Asserts: `sync` reports `key-revoked` and nothing is stored; the later approval is
/// refused with 409 naming `key-revoked`; no rollout; every device still at 1.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_release_key_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.poll_interval_secs = 3600;
    let mut c = Chain::start_services(o).await.unwrap();
    c.start_fleet(2, |_, _| Ok(())).await.unwrap();
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    // Revoked before the dispatcher saw it.
    let early = c
        .publish(&c.manufacturer, &fw, &image(4096, 3), "fw-revoked-early", 0)
        .await
        .unwrap();
    c.revoke_key(&c.manufacturer, "fw-revoked-early")
        .await
        .unwrap();
    let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
    let refused = report["refused"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r[0] == early.as_str() && r[1] == "key-revoked"),
        "{report}"
    );
    assert_not_at_dispatcher(&c, &early).await;
    // Revoked after intake, before approval.
    let fw3 = params(CLASS_PLC, UpdateType::T2, 3, vec![3, 0, 0]).unwrap();
    let late = c
        .publish(&c.manufacturer, &fw3, &image(4096, 4), "fw-revoked-late", 0)
        .await
        .unwrap();
    let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
    assert!(
        report["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == late.as_str()),
        "{report}"
    );
    c.revoke_key(&c.manufacturer, "fw-revoked-late")
        .await
        .unwrap();
    let err =
        c.op.post::<_, Value>(
            &format!("/v1/releases/{late}/approve"),
            &json!({"reason": "test", "ignore_window": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("key-revoked"), "{err}");
    assert!(rollouts(&c).await.is_empty());
    assert!(
        !c.dispatcher_dir()
            .join(format!("data/releases/{late}/approved.suit"))
            .exists(),
        "an approval signature was made"
    );
    for (_, v) in device_versions(&c).await {
        assert_eq!(v, "1.0.0");
    }
}

/// Attack (key compromise of a publisher key while its release rolls out; issue 12, moved
/// from `tests/e2e.rs`): a release held for approval whose publisher key was then revoked
/// in the dispatcher's trust store was still approved, signed and installed, because
/// approval skipped verification once an approved envelope existed.
///
/// Check: the release is accepted again at every approval and before every push batch.
/// Asserts: after the revocation the approval is refused (409, `signer-revoked`) and the
/// running rollout is aborted with an alert naming `signer-revoked`, its remaining devices
/// never sent anything (one device upgraded, from the batch before the revocation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_signer_stops_approvals_and_running_rollouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.poll_interval_secs = 3600;
    // One device per batch, an hour between batches: the rollout is running but mostly
    // waiting when the key is revoked.
    o.policy = Some(policy("\"1\", \"100%\"", "1h", "50%"));
    let mut c = Chain::start_services(o).await.unwrap();
    c.start_fleet(4, |_, _| Ok(())).await.unwrap();
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    let running = c
        .publish(&c.manufacturer, &fw, &image(4096, 10), "fw-run", 0)
        .await
        .unwrap();
    let fw3 = params(CLASS_PLC, UpdateType::T2, 3, vec![3, 0, 0]).unwrap();
    let held = c
        .publish(&c.manufacturer, &fw3, &image(4096, 11), "fw-held", 0)
        .await
        .unwrap();
    let _: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
    c.wait_releases(2, Duration::from_secs(30)).await.unwrap();
    let _: Value =
        c.op.post(
            &format!("/v1/releases/{running}/approve"),
            &json!({"reason": "test", "ignore_window": true}),
        )
        .await
        .unwrap();
    // The first batch (one PLC) installs; the rollout then waits for an hour.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let rid = loop {
        let v: Value = c.op.get("/v1/rollouts").await.unwrap();
        let r = &v["rollouts"][0];
        if r["progress"]["installed"] == 1 {
            break r["id"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    edit_trust(&c, |f| {
        f.keys
            .iter_mut()
            .find(|k| k.kid == "acme-fw-2026")
            .unwrap()
            .revoked = true;
    })
    .await;

    let err =
        c.op.post::<_, Value>(
            &format!("/v1/releases/{held}/approve"),
            &json!({"reason": "test", "ignore_window": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("signer-revoked"), "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r: Value = c.op.get(&format!("/v1/rollouts/{rid}")).await.unwrap();
        if r["status"]["status"] == "aborted" {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        r["alert"].as_str().unwrap().contains("signer-revoked"),
        "{r}"
    );
    assert_eq!(r["progress"]["installed"], 1, "{r}");
    let all = rollouts(&c).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let upgraded: Vec<_> = device_versions(&c)
        .await
        .into_iter()
        .filter(|(_, v)| v != "1.0.0")
        .collect();
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
}
