//! The uplink resources over real loopback sockets, with an in-memory backend.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use oscore::transport::{Client, ClientConfig};
use oscore::{ContextParams, MemorySeqStore};

use super::*;

const RELEASE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DEVICE: &[u8] = b"\x11";
const DISPATCHER: &[u8] = b"\x00";

/// In-memory backend: device 0x11 is enrolled and offered RELEASE; OTHER exists but is
/// not offered to it.
#[derive(Default)]
struct Mem {
    checkins: Mutex<Vec<(Vec<u8>, SocketAddr, CheckIn)>>,
    reports: Mutex<Vec<(Vec<u8>, DeviceReport)>>,
    artifact_calls: Mutex<HashMap<Artifact, usize>>,
    blob: Arc<Vec<u8>>,
    /// The configured check-in interval (600 s in `server()`).
    interval: AtomicU32,
}

impl DeviceBackend for Mem {
    fn checkin(
        &self,
        kid: &[u8],
        peer: SocketAddr,
        c: CheckIn,
    ) -> Result<CheckInReply, UplinkError> {
        if kid != DEVICE {
            return Err(UplinkError::UnknownDevice);
        }
        self.checkins.lock().unwrap().push((kid.to_vec(), peer, c));
        Ok(CheckInReply {
            next_checkin_s: self.interval.load(Ordering::Relaxed),
            pending: Some(Pending {
                release_id: RELEASE.into(),
                envelope_size: 3,
                blob_size: self.blob.len() as u64,
            }),
        })
    }

    fn artifact(
        &self,
        kid: &[u8],
        release_id: &str,
        which: Artifact,
    ) -> Result<Arc<Vec<u8>>, UplinkError> {
        if kid != DEVICE {
            return Err(UplinkError::UnknownDevice);
        }
        *self
            .artifact_calls
            .lock()
            .unwrap()
            .entry(which)
            .or_default() += 1;
        match release_id {
            RELEASE => Ok(match which {
                Artifact::Envelope => Arc::new(b"env".to_vec()),
                Artifact::Key => Arc::new(b"key".to_vec()),
                Artifact::Blob => self.blob.clone(),
            }),
            OTHER => Err(UplinkError::NotOffered),
            _ => Err(UplinkError::NotFound),
        }
    }

    fn report(&self, kid: &[u8], r: DeviceReport) -> Result<(), UplinkError> {
        if r.message == "boom" {
            return Err(UplinkError::Internal("database on fire".into()));
        }
        self.reports.lock().unwrap().push((kid.to_vec(), r));
        Ok(())
    }
}

fn ctx(secret: u8, sender: &[u8], recipient: &[u8]) -> SecurityContext {
    let p = ContextParams {
        master_secret: zeroize::Zeroizing::new(vec![secret; 16]),
        master_salt: vec![],
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    };
    SecurityContext::new(&p, Box::new(MemorySeqStore::new())).unwrap()
}

fn blob() -> Vec<u8> {
    (0..200 * 1024).map(|i| (i % 253) as u8).collect()
}

async fn server() -> (ServerHandle, ContextSet, Arc<Mem>) {
    let backend = Arc::new(Mem {
        blob: Arc::new(blob()),
        interval: AtomicU32::new(600),
        ..Mem::default()
    });
    let (h, set) = start_uplink(
        "127.0.0.1:0".parse().unwrap(),
        backend.clone(),
        vec![ctx(7, DISPATCHER, DEVICE)],
    )
    .await
    .unwrap();
    (h, set, backend)
}

