//! COSE primitives used by SUIT: ES256/ESP256 COSE_Sign1 and HMAC 256/256 COSE_Mac0 with
//! detached payloads (RFC 9052 §4.4, §6.3; RFC 9053 §2.1, §3.1; RFC 9864 for ESP256),
//! P-256 keys and their COSE Key Thumbprint (RFC 9679), used as the default `kid`.
//!
//! COSE objects are parsed with `coset` only after the strict decoder of this crate has
//! accepted their bytes, so the depth and size bounds of [`crate::Limits`] apply to them.

use coset::{
    CborSerializable, CoseMac0, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable,
    iana,
};
use hmac::{Hmac, KeyInit, Mac};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey as EcSigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::consts::alg;
use crate::error::Error;

/// A P-256 public key with the `kid` it signs under.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(kid={})", hex::encode(&self.kid))
    }
}

impl PublicKey {
    /// Reads an SPKI PEM (`-----BEGIN PUBLIC KEY-----`); the kid is the key's thumbprint.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|_| Error::InvalidKey("not a P-256 SubjectPublicKeyInfo PEM"))?;
        Ok(Self::from_verifying_key(key))
    }

    /// Reads SEC1 bytes (uncompressed or compressed point).
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Error> {
        let key = VerifyingKey::from_sec1_bytes(bytes)
            .map_err(|_| Error::InvalidKey("not a P-256 SEC1 point"))?;
        Ok(Self::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        let kid = thumbprint(&key).to_vec();
        Self { key, kid }
    }

    /// Replaces the kid (for keys published under an assigned identifier).
    pub fn with_kid(mut self, kid: impl Into<Vec<u8>>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The key identifier.
    pub fn kid(&self) -> &[u8] {
        &self.kid
    }

    /// The RFC 9679 COSE Key Thumbprint (SHA-256) of this key.
    pub fn thumbprint(&self) -> [u8; 32] {
        thumbprint(&self.key)
    }

    /// SPKI PEM encoding.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Verifies an ECDSA P-256 / SHA-256 signature (raw `r || s`) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(sig) => self.key.verify(msg, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// A P-256 signing key with its kid. Debug output never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    key: EcSigningKey,
    kid: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey(kid={}, secret redacted)",
            hex::encode(&self.kid)
        )
    }
}

impl SigningKey {
    /// Generates a fresh key from `rng`; the kid is the public key's thumbprint.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let key = EcSigningKey::generate_from_rng(rng);
        let kid = thumbprint(key.verifying_key()).to_vec();
        Self { key, kid }
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); the kid is the thumbprint.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let key = EcSigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|_| Error::InvalidKey("not a P-256 PKCS#8 private key PEM"))?;
        let kid = thumbprint(key.verifying_key()).to_vec();
        Ok(Self { key, kid })
    }

    /// PKCS#8 PEM encoding (zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::InvalidKey("cannot encode PKCS#8"))
    }

    /// Replaces the kid.
    pub fn with_kid(mut self, kid: impl Into<Vec<u8>>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The key identifier placed in the protected header of each signature.
    pub fn kid(&self) -> &[u8] {
        &self.kid
    }

    /// The public half, with the same kid.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
            kid: self.kid.clone(),
        }
    }

    /// Creates a COSE_Sign1_Tagged with a nil (detached) payload over `payload`:
    /// protected header `{1: -7 (ES256), 4: kid}` (RFC 9052 §4.2, §4.4).
    pub fn sign1_detached(&self, payload: &[u8]) -> Vec<u8> {
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES256)
            .key_id(self.kid.clone())
            .build();
        let sign1 = CoseSign1Builder::new()
            .protected(protected)
            .create_detached_signature(payload, b"", |tbs| {
                let sig: Signature = self.key.sign(tbs);
                sig.to_bytes().to_vec()
            })
            .build();
        // Serialising a COSE_Sign1 built from owned values cannot fail.
        sign1.to_tagged_vec().unwrap_or_default()
    }
}

