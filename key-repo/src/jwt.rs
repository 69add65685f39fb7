//! ES256 JSON Web Tokens (RFC 7515/7519) as used for OAuth 2.0 access tokens (RFC 9068).
//!
//! Deliberately narrow: the only algorithm is ES256, fixed by the verifier and never taken
//! from the token (`alg: none` and HS256-with-the-public-key are rejected before any key is
//! used). Implemented over `p256` rather than a general JWT crate so that the algorithm is
//! pinned by the types and the workspace keeps one RustCrypto generation.

use std::collections::HashMap;
use std::path::Path;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::util::{b64url, b64url_decode};

/// Longest token accepted (bytes). Our tokens are ~600 bytes; IdPs rarely exceed 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Why a token was rejected. Logged and audited; never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} not allowed (ES256 only)")]
    AlgorithmNotAllowed(String),
    #[error("token type {0:?} is not an access token (at+jwt)")]
    WrongType(String),
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    #[error("no verification key for kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("signature does not verify")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued in the future")]
    IssuedInFuture,
    #[error("lifetime longer than allowed")]
    LifetimeTooLong,
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
}

/// JOSE header fields we look at.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// RFC 7515 §4.1.11: we understand no critical extensions, so any `crit` is rejected.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// `aud` may be a string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// Access token claims (RFC 9068 §2.2) plus our `products` claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub aud: Audience,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Every other claim (for example a configurable products claim from an external IdP).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A public key in JWK form (RFC 7517/7518, EC P-256 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The P-256 verifying key, if this JWK is one usable for ES256 signatures.
    pub fn to_verifying_key(&self) -> Option<VerifyingKey> {
        if self.kty != "EC" || self.crv.as_deref() != Some("P-256") {
            return None;
        }
        if self.alg.as_deref().is_some_and(|a| a != "ES256") {
            return None;
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let x = b64url_decode(self.x.as_deref()?)?;
        let y = b64url_decode(self.y.as_deref()?)?;
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(4);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        VerifyingKey::from_sec1_bytes(&sec1).ok()
    }

    pub fn from_verifying_key(vk: &VerifyingKey) -> Jwk {
        let point = vk.to_sec1_point(false);
        let bytes = point.as_bytes();
        let (x, y) = (b64url(&bytes[1..33]), b64url(&bytes[33..65]));
        // RFC 7638 thumbprint as kid: members in lexicographic order, no whitespace.
        let canon = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(&Sha256::digest(canon.as_bytes()));
        Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some(x),
            y: Some(y),
            kid: Some(kid),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
        }
    }
}

/// Verification keys of one issuer, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    /// Keys without a `kid` (then a token without `kid` may use them).
    anonymous: Vec<VerifyingKey>,
}

impl KeySet {
    pub fn from_jwks(jwks: &Jwks) -> KeySet {
        let mut set = KeySet::default();
        for jwk in jwks.keys.iter().take(64) {
            if let Some(vk) = jwk.to_verifying_key() {
                match &jwk.kid {
                    Some(kid) => {
                        set.keys.insert(kid.clone(), vk);
                    }
                    None => set.anonymous.push(vk),
                }
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.anonymous.is_empty()
    }

    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(k) => self.keys.contains_key(k),
            None => !self.anonymous.is_empty() || self.keys.len() == 1,
        }
    }

    fn candidates(&self, kid: Option<&str>) -> Vec<&VerifyingKey> {
        match kid {
            Some(k) => self.keys.get(k).into_iter().collect(),
            // Off-spec leniency: a token without kid is tried against a single-key set.
            None if self.keys.len() == 1 => self.keys.values().chain(&self.anonymous).collect(),
            None => self.anonymous.iter().collect(),
        }
    }
}

/// A token split into its parts; nothing in it is trusted yet.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub header: Header,
    /// Payload claims parsed, **not yet verified**: used only to pick the issuer's key set.
    pub claims: Claims,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

/// Which JWT `typ` a parser accepts (RFC 8725 §3.11: distinct types for distinct uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 9068 access token: `at+jwt`.
    AccessToken,
    /// RFC 7523 client assertion: `typ` absent or `JWT` (never `at+jwt`, so an access token
    /// cannot be replayed as a client credential).
    ClientAssertion,
}

