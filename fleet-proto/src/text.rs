//! The rules for text fields, one function each, used by the decoders and by anyone who
//! makes a value that will travel (the dispatcher checks a device name at enrolment with
//! [`valid_device_name`], the same rule the device applies to its bundle).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine as _;

use crate::limits;

/// A rule a text field (or a group of fields) must follow; the `Display` form completes
/// "must be …" in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// 64 lowercase hex digits (hex SHA-256 of the manifest bstr).
    ReleaseId,
    /// A release id, or `factory` for the factory image.
    SlotRelease,
    /// 64 lowercase hex digits.
    Sha256,
    /// 1-128 characters of `0-9 A-Z a-z . + - _ ~`.
    Version,
    /// 1-64 characters of `a-z 0-9 -`.
    CheckCode,
    /// 1-64 characters of `A-Z a-z 0-9 - _ .`, not starting with a dot.
    DeviceName,
    /// 1-64 printable ASCII characters, no space.
    Kid,
    /// Text without control characters other than tab and newline.
    Message,
    /// Hex of `min..=max` bytes.
    Hex {
        /// Fewest bytes.
        min: usize,
        /// Most bytes.
        max: usize,
    },
    /// A UUID in its hyphenated form (36 characters).
    Uuid,
    /// An SPKI public key in PEM.
    Pem,
    /// `coap://host[:port]`.
    CoapUri,
    /// The bundle format tag.
    Format,
    /// One of the listed words.
    OneOf(&'static [&'static str]),
    /// The sender and recipient ids of one context differ (RFC 8613 §3.3).
    DistinctIds,
    /// The push and uplink contexts have different master secrets.
    SeparateSecrets,
    /// At least one manufacturer key.
    AtLeastOneKey,
    /// An approver key when approval is required.
    ApproverRequired,
    /// A trust store in the project's format, every entry valid, keys inline.
    TrustStore,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::ReleaseId => f.write_str("a release id (64 lowercase hex digits)"),
            Rule::SlotRelease => {
                f.write_str("a release id (64 lowercase hex digits) or \"factory\"")
            }
            Rule::Sha256 => f.write_str("a SHA-256 digest (64 lowercase hex digits)"),
            Rule::Version => write!(
                f,
                "a version (1-{} characters of 0-9 A-Z a-z . + - _ ~)",
                limits::MAX_VERSION
            ),
            Rule::CheckCode => write!(
                f,
                "a check code (1-{} characters of a-z 0-9 -)",
                limits::MAX_CHECK
            ),
            Rule::DeviceName => write!(
                f,
                "a device name (1-{} characters of A-Z a-z 0-9 - _ ., not starting with a dot: \
                 no \".\", \"..\" or path separators)",
                limits::MAX_NAME
            ),
            Rule::Kid => write!(
                f,
                "a key id (1-{} printable ASCII characters, no space)",
                limits::MAX_KID
            ),
            Rule::Message => f.write_str("text without control characters but tab and newline"),
            Rule::Hex { min, max } => write!(f, "hex of {min}..={max} bytes"),
            Rule::Uuid => f.write_str("a UUID (hyphenated, 36 characters)"),
            Rule::Pem => f.write_str("a public key in PEM (-----BEGIN PUBLIC KEY-----)"),
            Rule::CoapUri => f.write_str("a coap://host[:port] URI"),
            Rule::Format => write!(f, "{:?}", crate::bundle::FORMAT),
            Rule::OneOf(words) => {
                f.write_str("one of ")?;
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{w:?}")?;
                }
                Ok(())
            }
            Rule::DistinctIds => f.write_str("different from the recipient id (RFC 8613 §3.3)"),
            Rule::SeparateSecrets => {
                f.write_str("a master secret different from the push context's")
            }
            Rule::AtLeastOneKey => f.write_str("at least one manufacturer key"),
            Rule::ApproverRequired => {
                f.write_str("an approver key present when require_approval is true")
            }
            Rule::TrustStore => f.write_str(
                "a trust store (TOML, docs/trust-store.md) whose every entry is valid, keys inline",
            ),
        }
    }
}

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A release id: 64 lowercase hex digits (SHA-256 of the manifest bstr). Check it before it
/// goes into a request path or a file name.
pub fn valid_release_id(s: &str) -> bool {
    s.len() == 64 && lower_hex(s)
}

/// A SHA-256 digest: 64 lowercase hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && lower_hex(s)
}