/// RFC 9679 COSE Key Thumbprint of an EC2 P-256 key: SHA-256 over the deterministic
/// encoding of `{1: 2, -1: 1, -2: x, -3: y}`.
fn thumbprint(key: &VerifyingKey) -> [u8; 32] {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
    let (x, y) = (&bytes[1..33], &bytes[33..65]);
    let mut enc = Vec::with_capacity(78);
    enc.extend_from_slice(&[0xa4, 0x01, 0x02, 0x20, 0x01, 0x21, 0x58, 0x20]);
    enc.extend_from_slice(x);
    enc.extend_from_slice(&[0x22, 0x58, 0x20]);
    enc.extend_from_slice(y);
    Sha256::digest(&enc).into()
}

/// The parts of a received COSE_Sign1 or COSE_Mac0 that verification needs.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthBlock {
    /// COSE_Sign1 (tag 18).
    Sign1 {
        /// `alg` from the protected header.
        alg: i64,
        /// `kid` from the protected header, else the unprotected one.
        kid: Option<Vec<u8>>,
        /// The parsed object, with the received protected-header bytes kept by coset.
        sign1: Box<CoseSign1>,
    },
    /// COSE_Mac0 (tag 17).
    Mac0 {
        /// `alg` from the protected header.
        alg: i64,
        /// `kid`, if any.
        kid: Option<Vec<u8>>,
        /// The parsed object.
        mac0: Box<CoseMac0>,
    },
    /// COSE_Sign (98) or COSE_Mac (97): decodable, but not verified by this implementation.
    Unsupported {
        /// The CBOR tag.
        tag: u64,
    },
}

/// How a COSE object type is told apart and named where it fails to decode.
struct BlockType {
    /// First byte of the tagged form.
    tag_byte: u8,
    /// The decode refusal.
    malformed: &'static str,
    /// Where an unsupported algorithm was found.
    header: &'static str,
}

const SIGN1: BlockType = BlockType {
    tag_byte: 0xd2,
    malformed: "not a well-formed COSE_Sign1",
    header: "COSE_Sign1 protected header",
};

const MAC0: BlockType = BlockType {
    tag_byte: 0xd1,
    malformed: "not a well-formed COSE_Mac0",
    header: "COSE_Mac0 protected header",
};

/// Decodes one COSE object of type `ty` (tagged, or a bare array) and reads its algorithm
/// (required) and kid from `headers` (protected, unprotected).
fn decode_block<T: coset::CborSerializable + coset::TaggedCborSerializable>(
    bytes: &[u8],
    ty: &BlockType,
    headers: fn(&T) -> (&coset::Header, &coset::Header),
) -> Result<(T, i64, Option<Vec<u8>>), Error> {
    let decoded = if bytes.first() == Some(&ty.tag_byte) {
        T::from_tagged_slice(bytes)
    } else {
        T::from_slice(bytes)
    };
    let object = decoded.map_err(|_| crate::error::DecodeError::InvalidValue {
        at: "authentication block",
        reason: ty.malformed,
    })?;
    let (protected, unprotected) = headers(&object);
    let alg = alg_of(protected).ok_or(Error::UnsupportedAlgorithm {
        at: ty.header,
        alg: 0,
    })?;
    let kid = kid_of(protected, unprotected);
    Ok((object, alg, kid))
}

fn alg_of(h: &coset::Header) -> Option<i64> {
    match &h.alg {
        Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => Some(*a as i64),
        Some(coset::RegisteredLabelWithPrivate::PrivateUse(a)) => Some(*a),
        _ => None,
    }
}

fn kid_of(protected: &coset::Header, unprotected: &coset::Header) -> Option<Vec<u8>> {
    if !protected.key_id.is_empty() {
        Some(protected.key_id.clone())
    } else if !unprotected.key_id.is_empty() {
        Some(unprotected.key_id.clone())
    } else {
        None
    }
}

