//! Request parsing specific to the key repository: form bodies (RFC 6749 token requests)
//! and key ids. Generic helpers (clock, randomness, base64, product names) are in
//! `foundations`.

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
    fn kids() {
        assert!(valid_kid("release-42.k1"));
        assert!(!valid_kid(""));
        assert!(!valid_kid("a/b"));
        assert!(!valid_kid(&"a".repeat(129)));
    }
}
