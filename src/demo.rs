//! The demo narrative over [`ics_suit::chain`]: every service is a separate process of this
//! executable, on loopback, in a fresh data directory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dispatcher::client::DispatcherClient;
use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Chain, Options, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

use crate::Args;

struct Say {
    quiet: bool,
}

impl Say {
    fn step(&self, msg: &str) {
        if !self.quiet {
            eprintln!("==> {msg}");
        }
    }
    fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("    {msg}");
        }
    }
}

/// Runs the demo; `Ok(true)` when every device was updated.
pub(crate) async fn run(a: Args) -> anyhow::Result<bool> {
    let say = Say { quiet: a.json };
    if a.devices == 0 || a.devices > 10_000 {
        bail!("--devices must be 1..=10000");
    }
    let started = Instant::now();
    let (root, remove_after) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "ics-suit-demo-{}-{}",
                std::process::id(),
                started.elapsed().as_nanos() ^ u128::from(foundations::now_unix())
            )),
            !a.keep_running,
        ),
    };
    if root.join("dispatcher").exists() {
        bail!("{} already holds a demo; use a fresh --dir", root.display());
    }
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    say.step(&format!("data directory {}", root.display()));
    let result = chain(&a, &root, &say, started).await;
    if remove_after && result.is_ok() {
        let _ = std::fs::remove_dir_all(&root);
    } else if result.is_err() {
        eprintln!("logs kept in {}", logs.display());
    }
    result
}

async fn chain(a: &Args, root: &Path, say: &Say, started: Instant) -> anyhow::Result<bool> {
    let c = start_chain(a, root, say).await?;
    let releases = publish_releases(&c, say).await?;
    show_intake(&c, say).await?;
    approve_queue(&c, say).await?;
    say.step("rolling out: canary, then 25%, then everyone, 10 s between batches");
    let finished = follow_rollouts(&c.op, a.json, Duration::from_secs(600)).await?;
    let classes: Vec<(String, &str)> = c
        .devices
        .iter()
        .map(|(n, cl)| {
            (
                n.clone(),
                if cl.to_string() == CLASS_PLC {
                    "plc"
                } else {
                    "hmi"
                },
            )
        })
        .collect();
    let outcome = outcome(&c.op, &classes).await?;
    let all_ok = finished && outcome.iter().all(|d| d["result"] == "ok");
    let elapsed = started.elapsed().as_secs_f64();
    if a.json {
        let rollouts: Value = c.op.get("/v1/rollouts").await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "devices": outcome,
                "releases": releases,
                "rollouts": rollouts["rollouts"],
                "ok": all_ok,
                "elapsed_s": elapsed,
            }))?
        );
    } else {
        print_outcome(&outcome, elapsed);
    }
    if a.keep_running {
        keep_running(&c).await;
    }
    Ok(all_ok)
}

/// Starts the services, then the fleet, and says where they are.
async fn start_chain(a: &Args, root: &Path, say: &Say) -> anyhow::Result<Chain> {
    say.step("starting key repository, update server and dispatcher (each its own process)");
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut c = Chain::start_services(Options::new(exe, root.to_owned())).await?;
    say.info(&format!("key repository  {}", c.kr_url));
    say.info(&format!("update server   {}", c.us_urls[0]));
    say.info(&format!("dispatcher      {} {}", c.api_url, c.coap_uri));

    say.step(&format!(
        "enrolling {} devices (PLCs and HMI panels) and starting them",
        a.devices
    ));
    c.start_fleet(a.devices, |_, _| Ok(())).await?;
    say.info(&format!(
        "{} devices checked in over CoAP + OSCORE",
        a.devices
    ));
    Ok(c)
}

