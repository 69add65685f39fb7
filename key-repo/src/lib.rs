//! Key repository for per-release SUIT keys, protected by OAuth 2.0 (issue 8).
//!
//! A publisher stores the key-encryption key of each release (named by the `kid` of the
//! envelope's COSE recipient) with `PUT /v1/keys/{kid}`; dispatchers authorised for the
//! release's product read it back with `GET /v1/keys/{kid}`. Access tokens are ES256 JWTs
//! (RFC 9068) issued by the built-in authorization server (`POST /oauth/token`, client
//! credentials) or by an external issuer configured by issuer URL and JWKS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), key_repo::client::ClientError> {
//! use key_repo::client::{KeyRepoClient, ClientConfig};
//! let client = KeyRepoClient::new(ClientConfig {
//!     base_url: "https://127.0.0.1:8443".into(),
//!     client_id: "kr-...".into(),
//!     client_secret: "...".into(),
//!     ca_pem: Some(std::fs::read("tls/ca.pem").unwrap_or_default()),
//!     scopes: vec![],
//! })?;
//! let key = client.get_key("release-42").await?;
//! println!("{} bytes of COSE_Key for {}", key.cose_key.len(), key.product);
//! # Ok(()) }
//! ```
//!
//! The longer story (set-up, clients, external identity providers, audit, backup) is in
//! `docs/key-repo.md`.
//! Features: `server` (default) builds the service; `client` alone builds only the typed
//! client and the wire types (no axum, sled or server parts), for the publisher and the
//! dispatcher.
#![forbid(unsafe_code)]

pub mod model;
pub mod util;

#[cfg(feature = "client")]
pub mod client;

cfg_if::cfg_if! {
    if #[cfg(feature = "server")] {
        pub mod api;
        pub mod auth;
        pub mod cli;
        pub mod clients;
        pub mod config;
        pub mod crypto;
        pub mod error;
        pub mod init;
        pub mod ratelimit;
        pub mod server;
        pub mod store;
        pub use api::{AppState, router};
        pub use error::{ApiError, Error};
    }
}
