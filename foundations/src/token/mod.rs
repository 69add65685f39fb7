//! OAuth 2.0 access tokens: ES256 JSON Web Tokens (RFC 7519, RFC 9068), verified and signed
//! with the `jsonwebtoken` crate (RustCrypto backend).
//!
//! The policy around the library:
//!
//! * the algorithm is ES256, fixed by the verifier and never taken from the token (RFC 8725
//!   §3.1): the header is checked for `alg: ES256` before any key is chosen, and
//!   `jsonwebtoken` is given ES256 as the only algorithm, so `none`, `HS256` with the public
//!   key as secret, `RS256` and `ES384` are refused;
//! * explicit typing (RFC 8725 §3.11): access tokens carry `typ: at+jwt` (RFC 9068 §4);
//!   client assertions (RFC 7523) must not, so one cannot be replayed as the other;
//! * no `crit` header is understood, so any is refused (RFC 7515 §4.1.11);
//! * audience by `jsonwebtoken`; `exp`, `nbf` and `iat` here, with the caller's clock and
//!   leeway, plus a longest lifetime (`exp - iat`) that bounds the damage of a leaked token;
//! * at most [`MAX_TOKEN_LEN`] bytes are looked at;
//! * every refusal is a typed [`TokenError`], for logs and audit records; clients are told
//!   only that the token was refused.

mod verifier;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Error, b64url, b64url_decode};

pub use verifier::{IssuerConfig, IssuerSpec, KeySource, Principal, Verifier};

/// Longest token accepted (bytes). Our tokens are ~600 bytes; IdPs rarely exceed 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Why a token was refused. Logged and audited; never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS of bounded size with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm than ES256.
    #[error("algorithm {0:?} not allowed (ES256 only)")]
    AlgorithmNotAllowed(String),
    /// Wrong `typ` for this use.
    #[error("token type {0:?} is not allowed here")]
    WrongType(String),
    /// No configured issuer has this `iss`.
    #[error("unknown issuer {0:?}")]
    UnknownIssuer(String),
    /// The issuer has no key with this `kid`.
    #[error("no verification key for kid {0:?}")]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `aud` does not name this service.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` is past (beyond the leeway).
    #[error("expired")]
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is ahead (beyond the leeway).
    #[error("issued in the future")]
    IssuedInFuture,
    /// `exp - iat` exceeds the longest lifetime accepted.
    #[error("lifetime longer than allowed")]
    LifetimeTooLong,
    /// A claim this service needs is missing.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
}

/// `aud` may be a string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` is among them.
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

/// Access token claims (RFC 9068 §2.2), plus every other claim in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    pub aud: Audience,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// OAuth client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Every other claim (for example a products claim).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A public key in JWK form (RFC 7517/7518; only EC P-256 keys are usable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type (`EC`).
    pub kty: String,
    /// Curve (`P-256`).
    #[serde(default)]
    pub crv: Option<String>,
    /// X coordinate, base64url.
    #[serde(default)]
    pub x: Option<String>,
    /// Y coordinate, base64url.
    #[serde(default)]
    pub y: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, if restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Use, if restricted.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JWK set (RFC 7517 §5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
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

    /// The JWK of a P-256 key, with its RFC 7638 thumbprint as `kid`.
    pub fn from_verifying_key(vk: &VerifyingKey) -> Jwk {
        let point = vk.to_sec1_point(false);
        let bytes = point.as_bytes();
        let (x, y) = (b64url(&bytes[1..33]), b64url(&bytes[33..65]));
        // RFC 7638: members in lexicographic order, no whitespace.
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

    fn to_decoding_key(&self) -> Option<DecodingKey> {
        self.to_verifying_key()?;
        DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()
    }
}

/// Verification keys of one issuer, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// Keys without a `kid` (then a token without `kid` may use them).
    anonymous: Vec<DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("anonymous", &self.anonymous.len())
            .finish()
    }
}

