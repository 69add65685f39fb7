//! `key-repo` binary: see `key_repo::cli`.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(key_repo::cli::main());
}
