//! Operator decisions under attack (A7): races between decisions on one release.

use std::time::Duration;

use ics_suit::chain::{CLASS_PLC, Chain, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

use crate::common::*;

/// Attack (issue 12; A7: operators, or one operator's token used twice, deciding on one
/// release at the same instant — a race to get a release approved twice, or approved while
/// it is being rejected): four approvals sent at the same instant all returned 200 and made
/// four rollouts; an approval and a rejection sent together both succeeded, and the rollout
/// ran. Moved from `tests/e2e.rs`.
///
/// Check: decisions on one release are serialised by a per-release lock.
/// Asserts: exactly one approval starts a rollout and the others get 409; of an approval
/// and a rejection, exactly one wins, and the release's state and rollouts agree with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_on_one_release_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.poll_interval_secs = 3600;
    o.policy = Some(policy("\"100%\"", "1s", "50%"));
    let mut c = Chain::start_services(o).await.unwrap();
    c.start_fleet(2, |_, _| Ok(())).await.unwrap();
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    let a = c
        .publish(&c.manufacturer, &fw, &image(4096, 12), "fw-race-a", 0)
        .await
        .unwrap();
    let fw3 = params(CLASS_PLC, UpdateType::T2, 3, vec![3, 0, 0]).unwrap();
    let b = c
        .publish(&c.manufacturer, &fw3, &image(4096, 13), "fw-race-b", 0)
        .await
        .unwrap();
    let _: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
    c.wait_releases(2, Duration::from_secs(30)).await.unwrap();

    let approve = |id: String| {
        let op = c.op.clone();
        tokio::spawn(async move {
            op.post::<_, Value>(
                &format!("/v1/releases/{id}/approve"),
                &json!({"reason": "race", "ignore_window": true}),
            )
            .await
            .map_err(|e| e.status())
        })
    };
    let four = [
        approve(a.clone()),
        approve(a.clone()),
        approve(a.clone()),
        approve(a.clone()),
    ];
    let mut ok = 0;
    for t in four {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(status, Some(409)),
        }
    }
    assert_eq!(ok, 1, "exactly one approval starts a rollout");
    let rollouts: Value = c.op.get("/v1/rollouts").await.unwrap();
    let of = |id: &str, v: &Value| {
        v["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["release_id"] == id)
            .count()
    };
    assert_eq!(of(&a, &rollouts), 1, "{rollouts}");

    let op = c.op.clone();
    let bid = b.clone();
    let reject = tokio::spawn(async move {
        op.post::<_, Value>(
            &format!("/v1/releases/{bid}/reject"),
            &json!({"reason": "race"}),
        )
        .await
        .map_err(|e| e.status())
    });
    let approved = approve(b.clone()).await.unwrap();
    let rejected = reject.await.unwrap();
    assert!(
        approved.is_ok() != rejected.is_ok(),
        "exactly one decision wins: {approved:?} {rejected:?}"
    );
    let rollouts: Value = c.op.get("/v1/rollouts").await.unwrap();
    let release: Value = c.op.get(&format!("/v1/releases/{b}")).await.unwrap();
    let parts = release["parts"].to_string();
    if approved.is_ok() {
        assert_eq!(of(&b, &rollouts), 1, "{rollouts}");
        assert!(!parts.contains("rejected"), "{release}");
    } else {
        assert_eq!(of(&b, &rollouts), 0, "{rollouts}");
        assert!(parts.contains("rejected"), "{release}");
    }
}
