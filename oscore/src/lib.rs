//! OSCORE (RFC 8613) and CoAP block-wise transfer (RFC 7959). Built under issue 3.
//!
//! The core (`context`, `protect`, `replay`, `seq`, `message`, `block`, `echo`, `endpoint`) is
//! sans-I/O: bytes and state in, bytes and events out; time and randomness come from the
//! caller. The `transport` module runs it over tokio UDP (sockets, retransmission timers, the
//! clock and the OS RNG); `ctxfile` and `lock` keep contexts in files, one process at a time.
//!
//! ```
//! use oscore::{ContextParams, SecurityContext, MemorySeqStore, protect, message};
//! use zeroize::Zeroizing;
//!
//! let p = |s: &[u8], r: &[u8]| ContextParams {
//!     master_secret: Zeroizing::new(vec![1; 16]), master_salt: vec![], id_context: None,
//!     sender_id: s.to_vec(), recipient_id: r.to_vec() };
//! let mut client = SecurityContext::new(&p(b"\x01", b"\x02"), Box::new(MemorySeqStore::new())).unwrap();
//! let mut server = SecurityContext::new(&p(b"\x02", b"\x01"), Box::new(MemorySeqStore::new())).unwrap();
//! let mut req = message::packet(coap_lite::MessageType::Confirmable, message::code::GET, 1, b"t");
//! message::set_path(&mut req, "fw/image");
//! let (outer, binding) = protect::protect_request(&mut client, &req).unwrap();
//! let wire = message::encode(&outer, 1500).unwrap();
//! let got = protect::unprotect_request(&mut server, &message::decode(&wire, 1500).unwrap()).unwrap();
//! assert_eq!(message::path_of(&got.request).unwrap(), "fw/image");
//! # let _ = binding;
//! ```
#![forbid(unsafe_code)]

pub mod block;
mod cbor;
pub mod context;
#[cfg(feature = "test-corpus")]
pub mod corpus;
pub mod ctxfile;
pub mod echo;
pub mod endpoint;
pub mod error;
pub mod lock;
pub mod message;
pub mod protect;
pub mod replay;
pub mod seq;
pub mod transport;

pub use coap_lite;
pub use context::{ContextParams, SecurityContext};
pub use error::{Error, Result};
pub use seq::{FileSeqStore, MemorySeqStore, SeqStore};