/// Splits and parses a compact JWS and enforces the header policy (ES256, at+jwt, no crit).
pub fn parse(token: &str) -> Result<Unverified<'_>, JwtError> {
    parse_kind(token, Kind::AccessToken)
}

/// As [`parse`], for the given kind of token.
pub fn parse_kind(token: &str, kind: Kind) -> Result<Unverified<'_>, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("length"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwtError::Malformed("not a compact JWS"));
    };
    let header_bytes = b64url_decode(h).ok_or(JwtError::Malformed("header encoding"))?;
    let header: Header =
        serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Malformed("header json"))?;
    // RFC 8725 §3.1: the algorithm is fixed by the verifier. This rejects "none", HS256
    // (the public-key-as-HMAC-secret confusion), RS256, ES384 ... before any key is touched.
    if header.alg != "ES256" {
        return Err(JwtError::AlgorithmNotAllowed(header.alg));
    }
    if header.crit.is_some() {
        return Err(JwtError::Malformed("crit header"));
    }
    // RFC 9068 §4: access tokens are typed "at+jwt" (explicit typing, RFC 8725 §3.11).
    let typ = header.typ.clone().unwrap_or_default();
    let ok = match kind {
        Kind::AccessToken => {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        }
        Kind::ClientAssertion => typ.is_empty() || typ.eq_ignore_ascii_case("JWT"),
    };
    if !ok {
        return Err(JwtError::WrongType(typ));
    }
    let payload = b64url_decode(p).ok_or(JwtError::Malformed("payload encoding"))?;
    let claims: Claims =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("claims"))?;
    let signature = b64url_decode(s).ok_or(JwtError::Malformed("signature encoding"))?;
    if signature.len() != 64 {
        return Err(JwtError::BadSignature);
    }
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(Unverified {
        header,
        claims,
        signing_input,
        signature,
    })
}

impl Unverified<'_> {
    /// Checks the signature with the issuer's keys; returns the claims only if it verifies.
    pub fn verify_signature(self, keys: &KeySet) -> Result<Claims, JwtError> {
        let kid = self.header.kid.as_deref();
        let candidates = keys.candidates(kid);
        if candidates.is_empty() {
            return Err(JwtError::UnknownKey(self.header.kid.clone()));
        }
        // RFC 7518 §3.4: R ‖ S, 32 bytes each.
        let sig = Signature::from_slice(&self.signature).map_err(|_| JwtError::BadSignature)?;
        if candidates
            .iter()
            .any(|vk| vk.verify(self.signing_input, &sig).is_ok())
        {
            Ok(self.claims)
        } else {
            Err(JwtError::BadSignature)
        }
    }
}

/// Time-based and audience checks (RFC 7519 §4.1, RFC 9068 §4).
pub fn check_claims(
    claims: &Claims,
    audience: &str,
    now: u64,
    leeway: u64,
    max_lifetime: u64,
) -> Result<(), JwtError> {
    if !claims.aud.contains(audience) {
        return Err(JwtError::WrongAudience);
    }
    if now >= claims.exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(JwtError::NotYetValid);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    if claims.exp.saturating_sub(claims.iat) > max_lifetime {
        return Err(JwtError::LifetimeTooLong);
    }
    Ok(())
}

/// The built-in authorization server's ES256 token-signing key.
pub struct TokenSigner {
    key: SigningKey,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn generate() -> Result<Self, Error> {
        loop {
            let bytes = zeroize::Zeroizing::new(crate::util::random_bytes::<32>()?);
            // A random 256-bit string is a valid scalar except with probability ~2^-32.
            if let Ok(key) = SigningKey::from_slice(&bytes[..]) {
                return Ok(Self::from_key(key));
            }
        }
    }

    fn from_key(key: SigningKey) -> Self {
        let jwk = Jwk::from_verifying_key(key.verifying_key());
        TokenSigner { key, jwk }
    }

