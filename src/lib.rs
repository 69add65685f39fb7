//! The whole chain on loopback (see `src/main.rs` for the demo). The library part is the
//! harness the demo and the end-to-end tests share.
#![forbid(unsafe_code)]

pub mod chain;
