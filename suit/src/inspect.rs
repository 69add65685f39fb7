//! Human- and machine-readable descriptions of an envelope (for `publisher inspect`).
