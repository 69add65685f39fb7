//! CoAP/OSCORE endpoints without I/O: everything a server or client does between receiving
//! a datagram and sending one — duplicate detection, OSCORE verification and protection,
//! the Echo exchanges (RFC 8613 Appendix B.1.2 after a restart, RFC 9175 freshness), Block1
//! reassembly, Block2 slicing and the block-wise sequences of a client. Time and randomness
//! are parameters: the caller (the tokio layer in [`crate::transport`], or a test) reads the
//! clock and the RNG and owns the sockets.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use oscore::endpoint::{ContextSet, Handler, Reply, Request, ServerConfig, ServerEndpoint};
//! use oscore::message::code;
//!
//! struct Hello;
//! impl Handler for Hello {
//!     fn handle(&self, _req: &Request) -> Reply { Reply::new(code::CONTENT, "hi") }
//!     fn allow_unprotected(&self, _path: &str) -> bool { true }
//! }
//! let ep = ServerEndpoint::new(ContextSet::new(), false, ServerConfig::default(), [7; 32], Instant::now());
//! // A confirmable GET /x (message id 1, no token), unprotected.
//! let out = ep.handle("127.0.0.1:5683".parse().unwrap(), &[0x40, 0x01, 0, 1, 0xb1, b'x'], Instant::now(), &Hello);
//! let reply = out.reply.unwrap();
//! assert_eq!(reply[1], code::CONTENT);
//! ```

mod client;
mod contexts;
mod reply;
mod server;
mod types;

pub use client::{
    Block1Step, Block1Upload, Block2Download, Exchange, MAX_ECHO_ROUNDS, MIN_REQUEST_PLAINTEXT,
    Step, pad_request, response_error, too_large_hint,
};
pub use contexts::ContextSet;
pub use server::ServerEndpoint;
pub use types::{Handler, Notification, Observation, Output, Reply, Request, ServerConfig};
