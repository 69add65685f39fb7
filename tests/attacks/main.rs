//! The attack suite (issue 13 item 6): named attacks against the real processes of the
//! chain — key repository, update server(s), dispatcher and simulated devices, each started
//! from the `ics-suit` executable on loopback — one test per attack, named after it.
//!
//! Every test says in its doc comment what the attack is, who mounts it (the attacker
//! classes A1–A8 of `docs/threat-model.md` §2), the check that stops it, and what it asserts:
//! the specific refusal (HTTP status and problem `check`, `suit::Error::code`, CoAP code, an
//! audit record) **and** that nothing was stored, approved, pushed or installed (the update
//! server's listing and storage, the dispatcher's releases, files and rollouts, the devices'
//! counters and install logs).
//!
//! Attacks that cannot interfere share one chain per kind (`common::services`, the hostile
//! sources of `sources`, the fleet of `devices`), started once on the suite's runtime and
//! stopped when the test process ends; attacks that stop, kill or reconfigure a process get
//! their own. `docs/threat-model.md` maps every threat to the tests that prove it, these and
//! the per-crate ones.
//!
//! | module | attacks |
//! |---|---|
//! | `arbitrary_software` | TUF arbitrary software: unsigned, unknown, impostor and untrusted signers; role abuse; padded and forged authentication blocks |
//! | `manifest` | RFC 9124 manifest threats: modification, severed-member substitution, a key outside its vendor scope |
//! | `rollback` | TUF rollback at the update server; equivocation on a published sequence number |
//! | `key_compromise` | revoked and expired publisher keys at the update server and the dispatcher; revoked release keys; a signer revoked mid-rollout |
//! | `sources` | a hostile update server or mirror: mix-and-match, swapped blobs, endless data, slow retrieval |
//! | `disclosure` | RFC 9124 image and key disclosure at the update server |
//! | `tokens` | forged and misused OAuth access tokens at the key repository and the update server |
//! | `devices` | RFC 9124 device threats on the real push path: rollback, unapproved, wrong class, wrong device, wrong precursor, modified manifest, wrong key, image replaced after verification |
//! | `coap` | CoAP/OSCORE: replay, unknown kid, tampered ciphertext, duplicate message id, reflection |
//! | `dispatcher_process` | the dispatcher as a process: replay after SIGKILL, a second process on one context, a push block held back past an abort |
//! | `decisions` | concurrent operator decisions on one release |
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

mod arbitrary_software;
mod coap;
mod decisions;
mod devices;
mod disclosure;
mod dispatcher_process;
mod key_compromise;
mod manifest;
mod rollback;
mod sources;
mod tokens;
