//! The rollout engine's tests: batches, failures, retries, restarts, and the cost of one
//! device event.

use super::*;
use crate::store::RolloutRecord;
use chrono::TimeZone;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn devices(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dev-{i:02}")).collect()
}

fn plan(batches: Vec<usize>, pause: u64, max_failures: Option<usize>) -> Plan {
    Plan {
        batches,
        pause: Duration::from_secs(pause),
        max_failures,
        max_failure_percent: None,
        max_attempts: 2,
        retry_backoff: Duration::from_secs(5),
    }
}

#[test]
fn batches_in_order_with_pauses() {
    let mut r = Rollout::new(
        "r1",
        "rel",
        devices(6),
        plan(vec![1, 2, 3], 60, None),
        t(0),
        t(0),
    );
    assert_eq!(r.due(t(0), 100), vec!["dev-00"]);
    assert!(
        r.due(t(1), 100).is_empty(),
        "nothing until the canary reports"
    );
    r.record("dev-00", Outcome::Installed, t(10));
    assert!(r.due(t(30), 100).is_empty(), "pause between batches");
    assert_eq!(r.due(t(70), 100), vec!["dev-01", "dev-02"]);
    r.record("dev-01", Outcome::Installed, t(80));
    r.record("dev-02", Outcome::Installed, t(80));
    // The concurrency bound applies.
    assert_eq!(r.due(t(140), 2).len(), 2);
    assert_eq!(r.due(t(140), 3).len(), 1);
    for d in ["dev-03", "dev-04", "dev-05"] {
        r.record(d, Outcome::Installed, t(150));
    }
    assert_eq!(r.status, Status::Completed);
    assert_eq!(r.progress().installed, 6);
}

#[test]
fn failure_threshold_halts_until_resumed() {
    let mut r = Rollout::new(
        "r1",
        "rel",
        devices(4),
        plan(vec![2, 2], 0, Some(1)),
        t(0),
        t(0),
    );
    let sent = r.due(t(0), 10);
    r.record(
        &sent[0],
        Outcome::Failed {
            reason: "self-test-failed".into(),
        },
        t(1),
    );
    assert!(matches!(r.status, Status::Halted { .. }));
    assert!(r.due(t(2), 10).is_empty());
    // The other in-flight device may still report.
    r.record(&sent[1], Outcome::Installed, t(3));
    r.resume(t(4)).unwrap();
    // The threshold counts across the rollout: the next failure halts again.
    let next = r.due(t(4), 10);
    assert_eq!(next.len(), 2);
    r.record(
        &next[0],
        Outcome::Rejected {
            check: "wrong-class".into(),
        },
        t(5),
    );
    assert!(matches!(r.status, Status::Halted { .. }));
}

#[test]
fn transient_failures_are_retried_then_given_up() {
    let mut r = Rollout::new("r1", "rel", devices(1), plan(vec![1], 0, None), t(0), t(0));
    assert_eq!(r.due(t(0), 10).len(), 1);
    r.record(
        "dev-00",
        Outcome::Transient {
            reason: "timeout".into(),
        },
        t(1),
    );
    assert!(r.due(t(2), 10).is_empty(), "backoff");
    assert_eq!(r.due(t(7), 10), vec!["dev-00"]);
    r.record(
        "dev-00",
        Outcome::Transient {
            reason: "timeout".into(),
        },
        t(8),
    );
    assert!(matches!(
        r.devices()["dev-00"],
        DeviceProgress::Failed { .. }
    ));
    assert_eq!(r.status, Status::Completed);
}

/// A decision for records made in tests.
fn decision() -> crate::store::Decision {
    crate::store::Decision {
        by: "alice".into(),
        reason: "ok".into(),
        at: t(0),
    }
}

#[test]
fn settled_devices_are_never_sent_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let r = Rollout::new("r1", "rel", devices(3), plan(vec![3], 0, None), t(0), t(0));
    let mut rec = RolloutRecord::new(r, None, decision());
    store.put_rollout(&mut rec).unwrap();
    let sent = rec.rollout.due(t(0), 10);
    store.save_rollout(&mut rec).unwrap();
    rec.rollout.record(&sent[0], Outcome::Installed, t(1));
    store.save_rollout(&mut rec).unwrap();
    rec.rollout.record(
        &sent[0],
        Outcome::Failed {
            reason: "late duplicate".into(),
        },
        t(2),
    );
    store.save_rollout(&mut rec).unwrap();
    assert_eq!(
        rec.rollout.device(&sent[0]),
        Some(&DeviceProgress::Installed)
    );
    // Crash: reopen the store, load, recover the sends that never reported.
    drop(store);
    let store = crate::store::Store::open(dir.path()).unwrap();
    let mut back = store.rollout("r1").unwrap().unwrap();
    assert_eq!(back.rollout, rec.rollout);
    assert_eq!(back.rollout.progress(), rec.rollout.progress());
    back.rollout.recover_in_flight(t(10));
    let again = back.rollout.due(t(10), 10);
    assert_eq!(again, vec![sent[1].clone(), sent[2].clone()]);
    assert!(!again.contains(&sent[0]));
}

