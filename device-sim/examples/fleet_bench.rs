//! Load generator for `bench/fleet.sh`: provisions N devices, starts them as ONE
//! `device-sim fleet` process, pushes a release of SIZE bytes to every device over CoAP +
//! OSCORE (Block1) with bounded concurrency, and prints memory per device and installs/s.
//!
//! cargo run --release -p device-sim --example fleet_bench -- COUNT [SIZE_KIB] [CONCURRENCY] [--start-only]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: failing loudly is right

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use device_sim::bundle::{Bundle, FORMAT, OscoreParams, SecretHex};
use device_sim::{Identity, Trust};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use suit::release::{ReleaseParams, build_release};
use suit::{IcsMetadata, Role, SigningKey, TrustAnchor, TrustStore, UpdateType};
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn id_bytes(i: usize) -> Vec<u8> {
    // Sender ids 1..=N as two bytes (the dispatcher is 00).
    ((i + 1) as u16).to_be_bytes().to_vec()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start_only = args.iter().any(|a| a == "--start-only");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let count = nums.first().copied().unwrap_or(1000);
    let size = nums.get(1).copied().unwrap_or(256) * 1024;
    let concurrency = nums.get(2).copied().unwrap_or(64);

    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let maker = SigningKey::generate(&mut rng).with_kid(b"maker".to_vec());
    let dispatcher = SigningKey::generate(&mut rng).with_kid(b"dispatcher".to_vec());
    let work = tempfile::Builder::new()
        .prefix("fleet-bench")
        .tempdir()
        .unwrap();
    let mut secrets = Vec::with_capacity(count);
    let bundles: Vec<Bundle> = (0..count)
        .map(|i| {
            let mut secret = [0u8; 16];
            rand_core::Rng::fill_bytes(&mut rng, &mut secret);
            secrets.push(secret);
            Bundle {
                format: FORMAT.into(),
                identity: Identity {
                    name: format!("dev-{i:04}"),
                    vendor_id: VENDOR,
                    class_id: CLASS,
                    device_id: Uuid::from_u128(i as u128 + 1),
                },
                trust: Trust::from_keys(
                    VENDOR,
                    &[
                        (
                            suit::Role::Manufacturer,
                            &kid(&maker),
                            &maker.public_key().to_pem(),
                        ),
                        (
                            suit::Role::Approver,
                            &kid(&dispatcher),
                            &dispatcher.public_key().to_pem(),
                        ),
                    ],
                    true,
                ),
                oscore: OscoreParams {
                    master_secret_hex: SecretHex::from_bytes(&secret),
                    master_salt_hex: None,
                    sender_id_hex: hex::encode(id_bytes(i)),
                    recipient_id_hex: "00".into(),
                    id_context_hex: None,
                },
                uplink: None,
                dispatcher: "coap://127.0.0.1:5683".into(),
                factory_version: "1.0.0".into(),
            }
        })
        .collect();
    let bundle_file = work.path().join("bundles.json");
    std::fs::write(&bundle_file, serde_json::to_vec(&bundles).unwrap()).unwrap();

    let exe = std::env::current_exe().unwrap();
    let sim = exe.parent().unwrap().parent().unwrap().join("device-sim");
    let t0 = Instant::now();
    let mut child = Command::new(&sim)
        .args(["fleet", "--count", &count.to_string(), "--dir"])
        .arg(work.path())
        .arg("--provision")
        .arg(&bundle_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it with cargo build --release -p device-sim)",
                sim.display()
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("devices listening"), "fleet: {line}");
    let started = t0.elapsed().as_secs_f64();
    let pid = child.id();
    let idle_rss = rss_kib(pid, "VmRSS:");
    println!("fleet: {count} devices provisioned and started in one process in {started:.1} s");
    println!(
        "fleet: resident memory {} MiB idle = {:.0} KiB per device",
        idle_rss / 1024,
        idle_rss as f64 / count as f64
    );
    if start_only {
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(work.path().join("fleet.json")).unwrap()).unwrap();

    // One release for the class, approved by the dispatcher.
    let image: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let p = ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence: 1,
        version: vec![2, 0, 0],
        requires: None,
        uri: None,
        ics: IcsMetadata::new(UpdateType::T2),
    };
    let built = build_release(&p, &image, b"rk-bench", &maker, &mut rng).unwrap();
    let (env, blob, kek) = (built.envelope, built.blob, built.release_key);
    let mut t = TrustStore::new();
    t.add(TrustAnchor::new(maker.public_key(), Role::Manufacturer));
    let env = suit::approve(
        &suit::accept(&env, &t, &suit::Rules::dispatcher_intake(), 0).unwrap(),
        &dispatcher,
    )
    .unwrap();
    let key = kek.to_cose_key().to_vec();
    let release = Arc::new((env, key, blob));

    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let t1 = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, entry) in index.iter().enumerate() {
        let addr: std::net::SocketAddr = entry["address"]
            .as_str()
            .unwrap()
            .trim_start_matches("coap://")
            .parse()
            .unwrap();
        let secret = secrets[i];
        let release = release.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let ctx = SecurityContext::new(
                &ContextParams {
                    master_secret: zeroize::Zeroizing::new(secret.to_vec()),
                    master_salt: vec![],
                    id_context: None,
                    sender_id: vec![0x00],
                    recipient_id: id_bytes(i),
                },
                Box::new(MemorySeqStore::new()),
            )
            .unwrap();
            let cfg = ClientConfig {
                ack_timeout: std::time::Duration::from_millis(1000),
                ..ClientConfig::default()
            };
            let mut c = Client::connect(addr, Some(ctx), cfg).await.ok()?;
            c.request(code::PUT, "suit/envelope", &release.0)
                .await
                .ok()?;
            c.request(code::PUT, "suit/key", &release.1).await.ok()?;
            let r = c.request(code::PUT, "suit/blob", &release.2).await.ok()?;
            let report: serde_json::Value = serde_json::from_slice(&r.payload).ok()?;
            Some(report["outcome"] == "installed")
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if let Ok(Some(true)) = t.await {
            ok += 1;
        }
    }
    let secs = t1.elapsed().as_secs_f64();
    let peak = rss_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "push: {ok}/{count} devices installed a {} KiB release in {secs:.1} s = {:.0} installs/s (concurrency {concurrency})",
        size / 1024,
        ok as f64 / secs
    );
    println!(
        "fleet: peak resident memory {} MiB = {:.0} KiB per device ({} KiB image + state per device)",
        peak / 1024,
        peak as f64 / count as f64,
        size / 1024
    );
    if ok != count {
        std::process::exit(1);
    }
}

/// A key's kid as text.
fn kid(k: &SigningKey) -> String {
    String::from_utf8_lossy(k.kid()).into_owned()
}