/// Publishes the manufacturer's firmware and the third party's application; their ids.
async fn publish_releases(c: &Chain, say: &Say) -> anyhow::Result<[String; 2]> {
    say.step("publishing releases");
    let fw = params(CLASS_PLC, UpdateType::T2, 2, vec![2, 0, 0])?;
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0])?;
    let fw_id = c
        .publish(
            &c.manufacturer,
            &fw,
            &image(256 * 1024, 1),
            "acme-fw-2.0.0",
            0,
        )
        .await?;
    say.info(&format!(
        "manufacturer firmware   T2 v2.0.0 security CVE-2026-31337  release {}",
        &fw_id[..12]
    ));
    let app_id = c
        .publish(
            &c.third_party,
            &app,
            &image(128 * 1024, 2),
            "hmi-app-1.1.0",
            0,
        )
        .await?;
    say.info(&format!(
        "third-party application T1 v1.1.0                         release {}",
        &app_id[..12]
    ));
    Ok([fw_id, app_id])
}

/// Waits for the dispatcher's intake of both releases and says what its policy decided.
async fn show_intake(c: &Chain, say: &Say) -> anyhow::Result<()> {
    say.step("dispatcher intake: verify, fetch release keys (OAuth), decrypt, apply the policy");
    let v = c.wait_releases(2, Duration::from_secs(90)).await?;
    for r in v["releases"].as_array().into_iter().flatten() {
        for p in r["parts"].as_array().into_iter().flatten() {
            say.info(&format!(
                "{} {}: rule \"{}\" -> {} ({} devices)",
                &r["id"].as_str().unwrap_or_default()[..12],
                r["facts"]["update_type"].as_str().unwrap_or_default(),
                p["rule"].as_str().unwrap_or_default(),
                p["action"].as_str().unwrap_or_default(),
                p["devices"].as_array().map_or(0, Vec::len)
            ));
        }
    }
    Ok(())
}

/// Approves every release that waits for an operator, as an operator would.
async fn approve_queue(c: &Chain, say: &Say) -> anyhow::Result<()> {
    let q: Value = c.op.get("/v1/queue").await?;
    for r in q["queue"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        say.step(&format!(
            "release {} waits for operator approval",
            &id[..12]
        ));
        say.info("an operator would run:");
        say.info(&format!(
            "  dispatcher approve {} --reason \"CVE-2026-31337 fix\" --ignore-window --rollout canary-then-all",
            &id[..12]
        ));
        say.info(
            "(the shipped policy holds firmware for the weekend window; the demo installs now)",
        );
        let _: Value = c
            .op
            .post(
                &format!("/v1/releases/{id}/approve"),
                &json!({"reason": "CVE-2026-31337 fix, approved for the demo", "ignore_window": true, "rollout": "canary-then-all"}),
            )
            .await?;
        say.info("approved: the dispatcher adds its approval signature and starts the rollout");
    }
    Ok(())
}

/// The outcome as a table on stdout.
fn print_outcome(outcome: &[Value], elapsed: f64) {
    println!(
        "\n{:<10} {:<5} {:<14} {:<14} result",
        "device", "class", "version before", "version after"
    );
    for d in outcome {
        println!(
            "{:<10} {:<5} {:<14} {:<14} {}",
            d["id"].as_str().unwrap_or_default(),
            d["class"].as_str().unwrap_or_default(),
            d["version_before"].as_str().unwrap_or_default(),
            d["version_after"].as_str().unwrap_or_default(),
            d["result"].as_str().unwrap_or_default()
        );
    }
    let ok = outcome.iter().filter(|d| d["result"] == "ok").count();
    println!(
        "\n{ok} of {} devices updated in {elapsed:.1} s",
        outcome.len()
    );
}

/// Prints where the services are and how to reach them, then waits until SIGTERM or
/// Ctrl-C (main stops the services then).
async fn keep_running(c: &Chain) {
    let dd = c.dispatcher_dir();
    eprintln!("\nservices are running (Ctrl-C stops them):");
    eprintln!("  key repository   {}", c.kr_url);
    eprintln!("  update server    {}", c.us_urls[0]);
    eprintln!("  dispatcher       {} {}", c.api_url, c.coap_uri);
    eprintln!("  web console      {}/", c.api_url);
    eprintln!(
        "    sign in with the admin token: paste the contents of {}",
        dd.join("admin.token").display()
    );
    eprintln!(
        "    (the certificate is from the dispatcher's own CA {}: accept the browser's warning or trust that CA)",
        dd.join("tls/ca.pem").display()
    );
    eprintln!("  operator credentials for the CLI (admin token in a 0600 file):");
    eprintln!(
        "    export DISPATCHER_URL={} DISPATCHER_CA={} DISPATCHER_TOKEN_FILE={}",
        c.api_url,
        dd.join("tls/ca.pem").display(),
        dd.join("admin.token").display()
    );
    eprintln!("    cargo run --release -- dispatcher devices");
    eprintln!("  logs             {}", c.logs.display());
    std::future::pending::<()>().await;
}

