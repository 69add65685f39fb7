//! The domain-local dispatcher (DESIGN.md §2 flows 2 and 3). Built under issue 6; this
//! version holds the rollout engine. Intake, the operator API, distribution over
//! CoAP + OSCORE and the audit log follow.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod intake;
pub mod rollout;
