//! The store's tests.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;

fn device(store: &Store, id: &str, kid: &str) {
    let d = DeviceRecord {
        id: id.into(),
        device_id: Uuid::from_u128(1),
        vendor_id: Uuid::from_u128(2),
        class_id: Uuid::from_u128(3),
        group: None,
        labels: vec![],
        uplink_kid: kid.into(),
        address: None,
        version: "1.0.0".into(),
        sequence: 0,
        release_id: None,
        enrolled_at: Utc::now(),
        last_seen: None,
        last_report: None,
        reports: ReportCounts::default(),
    };
    store.put_device(&d, false).unwrap();
}

fn report(n: usize, size: usize) -> DeviceReport {
    DeviceReport {
        release_id: None,
        outcome: if n.is_multiple_of(2) {
            "rejected"
        } else {
            "installed"
        }
        .into(),
        check: None,
        message: format!("{n:04}{}", "m".repeat(size)),
        version_before: "1.0.0".into(),
        version_after: "1.0.0".into(),
        received_at: None,
    }
}

fn number(r: &NumberedReport) -> usize {
    r.report.message[..4].parse().unwrap()
}

#[test]
fn retention_keeps_the_newest_and_counts_all() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    device(&store, "plc-1", "01");
    // A device whose name starts like the other's: prefixes never mix.
    device(&store, "plc-10", "02");
    for n in 0..30 {
        store
            .add_report("plc-1", &report(n, 10), 10, |_| {})
            .unwrap();
    }
    store
        .add_report("plc-10", &report(99, 10), 10, |_| {})
        .unwrap();
    assert!(
        store
            .add_report("nobody", &report(0, 1), 10, |_| {})
            .unwrap()
            .is_none()
    );
    let kept: Vec<usize> = store
        .reports("plc-1")
        .unwrap()
        .iter()
        .map(|r| r.message[..4].parse().unwrap())
        .collect();
    assert_eq!(kept, (20..30).collect::<Vec<_>>());
    let d = store.device("plc-1").unwrap().unwrap();
    assert_eq!(
        d.reports,
        ReportCounts {
            received: 30,
            installed: 15,
            rejected: 15,
            reverted: 0,
            dropped: 20
        }
    );
    assert_eq!(store.reports("plc-10").unwrap().len(), 1);
    assert_eq!(store.reports("nobody").unwrap().len(), 0);
}

#[test]
fn pages_are_bounded_by_count_and_bytes_and_chain_by_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    device(&store, "plc-1", "01");
    for n in 0..50 {
        store
            .add_report("plc-1", &report(n, 1000), 100, |_| {})
            .unwrap();
    }
    // By count: 7 per page, newest first, each page below the cursor.
    let (p, next) = store.reports_page("plc-1", None, 7, 1 << 20).unwrap();
    assert_eq!(
        p.iter().map(number).collect::<Vec<_>>(),
        (43..50).rev().collect::<Vec<_>>()
    );
    let next = next.unwrap();
    assert_eq!(next, p.last().unwrap().seq);
    let (p2, _) = store.reports_page("plc-1", Some(next), 7, 1 << 20).unwrap();
    assert_eq!(number(&p2[0]), 42);
    // By bytes: a 5,000-byte budget holds four reports of about 1,100 bytes.
    let (p, next) = store.reports_page("plc-1", None, 100, 5_000).unwrap();
    assert_eq!(p.len(), 4);
    assert!(next.is_some());
    // At least one, whatever the budget.
    let (p, _) = store.reports_page("plc-1", None, 100, 1).unwrap();
    assert_eq!(p.len(), 1);
    // Walking every page gives every report once, and ends.
    let (mut all, mut cursor) = (Vec::new(), None);
    loop {
        let (p, next) = store.reports_page("plc-1", cursor, 9, 1 << 20).unwrap();
        all.extend(p.iter().map(number));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(all, (0..50).rev().collect::<Vec<_>>());
}
