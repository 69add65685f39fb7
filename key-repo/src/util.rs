//! Small helpers: time, randomness, percent-decoding, base64url.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Seconds since the Unix epoch. A clock before 1970 is treated as 0.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fills a fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], crate::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| crate::Error::Random)?;
    Ok(b)
}

/// Unpadded base64url (RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes unpadded base64url; padding and other alphabets are rejected.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Standard padded base64 (used for `cose_key` on the wire).
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard padded base64.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` an octet).
/// Returns `None` on malformed escapes or non-UTF-8 results.
pub fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Parses a form body into pairs; duplicate parameters are an error (RFC 6749 §3.2).
pub fn parse_form(body: &str) -> Option<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (form_decode(k)?, form_decode(v)?);
        if out.iter().any(|(ek, _)| *ek == k) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

/// A `kid` as used in URLs: 1 to 128 characters of `[A-Za-z0-9._~-]`.
pub fn valid_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Validates and normalises a product `VENDOR_UUID/CLASS_UUID` (lower-case hyphenated).
pub fn normalize_product(p: &str) -> Option<String> {
    if p.len() > 80 {
        return None;
    }
    let (v, c) = p.split_once('/')?;
    let v = uuid::Uuid::try_parse(v).ok()?;
    let c = uuid::Uuid::try_parse(c).ok()?;
    Some(format!("{}/{}", v.hyphenated(), c.hyphenated()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        let f = parse_form("grant_type=client_credentials&scope=keys%3Aread").unwrap();
        assert_eq!(f[1], ("scope".into(), "keys:read".into()));
        assert!(parse_form("a=1&a=2").is_none());
    }

    #[test]
    fn kids_and_products() {
        assert!(valid_kid("release-42.k1"));
        assert!(!valid_kid(""));
        assert!(!valid_kid("a/b"));
        assert!(!valid_kid(&"a".repeat(129)));
        let p = "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE/1492af14-2569-5e48-bf42-9b2d51f2ab45";
        assert_eq!(
            normalize_product(p).unwrap(),
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
        );
        assert!(normalize_product("x/y").is_none());
        assert!(normalize_product("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").is_none());
    }
}
