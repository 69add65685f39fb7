//! Error types of the OSCORE core and the CoAP transport, and their mapping to CoAP codes.

use std::io;

/// Errors of the OSCORE core (RFC 8613) and the CoAP message/block-wise layers.
///
/// No variant carries key material; kids and ids are public values (they travel in clear).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RFC 8613 §3.3: a Sender/Recipient ID longer than nonce length - 6 bytes.
    #[error("sender/recipient id is {len} bytes, at most {max} allowed (RFC 8613 §3.3)")]
    IdTooLong {
        /// Offending length.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// RFC 8613 §3.3: Sender ID and Recipient ID of one context must differ.
    #[error("sender id and recipient id are equal (RFC 8613 §3.3)")]
    SenderEqualsRecipient,
    /// The datagram is not a well-formed CoAP message (RFC 7252 §3).
    #[error("malformed CoAP message: {0}")]
    MalformedMessage(&'static str),
    /// The datagram or a plaintext is larger than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size seen.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// RFC 8613 §6.1: the OSCORE option value cannot be decoded.
    #[error("malformed OSCORE option: {0}")]
    MalformedOscoreOption(&'static str),
    /// RFC 8613 §8.2 step 2 / §8.4: no OSCORE option in a message that must be protected.
    #[error("message is not OSCORE-protected")]
    NotProtected,
    /// RFC 8613 §8.2: a request without kid or Partial IV.
    #[error("OSCORE request lacks {0}")]
    MissingField(&'static str),
    /// A server already holds a context for this Recipient ID and ID Context.
    #[error("a security context for kid {kid_hex} (same ID Context) is already present")]
    DuplicateContext {
        /// Hex of the Recipient ID.
        kid_hex: String,
    },
    /// RFC 8613 §8.2 step 2: no security context for this kid (and kid context).
    #[error("no security context for kid {kid_hex}")]
    UnknownKid {
        /// Hex of the kid received.
        kid_hex: String,
    },
    /// RFC 8613 §7.4: the Partial IV was already received (replay), or is outside the window.
    #[error("replayed or too old sequence number {seq}")]
    Replay {
        /// The rejected sequence number.
        seq: u64,
    },
    /// RFC 8613 Appendix B.1.2: the replay window is not initialised; an Echo exchange is needed.
    #[error("replay window not initialised; Echo required (RFC 8613 B.1.2)")]
    EchoRequired,
    /// RFC 8613 §8.2 step 6 / §8.4 step 5: AEAD verification failed.
    #[error("OSCORE decryption failed (tag mismatch or wrong key)")]
    DecryptFailed,
    /// RFC 8613 §7.2.1: the sender sequence number space is exhausted; a new context is needed.
    #[error("sender sequence number exhausted (RFC 8613 §7.2.1)")]
    SequenceExhausted,
    /// RFC 8613 Appendix B.1.1: persisting the sender sequence number failed; nothing was sent.
    #[error("cannot persist the sender sequence number: {0}")]
    Persist(#[source] io::Error),
    /// RFC 8613 §4.1.3.3: Proxy-Uri must be decomposed before protection; not supported.
    #[error("unsupported option or feature: {0}")]
    Unsupported(&'static str),
    /// RFC 8613 §8.4: the response's decrypted plaintext is not a response (or vice versa).
    #[error("inner code {code:#04x} does not fit the message kind")]
    BadInnerCode {
        /// The inner code received.
        code: u8,
    },
    /// RFC 7959 §2.2: a Block option value that cannot be decoded.
    #[error("malformed block option: {0}")]
    MalformedBlock(&'static str),
    /// RFC 7959: the peer's block sequence is inconsistent.
    #[error("block-wise transfer error: {0}")]
    Blockwise(&'static str),
    /// The peer answered with an error code.
    #[error("peer answered {code}: {diagnostic}")]
    Response {
        /// The CoAP code as "c.dd".
        code: String,
        /// The diagnostic payload, if any, as text.
        diagnostic: String,
    },
    /// RFC 7252 §4.2: no acknowledgement after MAX_RETRANSMIT retransmissions.
    #[error("no response after {attempts} transmissions")]
    Timeout {
        /// Transmissions made.
        attempts: u32,
    },
    /// RFC 7252 §4.2: the peer rejected the message with RST.
    #[error("peer sent RST")]
    Reset,
    /// Transport I/O.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Another holder (a process, or another open in this one) uses the security context:
    /// two users of one context would reuse nonces.
    #[error("security context in use by another process or user (lock {path} is held)")]
    ContextLocked {
        /// The lock file that is held.
        path: String,
    },
    /// RFC 8613 Appendix B.1.1: the persistent sequence state of a context file is missing,
    /// so the numbers already used are unknown; starting at 0 could reuse nonces.
    #[error(
        "sequence state {path} is missing: the context may have been used, so it is not \
         started at 0 (re-provision it; a context that was never used can be given a state \
         with oscore::ctxfile::init_state)"
    )]
    StateMissing {
        /// The missing file.
        path: String,
    },
    /// RFC 9175 §2.4: the peer asked for an Echo round trip and the caller's guard declined
    /// to answer it (e.g. the action is no longer wanted); nothing was done by the peer.
    #[error("the peer asked to confirm the request (Echo) and the caller declined")]
    EchoRefused,
    /// RFC 9175 §2.4: the peer kept answering with Echo challenges.
    #[error("the peer asked for Echo {rounds} times in one exchange")]
    EchoLoop {
        /// Rounds answered.
        rounds: u32,
    },
    /// Context file (JSON) errors.
    #[error("security context file {path}: {reason}")]
    ContextFile {
        /// File name.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// RFC 8613 §8.2: the CoAP error code a server answers with when verification of a
    /// request fails, and the diagnostic payload. One place for the mapping.
    pub fn server_code(&self) -> (u8, &'static str) {
        match self {
            // §8.2 step 2: "Security context not found", 4.01.
            Error::UnknownKid { .. } => (0x81, "Security context not found"),
            // §8.2 step 3 (§7.4): "Replay detected", 4.01.
            Error::Replay { .. } => (0x81, "Replay detected"),
            // §8.2 step 6: "Decryption failed", 4.00.
            Error::DecryptFailed => (0x80, "Decryption failed"),
            // §8.2 step 2: decoding the option failed, 4.02 Bad Option.
            Error::MalformedOscoreOption(_) | Error::MissingField(_) => (0x82, "Bad OSCORE option"),
            Error::MessageTooLarge { .. } => (0x8d, "Request too large"),
            Error::NotProtected => (0x81, "OSCORE required"),
            _ => (0x80, "Bad request"),
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
