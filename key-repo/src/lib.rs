//! Key repository protected by OAuth 2.0. Built under issue 8.
#![forbid(unsafe_code)]