async fn device(addr: SocketAddr) -> Client {
    let cfg = ClientConfig {
        ack_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    Client::connect(addr, Some(ctx(7, DEVICE, DISPATCHER)), cfg)
        .await
        .unwrap()
}

fn checkin_body() -> serde_json::Value {
    serde_json::json!({
        "coap_port": 40123, "version": "1.0.0", "sequence": 3, "release_id": null,
        "state": { "active": "a", "a": null, "b": null, "counter": 3, "pending": null,
                   "boots": 2 },
        "boots": 2
    })
}

fn report_body(message: &str) -> serde_json::Value {
    serde_json::json!({
        "release_id": RELEASE, "outcome": "rejected", "check": "payload-digest-mismatch",
        "message": message, "version_before": "1.0.0", "version_after": "1.0.0"
    })
}

fn code_of(r: oscore::Result<oscore::transport::Response>) -> String {
    match r {
        Ok(r) => oscore::message::code_string(r.code),
        Err(oscore::Error::Response { code, .. }) => code,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn checkin_is_attributed_to_the_verifying_kid() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    let body = serde_json::to_vec(&checkin_body()).unwrap();
    let r = c.request(code::POST, "d/checkin", &body).await.unwrap();
    assert_eq!(r.code, code::CHANGED);
    assert_eq!(r.content_format, Some(content_format::JSON));
    let reply = CheckInReply::decode(&r.payload).unwrap();
    assert_eq!(reply.next_checkin_s, 600);
    assert_eq!(reply.pending.unwrap().release_id, RELEASE);
    {
        let seen = backend.checkins.lock().unwrap();
        let (kid, peer, ci) = &seen[0];
        assert_eq!(kid.as_slice(), DEVICE);
        assert!(peer.ip().is_loopback());
        assert_eq!((ci.coap_port, ci.sequence, ci.boots), (40123, 3, 2));
    }

    // A claimed identity in the body is not part of the contract: refused, not used.
    let mut claimed = checkin_body();
    claimed["device_id"] = "someone-else".into();
    let r = c
        .request(
            code::POST,
            "d/checkin",
            &serde_json::to_vec(&claimed).unwrap(),
        )
        .await;
    assert_eq!(code_of(r), "4.00");
    assert_eq!(backend.checkins.lock().unwrap().len(), 1);
    h.stop().await.unwrap();
}

/// Devices refuse an interval outside 1 s..7 days; a dispatcher configured outside it sends
/// the nearest bound rather than replies every device refuses.
#[tokio::test]
async fn checkin_interval_is_brought_within_what_devices_accept() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    let body = serde_json::to_vec(&checkin_body()).unwrap();
    for (configured, sent) in [(0, 1), (u32::MAX, 7 * 24 * 3600), (60, 60)] {
        backend.interval.store(configured, Ordering::Relaxed);
        let r = c.request(code::POST, "d/checkin", &body).await.unwrap();
        let reply = CheckInReply::decode(&r.payload).unwrap();
        assert_eq!(reply.next_checkin_s, sent, "configured {configured}");
    }
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_a_large_blob_uses_block2() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    let path = format!("d/releases/{RELEASE}/blob");
    let got = c.get(&path).await.unwrap();
    assert!(got == *blob(), "blob differs after Block2 reassembly");
    // One backend call per 1 KiB block (and one OSCORE exchange each).
    let calls = backend.artifact_calls.lock().unwrap()[&Artifact::Blob];
    assert_eq!(calls, 200);
    assert_eq!(c.context_mut().unwrap().next_seq(), 200);
    let key = c
        .request(code::GET, &format!("d/releases/{RELEASE}/key"), b"")
        .await
        .unwrap();
    assert_eq!(
        (key.payload.as_slice(), key.content_format),
        (&b"key"[..], Some(content_format::COSE_KEY))
    );
    assert_eq!(
        c.get(&format!("d/releases/{RELEASE}/envelope"))
            .await
            .unwrap(),
        b"env"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn report_is_recorded_and_internal_errors_stay_inside() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    let body = serde_json::to_vec(&report_body("digest mismatch")).unwrap();
    let r = c.request(code::POST, "d/report", &body).await.unwrap();
    assert_eq!(r.code, code::CHANGED);
    {
        let reports = backend.reports.lock().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].0.as_slice(), DEVICE);
        assert_eq!(reports[0].1.outcome, ReportOutcome::Rejected);
        assert_eq!(
            reports[0].1.check.as_deref(),
            Some("payload-digest-mismatch")
        );
    }
    let body = serde_json::to_vec(&report_body("boom")).unwrap();
    match c.request(code::POST, "d/report", &body).await {
        Err(oscore::Error::Response { code, diagnostic }) => {
            assert_eq!(code, "5.00");
            assert_eq!(
                diagnostic, "internal error",
                "no detail leaks to the device"
            );
        }
        r => panic!("{r:?}"),
    }
    h.stop().await.unwrap();
}

