//! `device-sim`: simulated ICS devices. Argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::link::LinkOverride;
use crate::uplink::{UplinkConfig, start_device};
use crate::{Device, DeviceDir, bundle};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "device-sim",
    version,
    about = "Simulated constrained devices that install SUIT updates safely",
    after_help = "Exit codes: 0 success; 1 the device reported a problem; 2 bad input or I/O error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a device directory from a provisioning bundle (made by `dispatcher devices add`).
    Provision(ProvisionArgs),
    /// Run one device until Ctrl-C or SIGTERM: its OSCORE-protected CoAP server and, when
    /// provisioned with an uplink, its check-ins to the dispatcher (at start, then as the
    /// dispatcher says), pulling and installing the releases it is offered.
    ///
    /// Fault injection: DIR/faults.json (read at the next install: power loss, corrupt flash,
    /// failing self-test) and DIR/link.json (read at start: a slow or lossy link,
    /// {"loss_percent": 0-50, "delay_ms": 0-2000, "seed": N}; see docs/device.md).
    Run(RunArgs),
    /// Run N devices in one process (DIR/dev-0000 ...), each with its own UDP socket and state.
    /// Each device reads its own link.json; --loss-percent and --delay-ms apply to all.
    Fleet(FleetArgs),
    /// Show a device's identity, slots, versions, anti-rollback counter and recent events.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct ProvisionArgs {
    /// The bundle (JSON; it holds the OSCORE master secret: delete it afterwards).
    #[arg(long)]
    bundle: PathBuf,
    /// Device directory to create.
    #[arg(long)]
    dir: PathBuf,
    /// Factory image for slot A (default: a generated image named after the device).
    #[arg(long)]
    factory_image: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Device directory (provisioned).
    #[arg(long)]
    dir: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed and written to DIR/address).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Largest blob accepted (pushed or pulled), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_blob: usize,
    /// Check in every SECONDS (±10 % jitter) instead of the dispatcher's interval.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=604_800))]
    checkin_interval: Option<u32>,
    #[command(flatten)]
    link: LinkArgs,
}

#[derive(Args, Debug)]
struct FleetArgs {
    /// Number of devices.
    #[arg(long)]
    count: usize,
    /// Parent directory of the device directories.
    #[arg(long)]
    dir: PathBuf,
    /// Provision the devices first from this file: a JSON array of bundles (at least COUNT).
    #[arg(long)]
    provision: Option<PathBuf>,
    /// Largest blob accepted per device, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_blob: usize,
    /// Check in every SECONDS (±10 % jitter) instead of the dispatcher's interval. The
    /// first check-ins are spread over COUNT × 10 ms (at most the interval, at most 10 min).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=604_800))]
    checkin_interval: Option<u32>,
    /// Pulls (downloads and installs) allowed at once in the process.
    #[arg(long, default_value_t = 64)]
    max_pulls: usize,
    #[command(flatten)]
    link: LinkArgs,
}

/// The simulated link and push freshness options of `run` and `fleet`.
#[derive(Args, Debug)]
struct LinkArgs {
    /// Simulated lossy link: drop PERCENT (0-50) of the datagrams in each direction, of
    /// pushes to the device and of its uplink. Overrides loss_percent of the device's
    /// link.json (DIR/link.json; for a fleet, each device's).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=50))]
    loss_percent: Option<u8>,
    /// Simulated slow link: deliver every datagram MS (0-2000) milliseconds late, in each
    /// direction. Overrides delay_ms of the device's link.json.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(0..=2000))]
    delay_ms: Option<u32>,
    /// How recent (milliseconds) the Echo value of a request that starts an install must
    /// be: the last block of a pushed blob, or a pull request (docs/device.md, "Freshness
    /// of pushes").
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    push_freshness_ms: u64,
    /// Bound (bytes) of one generation of the install log: DIR/install.log rotates to
    /// DIR/install.log.1 when it would pass it, so the log never takes more than twice
    /// this (docs/device.md, "State that must survive power loss").
    #[arg(long, value_name = "BYTES", default_value_t = crate::state::DEFAULT_MAX_LOG_BYTES, value_parser = clap::value_parser!(u64).range(crate::state::MIN_MAX_LOG_BYTES..=1 << 30))]
    max_log_bytes: u64,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Device directory.
    #[arg(long)]
    dir: PathBuf,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Provision(a) => provision(a),
        Command::Run(a) => run_device(a),
        Command::Fleet(a) => run_fleet(a),
        Command::Status(a) => status(a),
    }
}

/// `device-sim provision`.
fn provision(a: ProvisionArgs) -> Result<(), String> {
    let ProvisionArgs {
        bundle,
        dir,
        factory_image,
    } = a;
    let b = bundle::read(&bundle).map_err(|e| e.to_string())?;
    if dir.join("state.json").exists() {
        return Err(format!(
            "{} is already provisioned; refusing to overwrite its state",
            dir.display()
        ));
    }
    let image = match factory_image {
        Some(p) => std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => default_factory_image(&b),
    };
    let d = crate::provision_from_bundle(DeviceDir::new(&dir), &b, &image)
        .map_err(|e| e.to_string())?;
    println!(
        "provisioned {} ({}) in {}: running {}",
        d.identity().name,
        d.identity().device_id,
        dir.display(),
        d.version()
    );
    Ok(())
}