impl AuthBlock {
    /// Parses a COSE_Sign1_Tagged or COSE_Mac0_Tagged (draft-ietf-suit-manifest §8.3).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse_as(bytes, None)
    }

    /// Parses a COSE_Sign1 or COSE_Mac0; an untagged object needs its type given in
    /// `untagged` (RFC 9052 §2: the tag may be omitted when the context is known).
    pub fn parse_as(bytes: &[u8], untagged: Option<u64>) -> Result<Self, Error> {
        use crate::consts::tag;
        use crate::error::DecodeError::InvalidValue;
        let malformed = |reason| InvalidValue {
            at: "authentication block",
            reason,
        };
        // The leading byte is the tag (0xd2 = 18, 0xd1 = 17, 0xd8 0x62/0x61 = 98/97) or,
        // for an untagged object whose type the caller knows, the 4-element array head.
        match (bytes.first(), untagged) {
            (Some(0xd2), _) | (Some(0x84), Some(tag::COSE_SIGN1)) => {
                let (sign1, alg, kid) = decode_block::<CoseSign1>(bytes, &SIGN1, |o| {
                    (&o.protected.header, &o.unprotected)
                })?;
                Ok(AuthBlock::Sign1 {
                    alg,
                    kid,
                    sign1: Box::new(sign1),
                })
            }
            (Some(0xd1), _) | (Some(0x84), Some(tag::COSE_MAC0)) => {
                let (mac0, alg, kid) = decode_block::<CoseMac0>(bytes, &MAC0, |o| {
                    (&o.protected.header, &o.unprotected)
                })?;
                Ok(AuthBlock::Mac0 {
                    alg,
                    kid,
                    mac0: Box::new(mac0),
                })
            }
            (Some(0xd8), _) if matches!(bytes.get(1), Some(0x61 | 0x62)) => {
                Ok(AuthBlock::Unsupported {
                    tag: u64::from(bytes[1]),
                })
            }
            _ => Err(
                malformed("expected a tagged COSE_Sign1, COSE_Mac0, COSE_Sign or COSE_Mac").into(),
            ),
        }
    }

    /// The kid, if any.
    pub fn kid(&self) -> Option<&[u8]> {
        match self {
            AuthBlock::Sign1 { kid, .. } | AuthBlock::Mac0 { kid, .. } => kid.as_deref(),
            AuthBlock::Unsupported { .. } => None,
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> i64 {
        match self {
            AuthBlock::Sign1 { alg, .. } | AuthBlock::Mac0 { alg, .. } => *alg,
            AuthBlock::Unsupported { .. } => 0,
        }
    }

    /// Verifies a Sign1 block over the detached `payload` with `key` (SUIT: empty external AAD).
    /// ES256 (-7) and ESP256 (-9, RFC 9864) are the same computation on P-256.
    pub fn verify_signature(&self, payload: &[u8], key: &PublicKey) -> Result<bool, Error> {
        self.verify_signature_with(Some(payload), b"", key)
    }

    /// Verifies a Sign1 block. `detached`: `Some(payload)` requires a nil payload field
    /// (RFC 9052 §4.1 detached content); `None` uses the attached payload.
    pub fn verify_signature_with(
        &self,
        detached: Option<&[u8]>,
        external_aad: &[u8],
        key: &PublicKey,
    ) -> Result<bool, Error> {
        let AuthBlock::Sign1 { alg, sign1, .. } = self else {
            return Ok(false);
        };
        if *alg != alg::ES256 && *alg != alg::ESP256 {
            return Err(Error::UnsupportedAlgorithm {
                at: "COSE_Sign1",
                alg: *alg,
            });
        }
        let check = |sig: &[u8], tbs: &[u8]| {
            if key.verify(tbs, sig) {
                Ok(())
            } else {
                Err(())
            }
        };
        Ok(match (detached, &sign1.payload) {
            (Some(p), None) => sign1
                .verify_detached_signature(p, external_aad, check)
                .is_ok(),
            (None, Some(_)) => sign1.verify_signature(external_aad, check).is_ok(),
            _ => false,
        })
    }

    /// Verifies a Mac0 block over the detached `payload` with an HMAC 256/256 key.
    pub fn verify_mac(&self, payload: &[u8], mac_key: &[u8]) -> Result<bool, Error> {
        self.verify_mac_with(Some(payload), b"", mac_key)
    }

    /// Verifies a Mac0 block (detached or attached payload, as for signatures).
    /// The tag comparison is constant-time (`hmac`'s `verify_slice`).
    pub fn verify_mac_with(
        &self,
        detached: Option<&[u8]>,
        external_aad: &[u8],
        mac_key: &[u8],
    ) -> Result<bool, Error> {
        let AuthBlock::Mac0 { alg, mac0, .. } = self else {
            return Ok(false);
        };
        if *alg != alg::HMAC_256_256 {
            return Err(Error::UnsupportedAlgorithm {
                at: "COSE_Mac0",
                alg: *alg,
            });
        }
        let payload = match (detached, &mac0.payload) {
            (Some(p), None) => p,
            (None, Some(p)) => p.as_slice(),
            _ => return Ok(false),
        };
        let data = coset::mac_structure_data(
            coset::MacContext::CoseMac0,
            mac0.protected.clone(),
            external_aad,
            payload,
        );
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key)
            .map_err(|_| Error::InvalidKey("HMAC key"))?;
        mac.update(&data);
        Ok(mac.verify_slice(&mac0.tag).is_ok())
    }
}

