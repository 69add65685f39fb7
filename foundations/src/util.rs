//! Small helpers every service uses: the clock, randomness, base64, constant-time compare.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::Error;

/// Seconds since the Unix epoch. A clock before 1970 is treated as 0.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fixed-size array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| Error::Random)?;
    Ok(b)
}

/// Unpadded base64url (RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes unpadded base64url; padding and the other alphabet are rejected.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Standard padded base64.
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard padded base64.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// Constant-time equality for secrets (the lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Validates and normalises a product `VENDOR_UUID/CLASS_UUID` (lower-case, hyphenated), as
/// carried in access tokens and key-repository requests.
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_and_compare() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(b64url_decode("-_8=").is_none());
        assert_eq!(b64_decode(&b64(b"abc")).unwrap(), b"abc");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert_ne!(random_bytes::<16>().unwrap(), [0u8; 16]);
    }

    #[test]
    fn products() {
        let p = "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE/1492af14-2569-5e48-bf42-9b2d51f2ab45";
        assert_eq!(
            normalize_product(p).unwrap(),
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
        );
        let simple = "fa6b4a53d5ad5fdfbe9de663e4d41ffe/1492af1425695e48bf429b2d51f2ab45";
        assert_eq!(
            normalize_product(simple).unwrap(),
            normalize_product(p).unwrap()
        );
        assert!(normalize_product("x/y").is_none());
        assert!(normalize_product("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").is_none());
        assert!(
            normalize_product(
                "fa6b4a53-d5ad-5fdf-be9d+e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
            )
            .is_none()
        );
    }
}