/// A device above its report rate (the default: 10 at once, then one per 10 s) gets 4.29
/// Too Many Requests, and its report reaches neither the decoder nor the backend.
#[tokio::test]
async fn reports_above_the_rate_get_4_29_and_are_not_stored() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    let rate = ReportRate::default();
    let mut codes = Vec::new();
    for i in 0..rate.burst + 3 {
        let body = serde_json::to_vec(&report_body(&format!("report {i}"))).unwrap();
        codes.push(code_of(c.request(code::POST, "d/report", &body).await));
    }
    let burst = rate.burst as usize;
    assert!(codes[..burst].iter().all(|c| c == "2.04"), "{codes:?}");
    assert!(codes[burst..].iter().all(|c| c == "4.29"), "{codes:?}");
    assert_eq!(backend.reports.lock().unwrap().len(), burst);
    // Check-ins are not reports: still served.
    let body = serde_json::to_vec(&checkin_body()).unwrap();
    assert_eq!(
        code_of(c.request(code::POST, "d/checkin", &body).await),
        "2.04"
    );
    h.stop().await.unwrap();
}

/// The generic cell rate algorithm behind [`ReportRate`]: `burst` at once, then one per
/// `interval`, per kid, with the wait until the next one.
#[test]
fn report_rate_is_a_burst_then_one_per_interval() {
    let r = RateLimiter::default();
    let rate = ReportRate {
        burst: 3,
        interval: Duration::from_secs(10),
    };
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(r.check(b"a", rate, t0), Ok(()));
    }
    assert_eq!(r.check(b"a", rate, t0), Err(Duration::from_secs(10)));
    // Another device has its own bucket.
    assert_eq!(r.check(b"b", rate, t0), Ok(()));
    let t = t0 + Duration::from_secs(4);
    assert_eq!(r.check(b"a", rate, t), Err(Duration::from_secs(6)));
    let t = t0 + Duration::from_secs(10);
    assert_eq!(r.check(b"a", rate, t), Ok(()));
    assert!(r.check(b"a", rate, t).is_err());
    // After a long quiet time, the whole burst again (not more).
    let t = t0 + Duration::from_secs(1000);
    for _ in 0..3 {
        assert_eq!(r.check(b"a", rate, t), Ok(()));
    }
    assert!(r.check(b"a", rate, t).is_err());
}

