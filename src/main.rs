//! `ics-suit`: the whole chain on loopback with one command (`cargo run --release`).
//!
//! Also a multi-call binary: `ics-suit key-repo ...`, `ics-suit update-server ...`,
//! `ics-suit dispatcher ...` and `ics-suit device-sim ...` run those tools, so the demo
//! starts each service as its own process from this one executable.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::Parser;

/// Runs a key repository, an update server, a dispatcher and simulated devices on loopback,
/// publishes two releases, applies the shipped plant policy and prints the outcome.
#[derive(Parser, Debug)]
#[command(
    name = "ics-suit",
    version,
    after_help = "Tools: ics-suit key-repo|update-server|dispatcher|device-sim --help.\n\
Exit codes: 0 every device updated; 1 a device failed; 2 the demo could not run."
)]
pub(crate) struct Args {
    /// Number of simulated devices (half PLCs getting manufacturer firmware, half HMIs
    /// getting a third-party application).
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Print the outcome as JSON on stdout (progress is not drawn).
    #[arg(long)]
    json: bool,
    /// Leave the services running and print their URLs and the operator credentials.
    #[arg(long)]
    keep_running: bool,
    /// Data directory (default: a fresh temporary directory, removed at the end unless
    /// --keep-running).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let tool = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let rest = || args[1..].to_vec();
    match tool {
        "key-repo" => return ExitCode::from(key_repo::cli::main_from(rest())),
        "update-server" => return ExitCode::from(update_server::cli::main_from(rest())),
        "dispatcher" => return dispatcher::cli::main_from(rest()),
        "device-sim" => return device_sim::cli::main_from(rest()),
        _ => {}
    }
    let a = Args::parse_from(args);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // SIGTERM or Ctrl-C: drop the demo, whose chain stops every service process it started
    // (they would outlive an abrupt exit).
    let keep_running = a.keep_running;
    let run = async {
        tokio::select! {
            r = demo::run(a) => r,
            () = foundations::serve::shutdown_signal() => if keep_running {
                eprintln!("stopping the services");
                Ok(true)
            } else {
                Err(anyhow::anyhow!("interrupted; services stopped"))
            },
        }
    };
    match rt.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
