//! `device-sim` binary: see `device_sim::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    device_sim::cli::main()
}
