//! Simulated constrained ICS devices (PLCs, RTUs, sensors) that install updates the way a
//! well-built device must: verify both signatures, check the conditions, decrypt streaming
//! into the inactive slot, check the plaintext digest, switch, self-test, confirm or revert.
//! The anti-rollback counter moves only after confirmation, and a power loss at any step
//! leaves a bootable device.
//!
//! This module is transport-independent: [`Device::install`] takes the envelope, the
//! release key and a reader over the blob. The CoAP + OSCORE front end feeds it.
#![forbid(unsafe_code)]

pub mod install;
pub mod state;

use std::path::PathBuf;

pub use install::{Device, Fault, FaultPlan, InstallOutcome, Report, Step};
pub use state::{DeviceDir, Identity, KeyEntry, Phase, Slot, SlotImage, State, Trust};

/// Device errors that are not install outcomes: I/O and corrupt state files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// Which file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A state or provisioning file does not parse.
    #[error("corrupt device state: {0}")]
    Corrupt(String),
    /// A simulated power loss at the named step (fault injection).
    #[error("simulated power loss at {0:?}")]
    PowerLoss(Step),
    /// Neither slot holds a valid image. Must never happen; tests assert it does not.
    #[error("no bootable image")]
    Bricked,
}
