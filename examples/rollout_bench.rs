//! The rollout benchmark behind `bench/rollout.sh`: the whole chain on loopback (real
//! processes), one T1 release of `--size` bytes rolled out to `--devices` simulated devices
//! (one fleet process) in a single batch. Prints machine-readable `key=value` lines: devices
//! per second, total time (from the rollout's creation to its last device), and the
//! dispatcher's CPU time and peak resident memory, read from /proc; its CPU per second while
//! the fleet only checks in, and the rollout's own CPU per device (less that idle rate).
#![allow(clippy::unwrap_used)] // a benchmark driver: a panic is the failure report

use std::time::{Duration, Instant};

use ics_suit::chain::{CLASS_HMI, Chain, Options, image, params};
use serde_json::Value;
use suit::UpdateType;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// (utime + stime) in seconds and VmHWM in KiB of a process.
fn proc_stats(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let devices = arg("--devices", 1000);
    let size = arg("--size", 1 << 20);
    let exe = arg_str("--exe").expect("--exe PATH of the ics-suit binary");
    let root = tempfile::tempdir().unwrap();
    let mut o = Options::new(exe.into(), root.path().to_owned());
    o.poll_interval_secs = 1;
    o.policy = Some(
        "[defaults]\naction = \"hold\"\n\n[[rollout]]\nname = \"all\"\nbatches = [\"100%\"]\npause = \"0s\"\nfailure_threshold = \"100%\"\n\n\
         [[rule]]\nname = \"apps\"\nmatch = { type = [\"T1\"] }\naction = \"install\"\nrollout = \"all\"\n"
            .into(),
    );
    let mut c = Chain::start_services(o).await.unwrap();
    let t = Instant::now();
    c.start_fleet_of(devices, Some(true), |_, _| Ok(()))
        .await
        .unwrap();
    eprintln!(
        "{devices} devices enrolled and checked in after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let pid = c.dispatcher_pid().unwrap();
    // What the fleet costs the dispatcher while nothing is rolled out (check-ins, every
    // 10 s per device): measured over 10 s, so the rollout's own cost can be told apart.
    let idle_window = Duration::from_secs(10);
    let (idle0, _) = proc_stats(pid);
    tokio::time::sleep(idle_window).await;
    let (cpu0, _) = proc_stats(pid);
    let idle_per_s = (cpu0 - idle0) / idle_window.as_secs_f64();
    let app = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 1, 0]).unwrap();
    let t0 = Instant::now();
    c.publish(&c.third_party, &app, &image(size, 42), "bench-app", 0)
        .await
        .unwrap();
    // Wait for the rollout to exist, then to settle.
    let mut created = None;
    let v = loop {
        let v: Value = c.op.get("/v1/rollouts").await.unwrap();
        if let Some(r) = v["rollouts"].as_array().and_then(|a| a.first()) {
            created.get_or_insert_with(Instant::now);
            let st = r["status"]["status"].as_str().unwrap_or_default();
            if !matches!(st, "running" | "scheduled" | "paused") {
                break v;
            }
            let p = &r["progress"];
            eprint!("\r  installed {}/{}   ", p["installed"], p["total"]);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3600),
            "rollout did not finish within an hour"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let total = created.unwrap().elapsed().as_secs_f64();
    let (cpu1, hwm) = proc_stats(pid);
    eprintln!();
    let p = &v["rollouts"][0]["progress"];
    let installed = p["installed"].as_u64().unwrap_or(0);
    println!("devices={devices}");
    println!("installed={installed}");
    println!(
        "failed={}",
        p["failed"].as_u64().unwrap_or(0) + p["rejected"].as_u64().unwrap_or(0)
    );
    println!("size_bytes={size}");
    println!("total_s={total:.2}");
    println!("devices_per_s={:.1}", installed as f64 / total);
    println!("dispatcher_cpu_s={:.2}", cpu1 - cpu0);
    let elapsed = t0.elapsed().as_secs_f64();
    println!("dispatcher_idle_cpu_per_s={idle_per_s:.3}");
    println!(
        "dispatcher_rollout_cpu_ms_per_device={:.2}",
        ((cpu1 - cpu0) - idle_per_s * elapsed).max(0.0) * 1000.0 / devices.max(1) as f64
    );
    println!("dispatcher_peak_rss_MiB={:.1}", hwm as f64 / 1024.0);
    println!("publish_to_done_s={:.2}", t0.elapsed().as_secs_f64());
    // The fleet process: every device's server, uplink agent and state, in one process.
    if let Some(fp) = c.fleet_pid() {
        let (fcpu, fhwm) = proc_stats(fp);
        println!("fleet_cpu_s={fcpu:.2}");
        println!("fleet_peak_rss_MiB={:.1}", fhwm as f64 / 1024.0);
        println!(
            "fleet_peak_rss_per_device_KiB={:.1}",
            fhwm as f64 / devices.max(1) as f64
        );
    }
}
