#![allow(clippy::unwrap_used)]
use super::*;

fn refusal(t: u64, actor: &str) -> AuditEvent {
    AuditEvent {
        time: t,
        actor: actor.into(),
        action: "key.read".into(),
        result: "denied:invalid_token".into(),
        ..Default::default()
    }
}

fn total(records: &[AuditEvent]) -> u64 {
    records.iter().map(|r| r.count.unwrap_or(1)).sum()
}

#[test]
fn first_recorded_rest_counted_per_window() {
    let a = RefusalAggregator::new(RefusalLimits {
        window_secs: 60,
        max_sources: 8,
    });
    let mut recs = Vec::new();
    for i in 0..10_000u64 {
        recs.extend(a.refused("10.0.0.1", refusal(1000 + i / 1000, "anonymous")));
    }
    assert_eq!(
        recs.len(),
        1,
        "only the first is recorded during the window"
    );
    assert!(a.due(1059).is_empty());
    recs.extend(a.due(1060));
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].count, Some(9_999));
    assert_eq!(recs[1].action, SUMMARY_ACTION);
    assert_eq!(recs[1].peer.as_deref(), Some("10.0.0.1"));
    assert_eq!(total(&recs), 10_000);
    // A new window: recorded as it is again.
    assert_eq!(a.refused("10.0.0.1", refusal(1061, "anonymous")).len(), 1);
    assert!(
        a.flush(1062).is_empty(),
        "nothing counted in the new window"
    );
}

#[test]
fn sources_are_bounded_and_every_refusal_counted() {
    let a = RefusalAggregator::new(RefusalLimits {
        window_secs: 60,
        max_sources: 4,
    });
    let mut recs = Vec::new();
    let n = 50_000u64;
    for i in 0..n {
        // A different address each time, all in one window.
        let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        recs.extend(a.refused(&source_of(ip), refusal(1000, "anonymous")));
        assert!(a.groups() <= 5);
    }
    recs.extend(a.flush(1001));
    assert!(recs.len() <= 2 * 5, "{} records", recs.len());
    assert_eq!(total(&recs), n);
    assert!(
        recs.iter()
            .any(|r| r.peer.as_deref() == Some(OVERFLOW_SOURCE))
    );
}

#[test]
fn a_late_refusal_closes_the_ended_window() {
    let a = RefusalAggregator::new(RefusalLimits {
        window_secs: 10,
        max_sources: 1,
    });
    assert_eq!(a.refused("s", refusal(0, "anonymous")).len(), 1);
    assert!(a.refused("s", refusal(5, "anonymous")).is_empty());
    // No `due` call in between: the next refusal emits the summary and opens a window.
    let r = a.refused("s", refusal(10, "anonymous"));
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].count, r[1].count), (Some(1), None));
    // Another source while the only slot is taken by an open window: overflow.
    let r = a.refused("t", refusal(11, "anonymous"));
    assert_eq!(r.len(), 1);
    assert!(r[0].reason.as_deref().unwrap().contains("overflow"));
    assert!(a.refused("u", refusal(12, "anonymous")).is_empty());
    assert_eq!(a.groups(), 2);
}

#[test]
fn actors_are_grouped_apart() {
    // The refusal of a removed client's token is not lost among anonymous ones.
    let a = RefusalAggregator::new(RefusalLimits::default());
    assert_eq!(a.refused("s", refusal(0, "anonymous")).len(), 1);
    let r = a.refused("s", refusal(1, "kr-1"));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].actor, "kr-1");
}

#[test]
fn ipv6_groups_by_64_and_mapped_ipv4_as_ipv4() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    assert_eq!(source_of(a), source_of(b));
    assert_eq!(source_of(a), "2001:db8:1:2::/64");
    assert_eq!(source_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
}
