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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