    pub fn load(path: &Path) -> Result<Self, Error> {
        let pem =
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| Error::Config {
            path: path.display().to_string(),
            reason: "not a PKCS#8 PEM P-256 private key".into(),
        })?;
        Ok(Self::from_key(key))
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Corrupt("cannot encode signing key".into()))?;
        crate::crypto::write_secret_file(path, pem.as_bytes())
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks(&Jwks {
            keys: vec![self.jwk.clone()],
        })
    }

    /// Signs `claims` as an RFC 9068 access token.
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        self.sign_typed("at+jwt", claims)
    }

    /// Signs `claims` as a JWS with the given `typ` (e.g. `JWT` for a client assertion).
    pub fn sign_typed(&self, typ: &str, claims: &Claims) -> Result<String, Error> {
        let header = serde_json::json!({
            "alg": "ES256",
            "typ": typ,
            "kid": self.jwk.kid,
        });
        let h = b64url(&serde_json::to_vec(&header).map_err(|e| Error::Corrupt(e.to_string()))?);
        let p = b64url(&serde_json::to_vec(claims).map_err(|e| Error::Corrupt(e.to_string()))?);
        let input = format!("{h}.{p}");
        let sig: Signature = self.key.sign(input.as_bytes());
        Ok(format!("{input}.{}", b64url(&sig.to_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "https://kr".into(),
            sub: Some("c1".into()),
            aud: Audience::One("https://kr/v1".into()),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: Some("j".into()),
            client_id: Some("c1".into()),
            scope: Some("keys:read".into()),
            extra: Default::default(),
        }
    }

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let s = TokenSigner::generate().unwrap();
        let now = 1_700_000_000;
        let tok = s.sign(&claims(now)).unwrap();
        let c = parse(&tok).unwrap().verify_signature(&s.key_set()).unwrap();
        check_claims(&c, "https://kr/v1", now, 0, 3600).unwrap();
        assert_eq!(
            check_claims(&c, "other", now, 0, 3600),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            check_claims(&c, "https://kr/v1", now + 301, 0, 3600),
            Err(JwtError::Expired)
        );
        // Change one claim, keep the signature.
        let parts: Vec<&str> = tok.split('.').collect();
        let mut c2 = claims(now);
        c2.scope = Some("keys:write".into());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(&serde_json::to_vec(&c2).unwrap()),
            parts[2]
        );
        assert_eq!(
            parse(&forged)
                .unwrap()
                .verify_signature(&s.key_set())
                .unwrap_err(),
            JwtError::BadSignature
        );
        let other = TokenSigner::generate().unwrap();
        let e = parse(&tok)
            .unwrap()
            .verify_signature(&other.key_set())
            .unwrap_err();
        assert!(matches!(e, JwtError::UnknownKey(_)), "{e:?}");
    }

    #[test]
    fn header_policy() {
        let body = b64url(br#"{"iss":"a","aud":"b","exp":1,"iat":0}"#);
        for (hdr, want) in [
            (r#"{"alg":"none","typ":"at+jwt"}"#, "alg"),
            (r#"{"alg":"HS256","typ":"at+jwt"}"#, "alg"),
            (r#"{"alg":"es256","typ":"at+jwt"}"#, "alg"),
            (r#"{"alg":"ES256","typ":"JWT"}"#, "typ"),
            (r#"{"alg":"ES256","typ":"at+jwt","crit":["x"]}"#, "crit"),
        ] {
            let tok = format!("{}.{body}.{}", b64url(hdr.as_bytes()), b64url(&[0; 64]));
            let e = parse(&tok).unwrap_err();
            let ok = match want {
                "alg" => matches!(e, JwtError::AlgorithmNotAllowed(_)),
                "typ" => matches!(e, JwtError::WrongType(_)),
                _ => matches!(e, JwtError::Malformed(_)),
            };
            assert!(ok, "{hdr}: {e:?}");
        }
        assert!(parse("a.b").is_err());
        assert!(parse(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn jwk_roundtrip() {
        let s = TokenSigner::generate().unwrap();
        let jwks: Jwks = serde_json::from_value(
            serde_json::json!({"keys": [s.jwk(), {"kty": "RSA", "n": "x"}]}),
        )
        .unwrap();
        let set = KeySet::from_jwks(&jwks);
        assert!(set.has_kid(s.jwk().kid.as_deref()));
    }
}