/// Creates a COSE_Mac0_Tagged (HMAC 256/256) over a detached payload (RFC 9052 §6.3).
pub fn mac0_detached(mac_key: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    let mut mac0 = coset::CoseMac0Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::HMAC_256_256)
                .build(),
        )
        .build();
    let data = coset::mac_structure_data(
        coset::MacContext::CoseMac0,
        mac0.protected.clone(),
        b"",
        payload,
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key)
        .map_err(|_| Error::InvalidKey("HMAC key"))?;
    mac.update(&data);
    mac0.tag = mac.finalize().into_bytes().to_vec();
    mac0.to_tagged_vec()
        .map_err(|_| Error::InvalidKey("cannot encode COSE_Mac0"))
}

/// Serialises an untagged COSE object (helper for tests and tools).
pub fn to_vec<T: CborSerializable>(obj: T) -> Vec<u8> {
    obj.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
        let block = key.sign1_detached(b"digest bytes");
        let parsed = AuthBlock::parse(&block).unwrap();
        assert_eq!(parsed.kid(), Some(key.kid()));
        assert!(
            parsed
                .verify_signature(b"digest bytes", &key.public_key())
                .unwrap()
        );
        assert!(
            !parsed
                .verify_signature(b"digest bytez", &key.public_key())
                .unwrap()
        );
        let other = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
        assert!(
            !parsed
                .verify_signature(b"digest bytes", &other.public_key())
                .unwrap()
        );
    }

    #[test]
    fn mac_roundtrip_and_tamper() {
        let block = mac0_detached(&[7u8; 32], b"payload").unwrap();
        let parsed = AuthBlock::parse(&block).unwrap();
        assert!(parsed.verify_mac(b"payload", &[7u8; 32]).unwrap());
        assert!(!parsed.verify_mac(b"payload", &[8u8; 32]).unwrap());
        assert!(!parsed.verify_mac(b"Payload", &[7u8; 32]).unwrap());
    }

    #[test]
    fn pem_roundtrip_keeps_thumbprint_kid() {
        let key = SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
        let again = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.kid(), key.kid());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        assert_eq!(public.kid(), key.kid());
        assert_eq!(public.thumbprint().as_slice(), key.kid());
    }
}