/// A version: 1-128 characters of `0-9 A-Z a-z . + - _ ~` (`X.Y.Z` from a manifest, with
/// negative SUIT components, or an operator's factory version such as `1.0.0-rc1`).
pub fn valid_version(s: &str) -> bool {
    (1..=limits::MAX_VERSION).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'_' | b'~'))
}

/// A check code: 1-64 characters of `a-z 0-9 -` (`suit::Error::code`, `too-large`).
pub fn valid_check_code(s: &str) -> bool {
    (1..=limits::MAX_CHECK).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// A device name: 1-64 characters of `A-Z a-z 0-9 - _ .`, not starting with a dot. The
/// dispatcher names a directory after it, so `.` and `..` (issue 13: their context files
/// landed in the data directory itself), hidden names and path separators are refused.
pub fn valid_device_name(s: &str) -> bool {
    (1..=limits::MAX_NAME).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A key id as text: 1-64 printable ASCII characters, no space.
pub fn valid_kid(s: &str) -> bool {
    (1..=limits::MAX_KID).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Report text: no control characters other than tab and newline.
pub fn valid_message(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\t' && c != '\n')
}

/// `s` made into a valid report message: control characters (other than tab and newline)
/// become spaces, and the text is cut at a character boundary to at most
/// [`limits::MAX_MESSAGE`] bytes. For devices building a report from an error's text.
pub fn clip_message(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(limits::MAX_MESSAGE));
    for c in s.chars() {
        let c = if c.is_control() && c != '\t' && c != '\n' {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > limits::MAX_MESSAGE {
            break;
        }
        out.push(c);
    }
    out
}

/// Hex (either case, as the `oscore` crate's context files) of `min..=max` bytes.
pub fn valid_hex(s: &str, min: usize, max: usize) -> bool {
    s.len().is_multiple_of(2)
        && (min..=max).contains(&(s.len() / 2))
        && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A UUID in the hyphenated form `serde` writes (either case).
pub(crate) fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(s).ok()
}

/// An SPKI public key in PEM: the `PUBLIC KEY` armour around standard base64 of a DER
/// SEQUENCE, at most [`limits::MAX_PEM`] bytes. Syntax only: whether the key is a usable
/// P-256 key is for the crypto library of whoever installs it.
pub fn valid_pem(s: &str) -> bool {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    if s.len() > limits::MAX_PEM {
        return false;
    }
    let Some(body) = s
        .trim_end_matches(['\n', '\r'])
        .strip_prefix(BEGIN)
        .and_then(|b| b.strip_suffix(END))
    else {
        return false;
    };
    if !body.starts_with(['\n', '\r']) || !body.ends_with('\n') {
        return false;
    }
    let b64: String = body.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
    if b64.is_empty()
        || !b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return false;
    }
    matches!(
        base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()),
        Ok(der) if der.first() == Some(&0x30)
    )
}

/// The dispatcher's address as the bundle names it: `coap://host[:port][/]`, host an IPv4
/// address, a bracketed IPv6 address or a DNS name; the port defaults to 5683 (RFC 7252
/// §6.1). No user info, path, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapUri {
    /// Host: an IP address (IPv6 without brackets) or a DNS name, to be resolved by the
    /// caller.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The default CoAP port (RFC 7252 §6.1).
pub const COAP_PORT: u16 = 5683;

impl CoapUri {
    /// Parses a `coap://` URI (see the type); None when it breaks the rule
    /// ([`Rule::CoapUri`]).
    pub fn parse(s: &str) -> Option<CoapUri> {
        if s.len() > limits::MAX_URI {
            return None;
        }
        let rest = s.strip_prefix("coap://")?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            h.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (h, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        // A bracketed host was checked above as an IPv6 address.
        if !authority.starts_with('[') && host.parse::<Ipv4Addr>().is_err() && !dns_name(host) {
            return None;
        }
        let port = match port {
            None => COAP_PORT,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u16>().ok().filter(|p| *p != 0)?
            }
            Some(_) => return None,
        };
        Some(CoapUri {
            host: host.to_owned(),
            port,
        })
    }
}

/// A DNS name (RFC 1123 §2.1): labels of letters, digits and hyphens, 1-63 characters, not
/// starting or ending with a hyphen; at most 253 characters; not all digits and dots (that
/// would be a malformed IPv4 address).
fn dns_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        for ok in ["plc-7", "a", "rtu_1.b", &"x".repeat(64), "a..b"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "..\\x",
            "a\\b",
            "../etc",
            "a b",
            "é",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(!valid_device_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn release_ids_and_digests() {
        assert!(valid_release_id(&"0a".repeat(32)));
        for bad in [
            "AB".repeat(32),
            "0".repeat(63),
            "0".repeat(65),
            "g".repeat(64),
            "../x".into(),
            String::new(),
        ] {
            assert!(!valid_release_id(&bad), "{bad}");
        }
    }

    #[test]
    fn versions_and_checks() {
        for ok in ["1.0.0", "2.0.5", "1.-1.3", "1.0.0-rc1+build.7", "unknown"] {
            assert!(valid_version(ok), "{ok}");
        }
        // Six SUIT components of the widest i64 fit.
        let widest = ["-9223372036854775808"; 6].join(".");
        assert!(valid_version(&widest));
        for bad in ["", "1.0 beta", "1.0\n", "v1/2", &"1".repeat(129)] {
            assert!(!valid_version(bad), "{bad:?}");
        }
        for ok in ["rollback", "signature-invalid", "too-large"] {
            assert!(valid_check_code(ok));
        }
        for bad in ["", "Rollback", "a b", "x\u{7f}", &"a".repeat(65)] {
            assert!(!valid_check_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn messages_are_clipped_to_valid_text() {
        let long = "é".repeat(3000);
        let c = clip_message(&long);
        assert!(c.len() <= limits::MAX_MESSAGE && c.len() >= limits::MAX_MESSAGE - 1);
        assert!(valid_message(&c));
        assert_eq!(clip_message("a\u{1b}[31mb\nc"), "a [31mb\nc");
        assert!(!valid_message("a\rb"));
    }

    #[test]
    fn hex_is_bounded() {
        assert!(valid_hex("", 0, 7));
        assert!(valid_hex("0107", 0, 7));
        assert!(valid_hex("AB", 0, 7));
        assert!(!valid_hex("0", 0, 7));
        assert!(!valid_hex("0x", 0, 7));
        assert!(!valid_hex(" 0", 0, 7));
        assert!(!valid_hex(&"00".repeat(8), 0, 7));
        assert!(!valid_hex(&"00".repeat(15), 16, 64));
    }

    #[test]
    fn pem_syntax() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
        assert!(valid_pem(pem));
        assert!(valid_pem(pem.trim_end()));
        assert!(valid_pem(&pem.replace('\n', "\r\n")));
        for bad in [
            "",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
            &pem.replace("PUBLIC", "PRIVATE"),
            &pem.replace("MFkw", "M*kw"),
            "-----BEGIN PUBLIC KEY-----\n\n-----END PUBLIC KEY-----\n",
            // Decodes, but not to a DER SEQUENCE.
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert!(!valid_pem(bad), "{bad:?}");
        }
    }

    #[test]
    fn coap_uris() {
        let p = |s: &str| CoapUri::parse(s).map(|u| (u.host, u.port));
        assert_eq!(p("coap://127.0.0.1:6000"), Some(("127.0.0.1".into(), 6000)));
        assert_eq!(
            p("coap://127.0.0.1:6000/"),
            Some(("127.0.0.1".into(), 6000))
        );
        assert_eq!(p("coap://127.0.0.1"), Some(("127.0.0.1".into(), 5683)));
        assert_eq!(p("coap://[::1]:6000"), Some(("::1".into(), 6000)));
        assert_eq!(p("coap://[::1]"), Some(("::1".into(), 5683)));
        assert_eq!(
            p("coap://dispatcher.plant-1.local"),
            Some(("dispatcher.plant-1.local".into(), 5683))
        );
        for bad in [
            "http://127.0.0.1:6000",
            "coap://",
            "coaps://127.0.0.1",
            "coap://127.0.0.1:6000/d/checkin",
            "coap://user@127.0.0.1",
            "coap://127.0.0.1:0",
            "coap://127.0.0.1:65536",
            "coap://127.0.0.1:+1",
            "coap://::1",
            "coap://[::1]6000",
            "coap://[nonsense]:1",
            "coap://1.2.3.4.5",
            "coap://-a.example",
            "coap://a..b",
            "coap://host:1?x",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(p(&format!("coap://{}", "a".repeat(300))), None);
    }
}
