//! `dispatcher` binary: see `dispatcher::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    dispatcher::cli::main()
}
