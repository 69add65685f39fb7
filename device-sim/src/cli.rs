//! `device-sim`: simulated ICS devices. Argument parsing only; the work is in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use device_sim::{Device, DeviceDir, bundle::Bundle};

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
    Provision {
        /// The bundle (JSON; it holds the OSCORE master secret: delete it afterwards).
        #[arg(long)]
        bundle: PathBuf,
        /// Device directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Factory image for slot A (default: a generated image named after the device).
        #[arg(long)]
        factory_image: Option<PathBuf>,
    },
    /// Run one device: its OSCORE-protected CoAP server, until Ctrl-C or SIGTERM.
    Run {
        /// Device directory (provisioned).
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on (port 0: any free port; the address is printed and written to DIR/address).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Largest blob accepted, in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_blob: usize,
    },
    /// Run N devices in one process (DIR/dev-0000 ...), each with its own UDP socket and state.
    Fleet {
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
    },
    /// Show a device's identity, slots, versions, anti-rollback counter and recent events.
    Status {
        /// Device directory.
        #[arg(long)]
        dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Provision {
            bundle,
            dir,
            factory_image,
        } => {
            let b = Bundle::read(&bundle).map_err(|e| e.to_string())?;
            if dir.join("state.json").exists() {
                return Err(format!(
                    "{} is already provisioned; refusing to overwrite its state",
                    dir.display()
                ));
            }
            let image = match factory_image {
                Some(p) => std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?,
                None => format!("factory image {} {}\n", b.identity.name, b.factory_version)
                    .repeat(64)
                    .into_bytes(),
            };
            let d = device_sim::provision_from_bundle(DeviceDir::new(&dir), &b, &image)
                .map_err(|e| e.to_string())?;
            println!(
                "provisioned {} ({}) in {}: running {}",
                d.identity().name,
                d.identity().device_id,
                dir.display(),
                d.version()
            );
        }
        Command::Run {
            dir,
            listen,
            max_blob,
        } => {
            let rt = runtime()?;
            rt.block_on(async {
                let handle = device_sim::coap::start(&dir, listen, max_blob)
                    .await
                    .map_err(|e| e.to_string())?;
                let addr = format!("coap://{}", handle.addr);
                std::fs::write(dir.join("address"), &addr).map_err(|e| e.to_string())?;
                println!("listening on {addr}");
                shutdown_signal().await;
                handle.stop().await.map_err(|e| e.to_string())
            })?;
        }
        Command::Fleet {
            count,
            dir,
            provision,
            max_blob,
        } => {
            let dirs = fleet_dirs(&dir, count, provision.as_deref())?;
            let rt = runtime()?;
            rt.block_on(async {
                let mut handles = Vec::with_capacity(count);
                let mut index = Vec::with_capacity(count);
                for d in &dirs {
                    let h = device_sim::coap::start(
                        d,
                        "127.0.0.1:0".parse().map_err(|_| "address")?,
                        max_blob,
                    )
                    .await
                    .map_err(|e| format!("{}: {e}", d.display()))?;
                    index.push(
                        serde_json::json!({ "dir": d, "address": format!("coap://{}", h.addr) }),
                    );
                    handles.push(h);
                }
                let fleet = dir.join("fleet.json");
                std::fs::write(
                    &fleet,
                    serde_json::to_vec_pretty(&index).unwrap_or_default(),
                )
                .map_err(|e| format!("{}: {e}", fleet.display()))?;
                println!(
                    "{count} devices listening; addresses in {}",
                    fleet.display()
                );
                shutdown_signal().await;
                for h in handles {
                    let _ = h.stop().await;
                }
                Ok::<(), String>(())
            })?;
        }
        Command::Status { dir, json } => {
            let d = Device::open(DeviceDir::new(&dir)).map_err(|e| e.to_string())?;
            let status = device_sim::status(&d);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", device_sim::status_text(&status));
            }
        }
    }
    Ok(())
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
        let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let list: Vec<Bundle> =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", file.display()))?;
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
            let image = format!("factory image {} {}\n", b.identity.name, b.factory_version)
                .repeat(64)
                .into_bytes();
            device_sim::provision_from_bundle(DeviceDir::new(d), b, &image)
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
