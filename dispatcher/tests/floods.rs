//! Storage that cannot be flooded, and an audit that fails closed (issue 13 item 4 and its
//! "also to close" list), against the real `dispatcher` binary on loopback. Each test is
//! named after its attack or fault and asserts the refusal and that nothing was stored or
//! changed. The test plays the device itself, with the uplink context of a real enrolment.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use oscore::coap_lite::{MessageType, Packet};
use oscore::endpoint::{Exchange, Step};
use oscore::message::{self, code, opt};
use oscore::protect;
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use serde_json::{Value, json};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, SigningKey, UpdateType};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_dispatcher");
const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);

/// Patience for answers that must come; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(30);

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A dispatcher directory made by `dispatcher init` on loopback port 0, with a manufacturer
/// key (for enrolments) and an internal publisher (for uploads) in its trust store, and a
/// policy that holds every release for an operator.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    internal: SigningKey,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let out = Command::new(BIN)
            .args(["init", "--dir", s(&dir)])
            .args(["--listen", "127.0.0.1:0", "--coap-listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let maker = SigningKey::generate(&mut rng()).with_kid(b"acme-fw".to_vec());
        let internal = SigningKey::generate(&mut rng()).with_kid(b"plant-eng".to_vec());
        std::fs::write(
            dir.join("trust.toml"),
            format!(
                "[[key]]\nkid = \"acme-fw\"\nrole = \"manufacturer\"\nvendors = [\"{VENDOR}\"]\npem = \"\"\"{}\"\"\"\n\n\
                 [[key]]\nkid = \"plant-eng\"\nrole = \"internal\"\nvendors = [\"{VENDOR}\"]\npem = \"\"\"{}\"\"\"\n",
                maker.public_key().to_pem(),
                internal.public_key().to_pem()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("policy.toml"), "[defaults]\naction = \"hold\"\n").unwrap();
        Setup {
            _tmp: tmp,
            dir,
            internal,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("dispatcher.toml")
    }

    fn tweak(&self, f: impl FnOnce(&mut dispatcher::config::Config)) {
        let mut cfg = dispatcher::config::Config::load(&self.config()).unwrap();
        f(&mut cfg);
        cfg.save(&self.config()).unwrap();
    }

    fn start(&self) -> Disp {
        let mut child = Command::new(BIN)
            .args(["serve", "--config", s(&self.config())])
            .env("DISPATCHER_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut rd = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut rd, &mut line).unwrap();
        std::thread::spawn(move || std::io::copy(&mut rd, &mut std::io::sink()));
        let mut it = line
            .trim()
            .strip_prefix("dispatcher listening ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .split_whitespace();
        let url = it.next().unwrap().to_owned();
        let coap = it
            .next()
            .unwrap()
            .trim_start_matches("coap://")
            .parse()
            .unwrap();
        let ca = std::fs::read(self.dir.join("tls/ca.pem")).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(PATIENCE)
            .build()
            .unwrap();
        let admin = std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Disp {
            child,
            url,
            coap,
            http,
            admin,
        }
    }

    /// A T1 release of the internal publisher, as `POST /v1/releases` takes it.
    fn upload_body(&self, sequence: u64) -> Value {
        let p = ReleaseParams {
            vendor_id: VENDOR,
            class_id: CLASS,
            device_id: None,
            sequence,
            version: vec![1, 0, sequence as i64],
            requires: None,
            uri: None,
            ics: IcsMetadata::new(UpdateType::T1),
        };
        let image = format!("application build {sequence}").repeat(100);
        let r =
            build_release(&p, image.as_bytes(), b"app-key", &self.internal, &mut rng()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        json!({
            "envelope_b64": b64.encode(&r.envelope),
            "blob_b64": b64.encode(&r.blob),
            "key_b64": b64.encode(r.release_key.to_cose_key()),
        })
    }
}

/// A running `dispatcher serve`; SIGTERM (then SIGKILL) when dropped.
struct Disp {
    child: Child,
    url: String,
    coap: SocketAddr,
    http: reqwest::Client,
    admin: String,
}

impl Drop for Disp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Disp {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// The body of `GET path` as bytes (to measure it).
    async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap().to_vec()
    }

    async fn metric(&self, name: &str) -> u64 {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        r.lines()
            .find_map(|l| l.strip_prefix(&format!("dispatcher_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    async fn enrol(&self, name: &str) -> (u16, Value) {
        self.post(
            "/v1/devices",
            json!({"name": name, "vendor_id": VENDOR, "class_id": CLASS}),
        )
        .await
    }

    /// Stops it gracefully (the store is flushed).
    fn stop(self) {
        drop(self);
    }
}

/// The test in the device's role: the uplink context of its bundle, over one UDP socket.
struct Device {
    ctx: SecurityContext,
    sock: tokio::net::UdpSocket,
    mid: u16,
}

impl Device {
    async fn new(bundle: &Value, dispatcher: SocketAddr) -> Device {
        let u = &bundle["uplink"];
        let h = |k: &str| hex::decode(u[k].as_str().unwrap_or_default()).unwrap();
        let params = ContextParams {
            master_secret: zeroize::Zeroizing::new(h("master_secret_hex")),
            master_salt: h("master_salt_hex"),
            id_context: None,
            sender_id: h("sender_id_hex"),
            recipient_id: h("recipient_id_hex"),
        };
        let ctx = SecurityContext::new(&params, Box::new(MemorySeqStore::new())).unwrap();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(dispatcher).await.unwrap();
        Device { ctx, sock, mid: 0 }
    }

    /// One request, answering the dispatcher's Echo challenges (the first request after an
    /// enrolment or a restart gets one): the inner response.
    async fn request(&mut self, method: u8, path: &str, body: &[u8]) -> Packet {
        let mut req = message::packet(MessageType::Confirmable, method, 0, &[]);
        message::set_path(&mut req, path);
        req.payload = body.to_vec();
        let mut ex = Exchange::new(req);
        loop {
            self.mid = self.mid.wrapping_add(1);
            let outer = ex
                .outgoing(Some(&mut self.ctx), self.mid, &self.mid.to_be_bytes())
                .unwrap();
            self.sock
                .send(&message::encode(&outer, 1500).unwrap())
                .await
                .unwrap();
            let mut buf = vec![0u8; 2048];
            let n = tokio::time::timeout(PATIENCE, self.sock.recv(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            let resp = message::decode(&buf[..n], 1500).unwrap();
            match ex.on_response(Some(&mut self.ctx), &resp).unwrap() {
                Step::Response(p) => return p,
                Step::Echo(v) => ex.answer_echo(v).unwrap(),
                other => panic!("{other:?}"),
            }
        }
    }

    /// `POST d/report` with a report the strict decoder accepts; `n` goes into its message,
    /// padded to about 900 bytes (a single datagram).
    async fn report(&mut self, n: usize) -> Packet {
        let message = format!("flood {n:05} {}", "x".repeat(880));
        let body = serde_json::to_vec(&json!({
            "release_id": null, "outcome": "rejected", "check": "rollback",
            "message": message, "version_before": "1.0.0", "version_after": "1.0.0",
        }))
        .unwrap();
        self.request(code::POST, "d/report", &body).await
    }
}

fn report_number(r: &Value) -> usize {
    r["message"].as_str().unwrap()[6..11].parse().unwrap()
}

/// Attack (issue 13): one device sent 3,000 reports and every one was kept (one device page
/// then returned 5 MB).
///
/// Check: with a burst of 50 reports and one more per day, exactly 50 of 3,000 are taken;
/// the other 2,950 get 4.29 Too Many Requests with Max-Age and no payload, and are neither
/// stored nor counted as received. Of the 50, the newest 20 are kept (retention), the
/// device's record counts all 50 and the 30 dropped, and its page stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_flood_from_one_device_is_bounded() {
    let setup = Setup::new();
    setup.tweak(|c| {
        c.limits.report_burst = 50;
        c.limits.report_interval_secs = 86_400;
        c.limits.reports_per_device = 20;
    });
    let d = setup.start();
    let (st, bundle) = d.enrol("rtu-1").await;
    assert_eq!(st, 201, "{bundle}");
    let mut dev = Device::new(&bundle, d.coap).await;
    let (mut taken, mut refused) = (Vec::new(), 0);
    for n in 0..3_000 {
        let r = dev.report(n).await;
        match message::code_of(&r) {
            code::CHANGED => taken.push(n),
            code::TOO_MANY_REQUESTS => {
                refused += 1;
                assert!(r.payload.is_empty(), "a diagnostic in the 4.29");
                let max_age = message::first(&r, opt::MAX_AGE)
                    .and_then(|v| message::uint_value(v).ok())
                    .expect("Max-Age in the 4.29");
                assert!(max_age > 0);
            }
            c => panic!("report {n}: {}", message::code_string(c)),
        }
    }
    assert_eq!(taken, (0..50).collect::<Vec<_>>());
    assert_eq!(refused, 2_950);
    assert_eq!(d.metric("reports_refused_total").await, 2_950);

    let page = d.get_bytes("/v1/devices/rtu-1").await;
    let v: Value = serde_json::from_slice(&page).unwrap();
    let counts = &v["device"]["reports"];
    assert_eq!(counts["received"], 50, "{counts}");
    assert_eq!(counts["rejected"], 50);
    assert_eq!(counts["dropped"], 30);
    let shown: Vec<usize> = v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(report_number)
        .collect();
    assert_eq!(
        shown,
        (30..50).rev().collect::<Vec<_>>(),
        "the newest 20, newest first"
    );
    assert_eq!(v["reports_next_before"], Value::Null);
    assert!(page.len() < 64 << 10, "device page of {} bytes", page.len());
    // Nothing beyond the 20 is stored: the listing from the start holds the same.
    let (st, all) = d.get("/v1/devices/rtu-1/reports?limit=100").await;
    assert_eq!(st, 200);
    assert_eq!(all["reports"].as_array().unwrap().len(), 20);
}

/// Fault (issue 13): a device page held every report of the device, without bound.
///
/// Check: of 150 reports the newest 100 are kept (the default retention); the device page
/// shows the newest 20 and a cursor; following the cursor pages through exactly the other
/// 80, newest first, each page within its limit, and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_page_is_bounded_and_paged() {
    let setup = Setup::new();
    setup.tweak(|c| {
        c.limits.report_burst = 1_000;
        c.limits.report_interval_secs = 86_400;
    });
    let d = setup.start();
    let (st, bundle) = d.enrol("rtu-2").await;
    assert_eq!(st, 201, "{bundle}");
    let mut dev = Device::new(&bundle, d.coap).await;
    for n in 0..150 {
        assert_eq!(message::code_of(&dev.report(n).await), code::CHANGED);
    }
    let page = d.get_bytes("/v1/devices/rtu-2").await;
    assert!(page.len() < 64 << 10, "device page of {} bytes", page.len());
    let v: Value = serde_json::from_slice(&page).unwrap();
    assert_eq!(v["device"]["reports"]["received"], 150);
    assert_eq!(v["device"]["reports"]["dropped"], 50);
    let mut seen: Vec<usize> = v["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(report_number)
        .collect();
    assert_eq!(seen, (130..150).rev().collect::<Vec<_>>());
    let mut cursor = v["reports_next_before"].as_u64().expect("a cursor");
    let mut pages = 0;
    loop {
        let (st, p) = d
            .get(&format!(
                "/v1/devices/rtu-2/reports?before={cursor}&limit=30"
            ))
            .await;
        assert_eq!(st, 200, "{p}");
        let reports = p["reports"].as_array().unwrap();
        assert!(!reports.is_empty() && reports.len() <= 30);
        let seqs: Vec<u64> = reports.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "not newest first");
        assert!(seqs[0] < cursor);
        seen.extend(reports.iter().map(report_number));
        pages += 1;
        match p["next_before"].as_u64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(pages, 3, "80 reports in pages of 30");
    assert_eq!(seen, (50..150).rev().collect::<Vec<_>>());
    // A limit above the maximum is brought to it.
    let (_, p) = d.get("/v1/devices/rtu-2/reports?limit=100000").await;
    assert_eq!(p["reports"].as_array().unwrap().len(), 100);
    let (st, _) = d.get("/v1/devices/nobody/reports").await;
    assert_eq!(st, 404);
}

fn is_cannot_audit(status: u16, body: &Value) -> bool {
    status == 500
        && body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/cannot-audit"))
}

fn part_state(release: &Value) -> String {
    release["parts"][0]["state"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Fault (issue 13): the dispatcher's audit failed open — an operation whose audit record
/// could not be written still happened.
///
/// The audit store is made to fail by a real mechanism: the dispatcher keeps a reserve of
/// free space for its audit log (`limits.audit_min_free_mib`), and is restarted with a
/// reserve larger than the disk, i.e. an audit store that is full. Check: an approval, a
/// rejection, a pause, an enrolment, an upload and both reloads each answer 500
/// `cannot-audit`, and nothing changed: no rollout, the release still pending without an
/// approved envelope, the rollout still scheduled, no device record or context files, no
/// release, the old policy, no new audit record. With the reserve back, the same approval
/// goes through (the refusal was the audit's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_that_cannot_be_audited_is_refused() {
    let setup = Setup::new();
    let d = setup.start();
    assert_eq!(d.enrol("plc-1").await.0, 201);
    let (st, a) = d.post("/v1/releases", setup.upload_body(2)).await;
    assert_eq!(st, 201, "{a}");
    let (st, b) = d.post("/v1/releases", setup.upload_body(3)).await;
    assert_eq!(st, 201, "{b}");
    let (rid_a, rid_b) = (
        a["release_id"].as_str().unwrap().to_owned(),
        b["release_id"].as_str().unwrap().to_owned(),
    );
    // Release A is approved for a start a year from now: a scheduled rollout to control.
    let later = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let (st, r) = d
        .post(
            &format!("/v1/releases/{rid_a}/approve"),
            json!({"reason": "next year", "at": later}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let rollout = r["parts"][0]["state"]["rollout"]
        .as_str()
        .unwrap()
        .to_owned();
    d.stop();

    // The audit store is full.
    setup.tweak(|c| c.limits.audit_min_free_mib = 1 << 40);
    let d = setup.start();
    let (_, before) = d.get("/v1/audit/verify").await;
    let records_before = before["records"].as_u64().unwrap();
    let failures_before = d.metric("audit_failures_total").await;

    let (st, p) = d
        .post(
            &format!("/v1/releases/{rid_b}/approve"),
            json!({"reason": "fix"}),
        )
        .await;
    assert!(is_cannot_audit(st, &p), "approve: {st} {p}");
    let (st, p) = d
        .post(
            &format!("/v1/releases/{rid_b}/reject"),
            json!({"reason": "no"}),
        )
        .await;
    assert!(is_cannot_audit(st, &p), "reject: {st} {p}");
    let (st, p) = d
        .post(
            &format!("/v1/rollouts/{rollout}/pause"),
            json!({"reason": "line stop"}),
        )
        .await;
    assert!(is_cannot_audit(st, &p), "pause: {st} {p}");
    let (st, p) = d.enrol("plc-2").await;
    assert!(is_cannot_audit(st, &p), "enrol: {st} {p}");
    let (st, p) = d.post("/v1/releases", setup.upload_body(4)).await;
    assert!(is_cannot_audit(st, &p), "upload: {st} {p}");
    std::fs::write(
        setup.dir.join("policy.toml"),
        "[defaults]\naction = \"install\"\n",
    )
    .unwrap();
    let (st, p) = d.post("/v1/policy/reload", json!({})).await;
    assert!(is_cannot_audit(st, &p), "reload-policy: {st} {p}");
    let (st, p) = d.post("/v1/trust/reload", json!({})).await;
    assert!(is_cannot_audit(st, &p), "reload-trust: {st} {p}");

    // Nothing changed.
    let (_, rel) = d.get(&format!("/v1/releases/{rid_b}")).await;
    assert_eq!(part_state(&rel), "pending", "{rel}");
    assert_eq!(rel["approval_signature"], false);
    assert!(
        !setup
            .dir
            .join(format!("data/releases/{rid_b}/approved.suit"))
            .exists()
    );
    let (_, ro) = d.get("/v1/rollouts").await;
    let ro = ro["rollouts"].as_array().unwrap().clone();
    assert_eq!(ro.len(), 1, "{ro:?}");
    assert_eq!(ro[0]["status"]["status"], "scheduled", "{ro:?}");
    assert_eq!(d.get("/v1/devices/plc-2").await.0, 404);
    assert!(!setup.dir.join("data/devices/plc-2").exists());
    let (_, all) = d.get("/v1/releases").await;
    assert_eq!(all["releases"].as_array().unwrap().len(), 2);
    let (_, pol) = d.get("/v1/policy").await;
    assert_eq!(pol["default"]["action"], "hold", "{pol}");
    let (_, after) = d.get("/v1/audit/verify").await;
    assert_eq!(after["intact"], true);
    assert_eq!(after["records"].as_u64().unwrap(), records_before);
    assert!(d.metric("audit_failures_total").await >= failures_before + 7);
    d.stop();

    // The reserve back: the same approval is made, and audited.
    std::fs::write(
        setup.dir.join("policy.toml"),
        "[defaults]\naction = \"hold\"\n",
    )
    .unwrap();
    setup.tweak(|c| c.limits.audit_min_free_mib = 0);
    let d = setup.start();
    let (st, r) = d
        .post(
            &format!("/v1/releases/{rid_b}/approve"),
            json!({"reason": "fix"}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (_, ro) = d.get("/v1/rollouts").await;
    assert_eq!(ro["rollouts"].as_array().unwrap().len(), 2);
    let (_, log) = d.get(&format!("/v1/audit?from={records_before}")).await;
    let actions: Vec<&str> = log["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["release.approve"]);
}

/// Attack (issue 13): the dispatcher's CoAP port as a reflector: a 4-byte request from a
/// forged source got 22 bytes back (5.5 times).
///
/// Check: no answer is larger than its datagram; the 4-byte GET is answered (4.01 within
/// 4 bytes), so what is measured is not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_error_reply_is_not_larger_than_request() {
    let setup = Setup::new();
    let d = setup.start();
    let (st, bundle) = d.enrol("rtu-3").await;
    assert_eq!(st, 201);
    let kid = hex::decode(bundle["uplink"]["sender_id_hex"].as_str().unwrap()).unwrap();
    let datagrams = oscore::corpus::hostile_datagrams(&kid);
    let replies = oscore::corpus::reflect(d.coap, &datagrams).await;
    for (q, r) in datagrams.iter().zip(&replies) {
        if let Some(r) = r {
            assert!(
                r.len() <= q.len(),
                "{} bytes ({}) answered with {} ({})",
                q.len(),
                hex::encode(q),
                r.len(),
                hex::encode(r)
            );
        }
    }
    let first = replies[0].as_ref().expect("the 4-byte GET is answered");
    assert_eq!(first[1], code::UNAUTHORIZED);
    assert!(replies.iter().filter(|r| r.is_some()).count() > 10);
}

/// Attack (issue 13, RFC 9175 §2.4): after a restart the dispatcher answers the first
/// request of each device with an Echo challenge (about 40 bytes), whatever the request;
/// replayed from a victim's address, a small recorded request would be answered with more.
///
/// Check: a small protected request (an empty report, unpadded) to a dispatcher whose
/// window for the device is lost gets an unprotected 4.01 no larger than itself, and is
/// not acted on; the same request padded as our client does gets the challenge, within its
/// size, and the exchange completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_challenge_needs_a_request_as_large() {
    let setup = Setup::new();
    let d = setup.start();
    let (st, bundle) = d.enrol("rtu-4").await;
    assert_eq!(st, 201);
    let mut dev = Device::new(&bundle, d.coap).await;
    let mut small = message::packet(MessageType::Confirmable, code::POST, 1, b"t");
    message::set_path(&mut small, "d/report");
    let (outer, _) = protect::protect_request(&mut dev.ctx, &small).unwrap();
    let bytes = message::encode(&outer, 1500).unwrap();
    dev.sock.send(&bytes).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(PATIENCE, dev.sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n <= bytes.len(), "{n} bytes answered to {}", bytes.len());
    let resp = message::decode(&buf[..n], 1500).unwrap();
    assert_eq!(message::code_of(&resp), code::UNAUTHORIZED);
    assert!(protect::oscore_option(&resp).unwrap().is_none());
    // Padded (our client): challenged within the request's size, then answered. The empty
    // report does not decode: 4.00 from the handler, which proves it was reached.
    dev.mid = 10;
    let r = dev.request(code::POST, "d/report", &[]).await;
    assert_eq!(message::code_of(&r), code::BAD_REQUEST);
    let (_, v) = d.get("/v1/devices/rtu-4").await;
    assert_eq!(v["device"]["reports"]["received"], 0);
}