/// `device-sim run`: one device until Ctrl-C or SIGTERM.
fn run_device(a: RunArgs) -> Result<(), String> {
    let RunArgs {
        dir,
        listen,
        max_blob,
        checkin_interval,
        link,
    } = a;
    let rt = runtime()?;
    rt.block_on(async {
        let cfg = uplink_config(max_blob, checkin_interval, &link);
        let device = start_device(&dir, listen, cfg)
            .await
            .map_err(|e| e.to_string())?;
        let addr = format!("coap://{}", device.addr);
        let file = dir.join("address");
        std::fs::write(&file, &addr).map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some(f) = &device.link {
            // stderr: stdout's first line is the address, which scripts read.
            eprintln!(
                "simulated link: {} % loss and {} ms delay each way",
                f.loss_percent(),
                f.delay().as_millis()
            );
        }
        println!("listening on {addr}");
        shutdown_signal().await;
        device.stop().await.map_err(|e| e.to_string())
    })
}

/// `device-sim fleet`: N devices in one process until Ctrl-C or SIGTERM.
fn run_fleet(a: FleetArgs) -> Result<(), String> {
    let FleetArgs {
        count,
        dir,
        provision,
        max_blob,
        checkin_interval,
        max_pulls,
        link,
    } = a;
    // One lock for every device of the fleet (DIR/.oscore.lock): a `run` of one of its
    // devices, or a second fleet, is refused; one file descriptor, not one per device.
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock = crate::coap::lock_device(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dirs = fleet_dirs(&dir, count, provision.as_deref())?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut cfg = uplink_config(max_blob, checkin_interval, &link);
        cfg.lock = Some(lock);
        cfg.first_spread = fleet_spread(count, cfg.interval);
        cfg.pulls = std::sync::Arc::new(tokio::sync::Semaphore::new(max_pulls.max(1)));
        let mut handles = Vec::with_capacity(count);
        let mut index = Vec::with_capacity(count);
        let mut lossy = 0usize;
        for d in &dirs {
            let h = start_device(
                d,
                "127.0.0.1:0".parse().map_err(|_| "address")?,
                cfg.clone(),
            )
            .await
            .map_err(|e| format!("{}: {e}", d.display()))?;
            index.push(serde_json::json!({
                "dir": d,
                "address": format!("coap://{}", h.addr),
            }));
            lossy += usize::from(h.link.is_some());
            handles.push(h);
        }
        let fleet = dir.join("fleet.json");
        std::fs::write(
            &fleet,
            serde_json::to_vec_pretty(&index).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", fleet.display()))?;
        if lossy > 0 {
            eprintln!("simulated slow or lossy link on {lossy} of {count} devices");
        }
        println!(
            "{count} devices listening; addresses in {}",
            fleet.display()
        );
        shutdown_signal().await;
        for h in handles {
            let _ = h.stop().await;
        }
        Ok::<(), String>(())
    })
}

/// `device-sim status`.
fn status(a: StatusArgs) -> Result<(), String> {
    let d = Device::open(DeviceDir::new(&a.dir)).map_err(|e| e.to_string())?;
    let status = crate::status(&d);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
    } else {
        print!("{}", crate::status_text(&status));
    }
    Ok(())
}

/// The uplink settings `run` and `fleet` share.
fn uplink_config(max_blob: usize, checkin_interval: Option<u32>, link: &LinkArgs) -> UplinkConfig {
    let mut cfg = UplinkConfig::new(max_blob);
    cfg.push_freshness = Duration::from_millis(link.push_freshness_ms);
    cfg.interval = checkin_interval.map(|s| Duration::from_secs(s.into()));
    cfg.link = LinkOverride {
        loss_percent: link.loss_percent,
        delay_ms: link.delay_ms,
    };
    cfg.max_log_bytes = link.max_log_bytes;
    cfg
}

/// The image in slot A when no factory image is given: generated, named after the device.
fn default_factory_image(b: &bundle::Bundle) -> Vec<u8> {
    format!("factory image {} {}\n", b.identity.name, b.factory_version)
        .repeat(64)
        .into_bytes()
}

/// Over how long a fleet spreads its first check-ins: 10 ms per device (10,000 devices: 100
/// check-ins per second over 100 s), at most the check-in interval and at most 10 minutes.
/// Later check-ins stay spread: each device keeps its own phase, with ±10 % jitter.
fn fleet_spread(count: usize, interval: Option<Duration>) -> Duration {
    let spread = Duration::from_millis(10).saturating_mul(count.try_into().unwrap_or(u32::MAX));
    spread
        .min(interval.unwrap_or(crate::uplink::DEFAULT_CHECKIN))
        .min(Duration::from_secs(600))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The fleet's device directories, provisioning them from `bundles` when given.
fn fleet_dirs(
    dir: &std::path::Path,
    count: usize,
    bundles: Option<&std::path::Path>,
) -> Result<Vec<PathBuf>, String> {
    let dirs: Vec<PathBuf> = (0..count)
        .map(|i| dir.join(format!("dev-{i:04}")))
        .collect();
    if let Some(file) = bundles {
        let list = bundle::read_list(file).map_err(|e| e.to_string())?;
        if list.len() < count {
            return Err(format!(
                "{} holds {} bundles, fewer than --count {count}",
                file.display(),
                list.len()
            ));
        }
        for (d, b) in dirs.iter().zip(&list) {
            if d.join("state.json").exists() {
                continue;
            }
            crate::provision_from_bundle(DeviceDir::new(d), b, &default_factory_image(b))
                .map_err(|e| format!("{}: {e}", d.display()))?;
        }
    }
    for d in &dirs {
        if !d.join("state.json").exists() {
            return Err(format!(
                "{} is not provisioned (give --provision FILE)",
                d.display()
            ));
        }
    }
    Ok(dirs)
}

/// Runs the command line from the process arguments.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// As [`main`], with the arguments given (the first is the program name).
pub fn main_from(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> ExitCode {
    // Diagnostics (refused check-ins, failed pulls) on stderr; RUST_LOG overrides the level.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    match run(Cli::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
