//! The `publisher` tool's logic: key generation, building releases (encrypt-then-sign),
//! T3 author signatures, inspection and verification. `main.rs` only parses arguments.
#![forbid(unsafe_code)]

pub mod files;
pub mod publish;
pub mod release;
pub mod verify;

use std::path::PathBuf;

/// A failure, with the exit code the CLI returns for it (documented in `--help`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A verification check failed (exit 1).
    #[error("{check}: {message}")]
    Check {
        /// Stable code of the failed check (`suit::Error::code`).
        check: &'static str,
        /// Human-readable reason.
        message: String,
    },
    /// Bad input: arguments, files, keys (exit 2).
    #[error("{0}")]
    Input(String),
    /// Reading or writing a file failed (exit 3).
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Which file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key repository or update server could not be reached or refused (exit 4).
    #[error("{0}")]
    Remote(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Check { .. } => 1,
            CliError::Input(_) => 2,
            CliError::Io { .. } => 3,
            CliError::Remote(_) => 4,
        }
    }
}

impl From<suit::Error> for CliError {
    fn from(e: suit::Error) -> Self {
        CliError::Check {
            check: e.code(),
            message: e.to_string(),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, CliError>;

/// The system random number generator (panics only if the OS cannot provide randomness).
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}
