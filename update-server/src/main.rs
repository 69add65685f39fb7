//! `update-server`: argument parsing is in `update_server::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(update_server::cli::main())
}
