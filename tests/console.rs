//! The operator web console in a real browser (headless Chromium driven by playwright-core,
//! `tests/browser/console.mjs`) against a real chain: key repository, update server,
//! dispatcher and four simulated devices, each its own process. An admin signs in, finds
//! the held firmware, approves it with a reason, watches the rollout reach every PLC, finds
//! the approval in the audit log; a viewer finds no approve button and the API refuses its
//! approval. Screenshots of every page go to `CARGO_TARGET_TMPDIR/console-screenshots`.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`), Node and `tests/browser/node_modules`
//! (`scripts/peers/browser.sh` installs them). Without them the test fails when `CI` is set
//! and is skipped (with a message) otherwise.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ics_suit::chain::{CLASS_PLC, Chain, Options, image, params};
use serde_json::Value;
use suit::UpdateType;

const EXE: &str = env!("CARGO_BIN_EXE_ics-suit");

/// Why the browser test cannot run here, if it cannot.
fn missing_peer(browser_dir: &Path, chromium: &Path) -> Option<String> {
    if !chromium.exists() {
        return Some(format!("{} is missing", chromium.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Some(format!(
            "{}/node_modules/playwright-core is missing",
            browser_dir.display()
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_approves_in_the_web_console_and_a_viewer_cannot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    if let Some(why) = missing_peer(&browser_dir, &chromium) {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "CI is set but the browser peer is missing ({why}): run scripts/setup-peers.sh"
        );
        eprintln!("SKIPPED: {why}; run scripts/peers/browser.sh to install the browser test");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Chain::start_services(Options::new(EXE.into(), dir.path().to_owned()))
        .await
        .unwrap();

    // A viewer besides the admin (operators are read at start: restart the dispatcher).
    let viewer = dir.path().join("viewer.token");
    let cfg = c.dispatcher_dir().join("dispatcher.toml");
    let o = Command::new(EXE)
        .args(["dispatcher", "add-operator", "--config"])
        .arg(&cfg)
        .args(["--name", "victor", "--role", "viewer", "--token-out"])
        .arg(&viewer)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.stop_dispatcher();
    c.start_dispatcher().unwrap();
    c.start_fleet(4, |_, _| Ok(())).await.unwrap();

    // Two firmware releases for the PLCs, both held by the shipped plant policy: the admin
    // approves the first, the second stays for the viewer to (fail to) approve.
    let fw2 = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0]).unwrap();
    let release = c
        .publish(&c.manufacturer, &fw2, &image(8192, 2), "fw-console-2", 0)
        .await
        .unwrap();
    let fw3 = params(CLASS_PLC, UpdateType::T2, 3, vec![3, 0, 0]).unwrap();
    let held = c
        .publish(&c.manufacturer, &fw3, &image(8192, 3), "fw-console-3", 0)
        .await
        .unwrap();
    c.wait_releases(2, Duration::from_secs(60)).await.unwrap();
    let queue: Value = c.op.get("/v1/queue").await.unwrap();
    assert_eq!(queue["queue"].as_array().unwrap().len(), 2, "{queue}");
    let plcs = c
        .devices
        .iter()
        .filter(|(n, _)| n.starts_with("plc-"))
        .count();
    let setup = started.elapsed();

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::task::spawn_blocking({
        let mut cmd = Command::new("node");
        cmd.arg(browser_dir.join("console.mjs"))
            .current_dir(&browser_dir)
            .env("CONSOLE_URL", format!("{}/", c.api_url))
            .env("ADMIN_TOKEN_FILE", c.dispatcher_dir().join("admin.token"))
            .env("VIEWER_TOKEN_FILE", &viewer)
            .env("RELEASE_ID", &release)
            .env("HELD_ID", &held)
            .env("DEVICES", plcs.to_string())
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM", &chromium);
        move || cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed (logs in {}):\n{stdout}\n{stderr}",
        c.logs.display()
    );

    // What the browser did is what the dispatcher recorded.
    let r: Value = c.op.get(&format!("/v1/releases/{release}")).await.unwrap();
    assert_eq!(r["approval_signature"], true, "{r}");
    let h: Value = c.op.get(&format!("/v1/releases/{held}")).await.unwrap();
    assert_eq!(h["parts"][0]["state"]["state"], "pending", "{h}");
    assert_eq!(h["approval_signature"], false, "{h}");
    let audit: Value = c.op.get("/v1/audit?limit=1000").await.unwrap();
    let approvals: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "release.approve")
        .collect();
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["actor"], "admin");
    assert_eq!(approvals[0]["target"], release.as_str());
    assert!(
        approvals[0]["reason"]
            .as_str()
            .unwrap()
            .contains("change request 4711")
    );
    let m = c.op.get_text("/metrics").await.unwrap();
    assert!(
        m.lines()
            .any(|l| l.starts_with("dispatcher_auth_failures_total ") && !l.ends_with(" 0")),
        "the viewer's refused approval is not counted"
    );
    for name in [
        "00-overview",
        "01-sign-in",
        "02-approval-queue",
        "02-approve-form",
        "03-rollout",
        "04-devices",
        "05-device-history",
        "06-audit",
        "07-viewer-queue",
    ] {
        let p = shots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "no screenshot {}",
            p.display()
        );
    }
    eprintln!(
        "console test: chain and fleet up in {:.1} s, browser steps {:.1} s; screenshots in {}",
        setup.as_secs_f64(),
        (started.elapsed() - setup).as_secs_f64(),
        shots.display()
    );
}