/// One device event changes one device record, whatever the rollout's size, and the
/// counts kept up to date agree with a count from scratch.
#[test]
fn one_device_event_changes_one_device_record() {
    let n = 10_000;
    let mut r = Rollout::new(
        "r1",
        "rel",
        devices(n),
        plan(vec![100, n - 100], 0, None),
        t(0),
        t(0),
    );
    r.take_changed();
    let sent = r.due(t(0), 64);
    assert_eq!(sent.len(), 64);
    assert_eq!(r.take_changed().len(), 64, "the devices sent");
    r.record(&sent[0], Outcome::Installed, t(1));
    assert_eq!(
        r.take_changed().into_iter().collect::<Vec<_>>(),
        vec![sent[0].clone()]
    );
    r.record(
        &sent[1],
        Outcome::Transient {
            reason: "timeout".into(),
        },
        t(1),
    );
    assert_eq!(r.take_changed().len(), 1);
    let kept = r.progress();
    let mut fresh = r.clone();
    fresh.reindex();
    assert_eq!(fresh.progress(), kept);
    assert_eq!((kept.installed, kept.in_flight), (1, 62));
    // The retry comes back in rollout order, before the devices not yet sent.
    let next = r.due(t(10), 64);
    assert_eq!(next.first(), Some(&sent[1]));
    assert_eq!(next.len(), 2, "62 in flight + 2 = 64");
}

/// A rollout stored by an earlier version (its devices inside the header) loads, and is
/// rewritten in the per-device form so that later saves of single devices are complete.
#[test]
fn rollout_stored_with_inline_devices_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rollout::new("r7", "rel", devices(3), plan(vec![3], 0, None), t(0), t(0));
    let sent = r.due(t(0), 1);
    r.record(&sent[0], Outcome::Installed, t(1));
    let mut old = serde_json::to_value(RolloutRecord::new(r.clone(), None, decision())).unwrap();
    let rollout = old["rollout"].as_object_mut().unwrap();
    rollout.insert("order".into(), serde_json::to_value(r.order()).unwrap());
    rollout.insert("devices".into(), serde_json::to_value(r.devices()).unwrap());
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let tree = db.open_tree("rollouts").unwrap();
        tree.insert("r7", serde_json::to_vec(&old).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let store = crate::store::Store::open(dir.path()).unwrap();
    let mut rec = store.rollout("r7").unwrap().unwrap();
    assert_eq!(rec.rollout, r);
    let more = rec.rollout.due(t(2), 10);
    assert_eq!(more.len(), 2);
    rec.rollout.record(&more[0], Outcome::Installed, t(3));
    store.save_rollout(&mut rec).unwrap();
    drop(store);
    let store = crate::store::Store::open(dir.path()).unwrap();
    let back = store.rollout("r7").unwrap().unwrap();
    assert_eq!(back.rollout, rec.rollout);
    assert_eq!(back.rollout.progress().installed, 2);
}

#[test]
fn scheduled_start_pause_and_abort() {
    let mut r = Rollout::new(
        "r1",
        "rel",
        devices(2),
        plan(vec![2], 0, None),
        t(100),
        t(0),
    );
    assert_eq!(r.status, Status::Scheduled);
    assert!(r.due(t(50), 10).is_empty());
    r.pause().unwrap();
    assert!(r.due(t(150), 10).is_empty());
    r.resume(t(160)).unwrap();
    assert_eq!(r.due(t(160), 10).len(), 2);
    r.abort("operator: wrong release").unwrap();
    assert!(r.resume(t(170)).is_err() && r.abort("again").is_err());
    assert!(r.due(t(180), 10).is_empty());
}

#[test]
fn plan_from_policy() {
    let p = policies::Policy::from_toml(
        "[[rollout]]\nname = \"c\"\nbatches = [\"1\", \"50%\"]\npause = \"10m\"\nfailure_threshold = \"20%\"\n",
        "t.toml",
    )
    .unwrap();
    let plan = Plan::from_policy(&p.rollouts[0], 10);
    assert_eq!(plan.batches, vec![1, 4, 5]);
    assert_eq!(plan.max_failure_percent, Some(20));
    assert_eq!(plan.pause, Duration::from_secs(600));
}

#[test]
fn resuming_a_paused_scheduled_rollout_keeps_its_start() {
    let now = t(0);
    let start = t(5 * 3600);
    let mut r = Rollout::new("r", "rel", devices(3), Plan::all_at_once(3), start, now);
    assert_eq!(r.status, Status::Scheduled);
    r.pause().unwrap();
    r.resume(now).unwrap();
    assert_eq!(r.status, Status::Scheduled);
    assert!(
        r.due(now, 10).is_empty(),
        "resumed rollout started before its time"
    );
    assert_eq!(r.due(start, 10).len(), 3);
}
