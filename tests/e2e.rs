//! End-to-end tests of the whole chain with the real processes (key repository, update
//! server(s), dispatcher, device fleet), each started from the `ics-suit` executable on
//! loopback: the functional flows and the faults (crashes, lossy links, failing
//! self-tests, a server down). Attacks are in the attack suite (`tests/attacks/`).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Chain, Options, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

const EXE: &str = env!("CARGO_BIN_EXE_ics-suit");

fn opts(dir: &Path) -> Options {
    Options::new(EXE.into(), dir.to_owned())
}

/// A policy for tests: T1 installs at once in small batches, T2 is held.
fn policy(batches: &str, pause: &str, threshold: &str, window: Option<&str>) -> String {
    let (wdef, wref) = match window {
        Some(sched) => (
            format!(
                "[[window]]\nname = \"sunday\"\nschedule = \"{sched}\"\nduration = \"1h\"\ntimezone = \"UTC\"\n\n"
            ),
            "window = \"sunday\"\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "[defaults]\naction = \"hold\"\n\n{wdef}[[rollout]]\nname = \"test\"\nbatches = [{batches}]\npause = \"{pause}\"\nfailure_threshold = \"{threshold}\"\n\n\
         [[rule]]\nname = \"apps\"\nmatch = {{ type = [\"T1\"] }}\naction = \"install\"\nrollout = \"test\"\n{wref}\n\
         [[rule]]\nname = \"firmware\"\nmatch = {{ type = [\"T2\", \"T3\"] }}\naction = \"hold\"\nrollout = \"test\"\n"
    )
}

async fn rollout(c: &Chain, id: &str) -> Value {
    c.op.get(&format!("/v1/rollouts/{id}")).await.unwrap()
}

async fn device_versions(c: &Chain) -> Vec<(String, String)> {
    let v: Value = c.op.get("/v1/devices").await.unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn audit_actions(c: &Chain) -> Vec<Value> {
    let v: Value = c.op.get("/v1/audit?limit=1000").await.unwrap();
    v["records"].as_array().unwrap().clone()
}

/// The demo as a new user runs it: every device updated, firmware on PLCs, the application
/// on HMIs, and the JSON outcome in the documented shape.
#[test]
fn demo_flow_updates_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(EXE)
        .args(["--devices", "6", "--json", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 6);
    for d in devices {
        assert_eq!(d["result"], "ok", "{d}");
        assert_eq!(d["version_before"], "1.0.0");
        let want = if d["id"].as_str().unwrap().starts_with("plc") {
            "2.0.0"
        } else {
            "1.1.0"
        };
        assert_eq!(d["version_after"], want, "{d}");
    }
}

/// Fault: devices whose new image fails its self-test (they revert). Check: the rollout's
/// failure threshold halts it after the first batch, raises an alert, and the devices of
/// later batches are never sent the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_halts_at_its_failure_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.policy = Some(policy("\"2\", \"100%\"", "1s", "1", None));
    let mut c = Chain::start_services(o).await.unwrap();
    // 10 devices: 5 HMIs (odd indices), every one of them fails its self-test.
    c.start_fleet(10, |i, d| {
        if i % 2 == 1 {
            std::fs::write(d.join("faults.json"), br#"{"self_test_fails": true}"#)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    c.publish(&c.third_party, &app, &image(8192, 5), "app-halt", 0)
        .await
        .unwrap();
    let v = c
        .wait_rollouts_settled(Duration::from_secs(120))
        .await
        .unwrap();
    let r = &v["rollouts"][0];
    assert_eq!(r["status"]["status"], "halted", "{v}");
    assert!(r["alert"].as_str().is_some(), "{v}");
    let p = &r["progress"];
    assert_eq!(p["installed"], 0);
    assert!(p["failed"].as_u64().unwrap() >= 1);
    // The second batch (3 devices) was never sent anything.
    let full = rollout(&c, r["id"].as_str().unwrap()).await;
    let waiting = full["devices"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["state"] == "waiting")
        .count();
    assert_eq!(waiting, 3, "{full}");
    for (name, v) in device_versions(&c).await {
        assert_eq!(v, "1.0.0", "{name} changed version");
    }
    let audit = audit_actions(&c).await;
    assert!(audit.iter().any(|r| r["action"] == "rollout.halt"));
    let metrics = c.op.get_text("/metrics").await.unwrap();
    assert!(metrics.contains("dispatcher_alerts_total 1"), "{metrics}");
}

/// Fault: an update outside the maintenance window. Check: the rollout is scheduled for the
/// window's next opening and no device is touched until the (injected) clock reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_window_defers_installation_until_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.injectable_clock = true;
    o.policy = Some(policy("\"100%\"", "0s", "50%", Some("0 3 * * SUN")));
    let mut c = Chain::start_services(o).await.unwrap();
    // Monday noon.
    let _: Value =
        c.op.put("/v1/clock", &json!({"now": "2026-11-23T12:00:00Z"}))
            .await
            .unwrap();
    c.start_fleet(4, |_, _| Ok(())).await.unwrap();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    c.publish(&c.third_party, &app, &image(8192, 6), "app-window", 0)
        .await
        .unwrap();
    c.wait_releases(1, Duration::from_secs(60)).await.unwrap();
    let v: Value = c.op.get("/v1/rollouts").await.unwrap();
    let r = &v["rollouts"][0];
    assert_eq!(r["status"]["status"], "scheduled", "{v}");
    assert_eq!(r["not_before"], "2026-11-29T03:00:00Z", "{v}");
    // Time passes inside the process but not on the injected clock: nothing moves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_, ver) in device_versions(&c).await {
        assert_eq!(ver, "1.0.0");
    }
    // Sunday 03:10: the window is open.
    let _: Value =
        c.op.put("/v1/clock", &json!({"now": "2026-11-29T03:10:00Z"}))
            .await
            .unwrap();
    let v = c
        .wait_rollouts_settled(Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(v["rollouts"][0]["status"]["status"], "completed", "{v}");
    for (name, ver) in device_versions(&c).await {
        let want = if name.starts_with("hmi") {
            "1.1.0"
        } else {
            "1.0.0"
        };
        assert_eq!(ver, want, "{name}");
    }
}

/// Fault: the dispatcher is killed (SIGKILL) in the middle of a rollout and just after an
/// approval. Check: state in sled; after a restart the approval is still there, the
/// rollout continues where it was, and no device installs a release twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_killed_mid_rollout_resumes_without_double_installs() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.policy = Some(policy("\"1\", \"50%\", \"100%\"", "3s", "50%", None));
    let mut c = Chain::start_services(o).await.unwrap();
    c.start_fleet(12, |_, _| Ok(())).await.unwrap();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    c.publish(&c.third_party, &app, &image(64 * 1024, 7), "app-crash", 0)
        .await
        .unwrap();
    // Wait for the canary, then kill the dispatcher during the pause.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = c.op.get("/v1/rollouts").await.unwrap();
        if v["rollouts"][0]["progress"]["installed"]
            .as_u64()
            .unwrap_or(0)
            >= 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "canary never installed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.kill_dispatcher();
    // Firmware approved, then killed at once: the approval must survive.
    c.start_dispatcher().unwrap();
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    let fw_id = c
        .publish(&c.manufacturer, &fw, &image(4096, 8), "fw-crash", 0)
        .await
        .unwrap();
    c.wait_releases(2, Duration::from_secs(60)).await.unwrap();
    let _: Value =
        c.op.post(
            &format!("/v1/releases/{fw_id}/approve"),
            &json!({"reason": "approved before the crash", "ignore_window": true}),
        )
        .await
        .unwrap();
    c.kill_dispatcher();
    c.start_dispatcher().unwrap();
    let r: Value = c.op.get(&format!("/v1/releases/{fw_id}")).await.unwrap();
    assert_eq!(r["parts"][0]["state"]["state"], "approved", "{r}");
    assert_eq!(
        r["parts"][0]["state"]["decision"]["reason"],
        "approved before the crash"
    );
    let v = c
        .wait_rollouts_settled(Duration::from_secs(180))
        .await
        .unwrap();
    for r in v["rollouts"].as_array().unwrap() {
        assert_eq!(r["status"]["status"], "completed", "{v}");
    }
    // Every device installed exactly once.
    for i in 0..12 {
        let log = std::fs::read_to_string(c.devices_dir().join(format!("dev-{i:04}/install.log")))
            .unwrap_or_default();
        let installs = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "install" && e["report"]["outcome"] == "installed")
            .count();
        assert_eq!(installs, 1, "dev-{i:04} installed {installs} times:\n{log}");
    }
}

/// Fault: the primary update server is down. Check: the dispatcher fails over to the next
/// URL of the group (the mirror) and takes in the release from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_server_down_mirror_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.mirror = true;
    o.poll_interval_secs = 3600;
    let mut c = Chain::start_services(o).await.unwrap();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    c.stop_update_server(0);
    // Only the mirror has it: the dispatcher can only learn of it by failing over.
    let id = c
        .publish(&c.third_party, &app, &image(4096, 9), "app-mirror", 1)
        .await
        .unwrap();
    let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
    assert_eq!(report["used"], json!([c.us_urls[1]]), "{report}");
    assert_eq!(
        report["unreachable"][0][0],
        c.us_urls[0].as_str(),
        "{report}"
    );
    let v = c.wait_releases(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(v["releases"][0]["id"], id.as_str());
    assert_eq!(v["releases"][0]["source"], c.us_urls[1].as_str());
}

fn cli(c: &Chain, token: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(EXE);
    cmd.arg("dispatcher").args(args);
    for (k, v) in c.cli_env(token) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Attacks: acting without a token, a viewer approving, approving without a reason, editing
/// the audit log. Checks: bearer tokens with roles on every route; a reason on every
/// decision; the approval signature exists only after an approval; the HMAC chain of the
/// audit log (`dispatcher audit-verify`) finds an edited record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_roles_are_enforced_and_decisions_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::start_services(opts(dir.path())).await.unwrap();
    let cfg = c.dispatcher_dir().join("dispatcher.toml");
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let viewer = dir.path().join("viewer.token");
    let alice = dir.path().join("alice.token");
    for (name, role, file) in [("victor", "viewer", &viewer), ("alice", "operator", &alice)] {
        let o = cli(
            &c,
            &viewer,
            &[
                "add-operator",
                "--config",
                &cfg_s,
                "--name",
                name,
                "--role",
                role,
                "--token-out",
                file.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Operators are read at start.
    c.stop_dispatcher();
    c.start_dispatcher().unwrap();
    c.start_fleet(2, |_, _| Ok(())).await.unwrap();
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    let id = c
        .publish(&c.manufacturer, &fw, &image(4096, 10), "fw-roles", 0)
        .await
        .unwrap();
    c.wait_releases(1, Duration::from_secs(60)).await.unwrap();
    let approved = c
        .dispatcher_dir()
        .join(format!("data/releases/{id}/approved.suit"));
    assert!(
        !approved.exists(),
        "an approval signature exists before any approval"
    );

    // No token, a wrong token: 401.
    let anon = dispatcher::client::DispatcherClient::new(
        &c.api_url,
        Some(&std::fs::read(c.dispatcher_dir().join("tls/ca.pem")).unwrap()),
        "dop_not-a-token",
    )
    .unwrap();
    let e = anon.get::<Value>("/v1/releases").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    // A viewer reads but cannot approve (exit 1: refused).
    let o = cli(&c, &viewer, &["queue"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id[..12]));
    let o = cli(
        &c,
        &viewer,
        &["approve", &id[..12], "--reason", "looks fine"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // An operator must give a reason.
    let o = cli(&c, &alice, &["approve", &id[..12], "--reason", " "]);
    assert_eq!(o.status.code(), Some(1));
    let o = cli(
        &c,
        &alice,
        &[
            "approve",
            &id[..12],
            "--reason",
            "CVE fix, change 4711",
            "--ignore-window",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        approved.exists(),
        "no approval signature after the approval"
    );
    let audit = audit_actions(&c).await;
    let rec = audit
        .iter()
        .find(|r| r["action"] == "release.approve")
        .unwrap_or_else(|| panic!("no approval in {audit:?}"));
    assert_eq!(rec["actor"], "alice");
    assert_eq!(rec["reason"], "CVE fix, change 4711");
    assert_eq!(rec["target"], id.as_str());
    c.wait_rollouts_settled(Duration::from_secs(120))
        .await
        .unwrap();

    // The chain verifies; an edited record is found.
    c.stop_dispatcher();
    let o = cli(&c, &alice, &["audit-verify", "--config", &cfg_s]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    {
        let db = sled::open(c.dispatcher_dir().join("data/db")).unwrap();
        let tree = db.open_tree("audit").unwrap();
        let (k, v) = tree
            .iter()
            .map(|r| r.unwrap())
            .find(|(_, v)| String::from_utf8_lossy(v).contains("CVE fix, change 4711"))
            .unwrap();
        let edited =
            String::from_utf8_lossy(&v).replace("CVE fix, change 4711", "CVE fix, change 4712");
        tree.insert(k, edited.into_bytes()).unwrap();
        db.flush().unwrap();
    }
    let o = cli(&c, &alice, &["audit-verify", "--config", &cfg_s]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("BROKEN"));
}

/// The internal publisher (A1) uploads a T1 release straight to the dispatcher; it installs
/// by policy. Attacks: an internal key signing firmware (T2), and a third party trying the
/// direct upload path. Checks: role rules at intake; direct uploads only for internal T1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_publisher_uploads_t1_directly() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::start_services(opts(dir.path())).await.unwrap();
    c.start_fleet(4, |_, _| Ok(())).await.unwrap();
    let token = c.dispatcher_dir().join("admin.token");
    let write = |name: &str,
                 signer: &suit::SigningKey,
                 t: UpdateType,
                 class: &str,
                 version: Vec<i64>| {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let p = params(class, t, 2, version).unwrap();
        let b =
            suit::release::build_release(&p, &image(8192, 11), name.as_bytes(), signer, &mut rng)
                .unwrap();
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("envelope.suit"), &b.envelope).unwrap();
        std::fs::write(d.join("payload.enc"), &b.blob).unwrap();
        std::fs::write(d.join("release-key.cbor"), &*b.release_key.to_cose_key()).unwrap();
        d
    };
    let upload = |d: &Path| {
        let s = |n: &str| d.join(n).to_str().unwrap().to_owned();
        cli(
            &c,
            &token,
            &[
                "upload",
                "--envelope",
                &s("envelope.suit"),
                "--blob",
                &s("payload.enc"),
                "--key",
                &s("release-key.cbor"),
            ],
        )
    };
    let app = write(
        "eng-app-1.2.0",
        &c.internal,
        UpdateType::T1,
        CLASS_HMI,
        vec![1, 2, 0],
    );
    let o = upload(&app);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"], "created");
    assert_eq!(v["release"]["source"], "upload:admin");
    let fw = write(
        "eng-fw",
        &c.internal,
        UpdateType::T2,
        CLASS_PLC,
        vec![9, 0, 0],
    );
    let o = upload(&fw);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("422"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tp = write(
        "tp-direct",
        &c.third_party.key,
        UpdateType::T1,
        CLASS_HMI,
        vec![1, 3, 0],
    );
    let o = upload(&tp);
    assert_eq!(o.status.code(), Some(1));
    let v = c
        .wait_rollouts_settled(Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(v["rollouts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["rollouts"][0]["status"]["status"], "completed", "{v}");
    for (name, ver) in device_versions(&c).await {
        let want = if name.starts_with("hmi") {
            "1.2.0"
        } else {
            "1.0.0"
        };
        assert_eq!(ver, want, "{name}");
    }
    let audit = audit_actions(&c).await;
    let refused: Vec<&str> = audit
        .iter()
        .filter(|r| r["action"] == "release.refuse")
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert!(
        refused.contains(&"refused:signer-not-authorized"),
        "{refused:?}"
    );
    assert!(
        refused.contains(&"refused:direct-upload-not-allowed"),
        "{refused:?}"
    );
}

/// Fault: every device sits behind a lossy, slow link (10 % of datagrams dropped in each
/// direction, 5 ms delay). Check: CoAP retransmission and block-wise resumption carry the
/// pushes, check-ins and reports; the rollout completes with every device updated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_completes_over_lossy_links() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.policy = Some(policy("\"100%\"", "0s", "100%", None));
    o.fleet_args = vec![
        "--loss-percent".into(),
        "10".into(),
        "--delay-ms".into(),
        "5".into(),
    ];
    let mut c = Chain::start_services(o).await.unwrap();
    c.start_fleet(4, |_, _| Ok(())).await.unwrap();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    c.publish(&c.third_party, &app, &image(16 * 1024, 12), "app-lossy", 0)
        .await
        .unwrap();
    let v = c
        .wait_rollouts_settled(Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(v["rollouts"][0]["status"]["status"], "completed", "{v}");
    assert_eq!(v["rollouts"][0]["progress"]["installed"], 2, "{v}");
    for (name, ver) in device_versions(&c).await {
        let want = if name.starts_with("hmi") {
            "1.1.0"
        } else {
            "1.0.0"
        };
        assert_eq!(ver, want, "{name}");
    }
}