impl KeySet {
    /// The usable (ES256 P-256) keys of a JWKS; at most 64 are looked at.
    pub fn from_jwks(jwks: &Jwks) -> KeySet {
        let mut set = KeySet::default();
        for jwk in jwks.keys.iter().take(64) {
            if let Some(k) = jwk.to_decoding_key() {
                match &jwk.kid {
                    Some(kid) => {
                        set.keys.insert(kid.clone(), k);
                    }
                    None => set.anonymous.push(k),
                }
            }
        }
        set
    }

    /// No usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.anonymous.is_empty()
    }

    /// Whether a token with this `kid` has a candidate key.
    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        !self.candidates(kid).is_empty()
    }

    fn candidates(&self, kid: Option<&str>) -> Vec<&DecodingKey> {
        match kid {
            Some(k) => self.keys.get(k).into_iter().collect(),
            // Off-spec leniency: a token without kid is tried against a single-key set.
            None if self.keys.len() == 1 => self.keys.values().chain(&self.anonymous).collect(),
            None => self.anonymous.iter().collect(),
        }
    }
}

/// Which JWT `typ` a verifier accepts (RFC 8725 §3.11: distinct types for distinct uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 9068 access token: `at+jwt`.
    AccessToken,
    /// RFC 7523 client assertion: `typ` absent or `JWT` (never `at+jwt`).
    ClientAssertion,
}

/// Time rules applied to every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (seconds).
    pub leeway: u64,
    /// Longest `exp - iat` accepted (seconds).
    pub max_lifetime: u64,
}

/// What can be read from a token before its signature is checked, to choose the keys.
/// Nothing in it is trusted.
#[derive(Debug, Clone)]
pub struct Unverified {
    /// `kid` of the header.
    pub kid: Option<String>,
    /// `iss` of the claims.
    pub iss: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawIssuer {
    iss: String,
}

/// Checks the size, the shape and the header policy (ES256, `typ` for `kind`, no `crit`) and
/// returns the header `kid` and the (unverified) issuer.
pub fn peek(token: &str, kind: Kind) -> Result<Unverified, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("length"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(_), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(TokenError::Malformed("not a compact JWS"));
    };
    let header = b64url_decode(h).ok_or(TokenError::Malformed("header encoding"))?;
    let header: RawHeader =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed("header json"))?;
    // RFC 8725 §3.1: the algorithm is fixed by the verifier, before any key is touched.
    if header.alg != "ES256" {
        return Err(TokenError::AlgorithmNotAllowed(header.alg));
    }
    // RFC 7515 §4.1.11: we understand no critical extension.
    if header.crit.is_some() {
        return Err(TokenError::Malformed("crit header"));
    }
    // RFC 9068 §4 / RFC 8725 §3.11: explicit typing.
    let typ = header.typ.unwrap_or_default();
    let ok = match kind {
        Kind::AccessToken => {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        }
        Kind::ClientAssertion => typ.is_empty() || typ.eq_ignore_ascii_case("JWT"),
    };
    if !ok {
        return Err(TokenError::WrongType(typ));
    }
    let payload = b64url_decode(p).ok_or(TokenError::Malformed("payload encoding"))?;
    let iss: RawIssuer =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("claims"))?;
    Ok(Unverified {
        kid: header.kid,
        iss: iss.iss,
    })
}

/// Verifies `token` of `kind` against `keys`: header policy, signature, audience, then the
/// time rules at `now`. Returns the claims only if everything holds.
pub fn verify(
    token: &str,
    kind: Kind,
    keys: &KeySet,
    audience: &str,
    now: u64,
    rules: TimeRules,
) -> Result<Claims, TokenError> {
    let u = peek(token, kind)?;
    let candidates = keys.candidates(u.kid.as_deref());
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey(u.kid));
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    // Time is checked below with the caller's clock (jsonwebtoken reads the system clock and
    // has no `iat` or lifetime rule).
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    let mut refusal = TokenError::BadSignature;
    for key in candidates {
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => {
                check_times(&data.claims, now, rules)?;
                return Ok(data.claims);
            }
            Err(e) => {
                refusal = refusal_of(e.kind());
                if refusal != TokenError::BadSignature {
                    break;
                }
            }
        }
    }
    Err(refusal)
}

