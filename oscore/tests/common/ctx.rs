//! Context helpers for the tests.

use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use zeroize::Zeroizing;

pub(crate) fn params(secret: u8, sender: &[u8], recipient: &[u8]) -> ContextParams {
    ContextParams {
        master_secret: Zeroizing::new(vec![secret; 16]),
        master_salt: b"salt".to_vec(),
        id_context: None,
        sender_id: sender.to_vec(),
        recipient_id: recipient.to_vec(),
    }
}

/// A fresh (client, server) pair.
pub(crate) fn pair() -> (SecurityContext, SecurityContext) {
    let c = SecurityContext::new(
        &params(7, b"\x01", b"\x02"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    let s = SecurityContext::new(
        &params(7, b"\x02", b"\x01"),
        Box::new(MemorySeqStore::new()),
    )
    .unwrap();
    (c, s)
}
