//! Service foundations shared by the key repository, the update server and the dispatcher,
//! instead of copied between them (issue 12 item 4, issue 13 item 3).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use foundations::http::{Guard, Public};
//! use foundations::serve::{ServeLimits, bind, serve};
//!
//! // Every route gets a gate (here: public) and a body limit, both decided from the request
//! // head before the body is read; the serve loop bounds connections and time, adds HSTS.
//! let app = Router::new().route(
//!     "/v1/echo",
//!     post(|body: String| async move { body }).route_layer(Guard::new(Public, 1024)),
//! );
//! let dir = tempfile::tempdir()?;
//! let files = foundations::tls::write_generated(dir.path(), "localhost", "example")?;
//! let tls = foundations::tls::load_server_config(&files.cert_file, &files.key_file)?;
//! let ca = std::fs::read(&files.ca_file)?;
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let (listener, addr) = bind("127.0.0.1:0".parse()?).await?;
//!     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!     let server = tokio::spawn(async move {
//!         serve(listener, tls, app, &ServeLimits::default(), async {
//!             let _ = stopped.await;
//!         })
//!         .await
//!     });
//!     // A bounded client that trusts only this CA.
//!     let url = format!("https://{addr}/v1/echo");
//!     let http = foundations::client::https_client(&url, Some(&ca), &Default::default())?;
//!     let small = http.post(&url).body("hello").send().await?;
//!     assert_eq!(small.headers()["strict-transport-security"], "max-age=31536000");
//!     assert_eq!(foundations::client::read_capped(small, 100).await?, b"hello");
//!     let big = http.post(&url).body(vec![b'x'; 2048]).send().await?;
//!     let problem = foundations::client::read_problem(big, 4096).await;
//!     assert_eq!((problem.status, problem.slug()), (413, "payload-too-large"));
//!     let _ = stop.send(());
//!     server.await??;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`util`] | clock, randomness, base64, constant-time compare, product names | — |
//! | [`fs`] | atomic write-fsync-rename, secret files, bounded reads | — |
//! | [`problem`] | RFC 9457 problem details (and their response) | — |
//! | [`client`] | HTTPS clients with a pinned CA, capped bodies, total deadlines | `client` |
//! | `serve` | the TLS serve loop with its connection budget and timeouts | `server` |
//! | `http` | request gates: authentication and body limits before the body | `server` |
//! | `tls` | rustls server configuration, local CA for `init` | `server` |
//! | `token` | ES256 access tokens (RFC 9068) on `jsonwebtoken`: verify, sign, JWKS | `server` |
//! | `audit` | the hash-chained audit log | `server` |
//! | `config` | TOML configuration files, logging set-up | `server` |
//!
//! The longer story, with every limit and its default, is `docs/foundations.md`.
#![forbid(unsafe_code)]

mod error;
pub mod fs;
pub mod problem;
pub mod util;

#[cfg(feature = "client")]
pub mod client;

cfg_if::cfg_if! {
    if #[cfg(feature = "server")] {
        pub mod audit;
        pub mod config;
        pub mod http;
        pub mod serve;
        pub mod tls;
        pub mod token;
    }
}

pub use error::Error;
pub use problem::{PROBLEM_BASE, PROBLEM_MEDIA_TYPE, Problem};
pub use util::{
    b64, b64_decode, b64url, b64url_decode, ct_eq, normalize_product, now_unix, random_bytes,
};
