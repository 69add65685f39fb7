//! OSCORE (RFC 8613) and CoAP block-wise transfer (RFC 7959). Built under issue 3.
#![forbid(unsafe_code)]
