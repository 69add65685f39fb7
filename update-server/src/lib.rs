//! Update server (issue 4): hosts signed, encrypted SUIT releases for dispatchers, and
//! **verifies before it stores**: publisher signature against the registered key, the key's
//! right to the vendor-id, the blob's size and SHA-256 against the signed ciphertext digest
//! (streamed, bounded memory), and no conflicting or older release for the same
//! vendor/class. Blobs live in an object store (`object_store`: local directory or any
//! S3-compatible store); the release index is in sled.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use update_server::client::UpdateServerClient;
//! let ca = std::fs::read("srv/tls/ca.pem")?;
//! let client = UpdateServerClient::new("https://127.0.0.1:8444", Some(&ca), None)?;
//! for r in client.list("min-sequence=3").await?.releases {
//!     println!("{} seq {} {:?}", r.release.release_id, r.release.sequence, r.release.ics);
//! }
//! # Ok(()) }
//! ```
//!
//! The longer story (set-up, publishers, storage, mirrors, scaling out, API) is in
//! `docs/update-server.md`.
//! Features: `server` (default) builds the service; `client` alone builds only the typed
//! client and the wire types ([`model`]), without axum, sled or object_store.
#![forbid(unsafe_code)]

pub mod model;

#[cfg(feature = "client")]
pub mod client;

cfg_if::cfg_if! {
    if #[cfg(feature = "server")] {
        pub mod api;
        pub mod auth;
        pub mod cli;
        pub mod config;
        pub mod error;
        pub mod index;
        pub mod ingest;
        pub mod init;
        pub mod mirror;
        pub mod publishers;
        pub mod server;
        pub mod state;
        pub mod storage;
        pub mod util;
        pub use api::router;
        pub use error::{ApiError, Error};
        pub use state::AppState;
    }
}