#[tokio::test]
async fn unknown_kid_gets_4_01_until_enrolled_and_after_removal() {
    let (h, set, _backend) = server().await;
    let cfg = ClientConfig {
        ack_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let body = serde_json::to_vec(&checkin_body()).unwrap();
    let mut stranger = Client::connect(h.addr, Some(ctx(9, b"\x22", DISPATCHER)), cfg.clone())
        .await
        .unwrap();
    assert_eq!(
        code_of(stranger.request(code::POST, "d/checkin", &body).await),
        "4.01"
    );
    // Unprotected: 4.01 as well.
    let mut plain = Client::connect(h.addr, None, cfg).await.unwrap();
    assert_eq!(
        code_of(plain.request(code::POST, "d/checkin", &body).await),
        "4.01"
    );
    // Enrolled while running: its context is found, and the backend (which does not know
    // kid 0x22) answers UnknownDevice, also 4.01.
    set.add(ctx(9, DISPATCHER, b"\x22")).unwrap();
    match stranger.request(code::POST, "d/checkin", &body).await {
        Err(oscore::Error::Response { code, diagnostic }) => {
            assert_eq!(
                (code.as_str(), diagnostic.as_str()),
                ("4.01", "unknown device")
            );
        }
        r => panic!("{r:?}"),
    }
    // The enrolled device, removed: refused at the OSCORE layer.
    let mut c = device(h.addr).await;
    assert_eq!(
        code_of(c.request(code::POST, "d/checkin", &body).await),
        "2.04"
    );
    assert_eq!(set.remove(DEVICE), 1);
    assert_eq!(
        code_of(c.request(code::POST, "d/checkin", &body).await),
        "4.01"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn releases_not_offered_unknown_or_malformed() {
    let (h, _set, _backend) = server().await;
    let mut c = device(h.addr).await;
    let mut get = async |path: String| code_of(c.request(code::GET, &path, b"").await);
    assert_eq!(get(format!("d/releases/{OTHER}/blob")).await, "4.03");
    assert_eq!(
        get(format!("d/releases/{}/blob", "c".repeat(64))).await,
        "4.04"
    );
    assert_eq!(get(format!("d/releases/{RELEASE}/manifest")).await, "4.04");
    assert_eq!(
        get(format!("d/releases/{}/blob", "A".repeat(64))).await,
        "4.00"
    );
    assert_eq!(get("d/releases/..%2f/blob".into()).await, "4.00");
    assert_eq!(get("d/elsewhere".into()).await, "4.04");
    assert_eq!(get("d/checkin".into()).await, "4.05");
    assert_eq!(
        code_of(
            c.request(code::PUT, &format!("d/releases/{RELEASE}/blob"), b"x")
                .await
        ),
        "4.05"
    );
    h.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_or_malformed_bodies_are_refused() {
    let (h, _set, backend) = server().await;
    let mut c = device(h.addr).await;
    // 9 KiB: the server refuses the Block1 upload beyond its 8 KiB limit.
    let mut big = checkin_body();
    big["state"]["padding"] = "x".repeat(9 << 10).into();
    let body = serde_json::to_vec(&big).unwrap();
    assert_eq!(
        code_of(c.request(code::POST, "d/checkin", &body).await),
        "4.13"
    );
    match c
        .request(code::POST, "d/checkin", b"{\"coap_port\": ")
        .await
    {
        Err(oscore::Error::Response { code, diagnostic }) => {
            assert_eq!(code, "4.00");
            assert!(diagnostic.starts_with("malformed check-in"), "{diagnostic}");
        }
        r => panic!("{r:?}"),
    }
    let mut bad = checkin_body();
    bad["coap_port"] = 0.into();
    assert_eq!(
        code_of(
            c.request(code::POST, "d/checkin", &serde_json::to_vec(&bad).unwrap())
                .await
        ),
        "4.00"
    );
    // A second "boots" member: JSON parsers differ on which one wins, so none does.
    let dup = String::from_utf8(serde_json::to_vec(&checkin_body()).unwrap())
        .unwrap()
        .replacen('{', "{\"boots\": 1, ", 1);
    match c.request(code::POST, "d/checkin", dup.as_bytes()).await {
        Err(oscore::Error::Response { code, diagnostic }) => {
            assert_eq!(code, "4.00");
            assert!(diagnostic.contains("duplicate field"), "{diagnostic}");
        }
        r => panic!("{r:?}"),
    }
    let mut bad = report_body("x");
    bad["release_id"] = "../../etc".into();
    assert_eq!(
        code_of(
            c.request(code::POST, "d/report", &serde_json::to_vec(&bad).unwrap())
                .await
        ),
        "4.00"
    );
    assert!(backend.checkins.lock().unwrap().is_empty());
    assert!(backend.reports.lock().unwrap().is_empty());
    h.stop().await.unwrap();
}

#[test]
fn error_codes_are_mapped_in_one_place() {
    let codes: Vec<u8> = [
        UplinkError::UnknownDevice,
        UplinkError::NotOffered,
        UplinkError::NotFound,
        UplinkError::Invalid("x".into()),
        UplinkError::Internal("secret detail".into()),
        UplinkError::TooManyRequests { retry_after_s: 9 },
    ]
    .iter()
    .map(|e| e.coap().0)
    .collect();
    assert_eq!(
        codes,
        [
            code::UNAUTHORIZED,
            code::FORBIDDEN,
            code::NOT_FOUND,
            code::BAD_REQUEST,
            code::INTERNAL_SERVER_ERROR,
            code::TOO_MANY_REQUESTS
        ]
    );
    assert!(
        !UplinkError::Internal("secret detail".into())
            .coap()
            .1
            .contains("secret")
    );
}
