#![allow(dead_code, clippy::unwrap_used)]
// Test helpers: a panic is the right reaction to a broken fixture.
pub(crate) mod ctx;
pub(crate) mod net;
pub(crate) mod peer;
pub(crate) mod vectors;