fn refusal_of(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => {
            TokenError::BadSignature
        }
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::AlgorithmNotAllowed("ES256 expected".into())
        }
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => TokenError::Malformed("claims"),
        _ => TokenError::Malformed("jws"),
    }
}

/// RFC 7519 §4.1.4, §4.1.5, §4.1.6 with `leeway`; RFC 9068 §4: a longest lifetime.
fn check_times(c: &Claims, now: u64, rules: TimeRules) -> Result<(), TokenError> {
    let leeway = rules.leeway;
    if now >= c.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = c.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if c.iat > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if c.exp.saturating_sub(c.iat) > rules.max_lifetime {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(())
}

/// An ES256 token-signing key (the key repository's built-in authorization server, and
/// clients signing RFC 7523 assertions).
pub struct TokenSigner {
    key: SigningKey,
    encoding: EncodingKey,
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
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        loop {
            let bytes = zeroize::Zeroizing::new(crate::random_bytes::<32>()?);
            // A random 256-bit string is a valid scalar except with probability ~2^-32.
            if let Ok(key) = SigningKey::from_slice(&bytes[..]) {
                return Self::from_key(key);
            }
        }
    }

    fn from_key(key: SigningKey) -> Result<Self, Error> {
        let der = key
            .to_pkcs8_der()
            .map_err(|_| Error::Crypto("cannot encode the signing key".into()))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let jwk = Jwk::from_verifying_key(key.verifying_key());
        Ok(TokenSigner { key, encoding, jwk })
    }

    /// Reads a PKCS#8 PEM P-256 private key.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let pem = crate::fs::read_secret_file(path)?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| Error::Config {
            path: path.display().to_string(),
            reason: "not a PKCS#8 PEM P-256 private key".into(),
        })?;
        Self::from_key(key)
    }

    /// Writes the key as PKCS#8 PEM, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Crypto("cannot encode the signing key".into()))?;
        crate::fs::write_secret_file(path, pem.as_bytes())
    }

    /// The public key as a JWK (kid = its thumbprint).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public key as a one-key set.
    pub fn key_set(&self) -> KeySet {
        KeySet::from_jwks(&Jwks {
            keys: vec![self.jwk.clone()],
        })
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`).
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        self.sign_typed("at+jwt", claims)
    }

    /// Signs `claims` as a JWS with the given `typ` (e.g. `JWT` for a client assertion).
    pub fn sign_typed(&self, typ: &str, claims: &Claims) -> Result<String, Error> {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_string());
        header.kid = self.jwk.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("token signing: {e}")))
    }
}

/// Shared verification keys, swapped whole when a JWKS is re-fetched.
type SharedKeys = Arc<KeySet>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RULES: TimeRules = TimeRules {
        leeway: 0,
        max_lifetime: 3600,
    };

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

    fn access(tok: &str, keys: &KeySet, aud: &str, now: u64) -> Result<Claims, TokenError> {
        verify(tok, Kind::AccessToken, keys, aud, now, RULES)
    }

    #[test]
    fn sign_verify_roundtrip_times_and_tamper() {
        let s = TokenSigner::generate().unwrap();
        let now = 1_700_000_000;
        let tok = s.sign(&claims(now)).unwrap();
        let c = access(&tok, &s.key_set(), "https://kr/v1", now).unwrap();
        assert_eq!(c, claims(now));
        let keys = s.key_set();
        assert_eq!(
            access(&tok, &keys, "other", now),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            access(&tok, &keys, "https://kr/v1", now + 300),
            Err(TokenError::Expired)
        );
        assert_eq!(
            access(&tok, &keys, "https://kr/v1", now - 1),
            Err(TokenError::NotYetValid)
        );
        let mut long = claims(now);
        long.exp = now + 3601;
        let t = s.sign(&long).unwrap();
        assert_eq!(
            access(&t, &keys, "https://kr/v1", now),
            Err(TokenError::LifetimeTooLong)
        );
        let mut future = claims(now);
        future.nbf = None;
        future.iat = now + 10;
        let t = s.sign(&future).unwrap();
        assert_eq!(
            access(&t, &keys, "https://kr/v1", now),
            Err(TokenError::IssuedInFuture)
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
            access(&forged, &keys, "https://kr/v1", now),
            Err(TokenError::BadSignature)
        );
        // A truncated signature, and a signature of the wrong length.
        let short = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert_eq!(
            access(&short, &keys, "https://kr/v1", now),
            Err(TokenError::BadSignature)
        );
        let other = TokenSigner::generate().unwrap();
        let e = access(&tok, &other.key_set(), "https://kr/v1", now).unwrap_err();
        assert!(matches!(e, TokenError::UnknownKey(_)), "{e:?}");
        // An access token is not a client assertion, and the reverse.
        let e = verify(
            &tok,
            Kind::ClientAssertion,
            &keys,
            "https://kr/v1",
            now,
            RULES,
        );
        assert!(matches!(e, Err(TokenError::WrongType(_))), "{e:?}");
        let assertion = s.sign_typed("JWT", &claims(now)).unwrap();
        assert!(
            verify(
                &assertion,
                Kind::ClientAssertion,
                &keys,
                "https://kr/v1",
                now,
                RULES
            )
            .is_ok()
        );
        assert!(matches!(
            access(&assertion, &keys, "https://kr/v1", now),
            Err(TokenError::WrongType(_))
        ));
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
            (
                r#"{"alg":"ES256","typ":"at+jwt","crit":["b64"],"b64":true}"#,
                "crit",
            ),
        ] {
            let tok = format!("{}.{body}.{}", b64url(hdr.as_bytes()), b64url(&[0; 64]));
            let e = peek(&tok, Kind::AccessToken).unwrap_err();
            let ok = match want {
                "alg" => matches!(e, TokenError::AlgorithmNotAllowed(_)),
                "typ" => matches!(e, TokenError::WrongType(_)),
                _ => matches!(e, TokenError::Malformed(_)),
            };
            assert!(ok, "{hdr}: {e:?}");
        }
        assert!(peek("a.b", Kind::AccessToken).is_err());
        assert!(peek("a.b.c.d", Kind::AccessToken).is_err());
        assert!(peek(&"a".repeat(MAX_TOKEN_LEN + 1), Kind::AccessToken).is_err());
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_refused() {
        // The classic confusion: sign HS256 with the verifier's public key bytes.
        let s = TokenSigner::generate().unwrap();
        let secret = serde_json::to_vec(s.jwk()).unwrap();
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = s.jwk().kid.clone();
        let now = 1_700_000_000;
        let tok = jsonwebtoken::encode(
            &h,
            &claims(now),
            &EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            access(&tok, &s.key_set(), "https://kr/v1", now),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn jwk_roundtrip_and_key_files() {
        let s = TokenSigner::generate().unwrap();
        let jwks: Jwks = serde_json::from_value(
            serde_json::json!({"keys": [s.jwk(), {"kty": "RSA", "n": "x"}]}),
        )
        .unwrap();
        let set = KeySet::from_jwks(&jwks);
        assert!(set.has_kid(s.jwk().kid.as_deref()));
        assert!(set.has_kid(None)); // single-key leniency
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        s.save(&p).unwrap();
        let back = TokenSigner::load(&p).unwrap();
        assert_eq!(back.jwk(), s.jwk());
    }
}
