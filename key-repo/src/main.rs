//! `key-repo` binary: see `key_repo::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(key_repo::cli::main())
}
