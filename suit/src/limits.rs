//! Bounds applied to everything decoded from untrusted bytes.

/// Size, depth and count limits for decoding envelopes. The defaults suit envelopes with
/// detached payloads; raise `max_envelope_len` / `max_bstr_len` for integrated payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted envelope, in bytes.
    pub max_envelope_len: usize,
    /// Largest byte string.
    pub max_bstr_len: usize,
    /// Largest text string.
    pub max_text_len: usize,
    /// Deepest nesting of arrays, maps and tags within one encoded item.
    pub max_depth: usize,
    /// Most elements in one array or map.
    pub max_collection_len: usize,
    /// Most CBOR items in one decoded object.
    pub max_items: usize,
    /// Most COSE authentication blocks in the authentication wrapper.
    pub max_auth_blocks: usize,
    /// Most components in a manifest.
    pub max_components: usize,
    /// Most commands executed while processing (bounds try-each / run-sequence loops).
    pub max_commands_executed: usize,
    /// Deepest nesting of command sequences (try-each, run-sequence).
    pub max_sequence_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_len: 1 << 20,
            max_bstr_len: 1 << 20,
            max_text_len: 64 << 10,
            max_depth: 16,
            max_collection_len: 1024,
            max_items: 16 * 1024,
            max_auth_blocks: 8,
            max_components: 16,
            max_commands_executed: 4096,
            max_sequence_depth: 8,
        }
    }
}