async fn follow_rollouts(
    op: &DispatcherClient,
    quiet: bool,
    limit: Duration,
) -> anyhow::Result<bool> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let mp = MultiProgress::with_draw_target(if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("    {prefix:<22} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let deadline = Instant::now() + limit;
    loop {
        let v: Value = op.get("/v1/rollouts").await?;
        let list = v["rollouts"].as_array().cloned().unwrap_or_default();
        let mut all_settled = !list.is_empty();
        for r in &list {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            let p = &r["progress"];
            let total = p["total"].as_u64().unwrap_or(0);
            let done = p["installed"].as_u64().unwrap_or(0)
                + p["rejected"].as_u64().unwrap_or(0)
                + p["failed"].as_u64().unwrap_or(0);
            let status = r["status"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let bar = bars.entry(id.clone()).or_insert_with(|| {
                let b = mp.add(ProgressBar::new(total));
                b.set_style(style.clone());
                b.set_prefix(format!(
                    "rollout {id} {}",
                    &r["release_id"].as_str().unwrap_or_default()[..8]
                ));
                b
            });
            bar.set_position(done);
            bar.set_message(format!(
                "batch {}/{} {status}{}",
                p["batch"],
                p["batches"],
                r["alert"]
                    .as_str()
                    .map(|a| format!(" ALERT: {a}"))
                    .unwrap_or_default()
            ));
            if matches!(status.as_str(), "running" | "scheduled" | "paused") {
                all_settled = false;
            } else {
                bar.finish();
            }
        }
        if all_settled {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The version each class is updated to in the demo.
fn expected(class: &str) -> &'static str {
    if class == "plc" { "2.0.0" } else { "1.1.0" }
}

async fn outcome(op: &DispatcherClient, classes: &[(String, &str)]) -> anyhow::Result<Vec<Value>> {
    let mut state: std::collections::HashMap<String, Value> = Default::default();
    let list: Value = op.get("/v1/rollouts").await?;
    for r in list["rollouts"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or_default();
        let full: Value = op.get(&format!("/v1/rollouts/{id}")).await?;
        if let Some(m) = full["devices"].as_object() {
            for (dev, st) in m {
                state.insert(dev.clone(), st.clone());
            }
        }
    }
    let devices: Value = op.get("/v1/devices").await?;
    let mut out = Vec::new();
    for (name, class) in classes {
        let d = devices["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["id"] == name.as_str())
            .cloned()
            .unwrap_or_default();
        let result = match state.get(name) {
            None => "failed: not in any rollout".to_owned(),
            Some(st) => match st["state"].as_str().unwrap_or_default() {
                // Installed by the rollout's account, and the device says it runs the new
                // version (from its report or check-in).
                "installed" if d["version"] == expected(class) => "ok".to_owned(),
                "installed" => format!(
                    "failed: rollout says installed, device reports version {}",
                    d["version"].as_str().unwrap_or("?")
                ),
                "rejected" => format!("failed: rejected ({})", st["check"].as_str().unwrap_or("?")),
                "failed" => format!("failed: {}", st["reason"].as_str().unwrap_or("?")),
                other => format!("failed: not finished ({other})"),
            },
        };
        out.push(json!({
            "id": name,
            "class": class,
            "version_before": "1.0.0",
            "version_after": d["version"].as_str().unwrap_or("?"),
            "result": result,
        }));
    }
    Ok(out)
}
