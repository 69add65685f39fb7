//! Payload encryption per draft-ietf-suit-firmware-encryption: SUIT_Encryption_Info is a
//! COSE_Encrypt (tag 96) with a detached (nil) ciphertext, content algorithm A128GCM or
//! A256GCM in the protected header, the IV in the unprotected header, and one AES key-wrap
//! recipient (A128KW / A256KW, RFC 3394) naming the KEK by `kid`.
//!
//! The KEK is the per-release key ("release key") held by the key repository; the CEK is
//! random per release and travels only wrapped.

use coset::{
    CborSerializable, CoseEncrypt, CoseKey, CoseKeyBuilder, CoseRecipientBuilder,
    EncryptionContext, HeaderBuilder, TaggedCborSerializable, iana,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cbor;
use crate::consts::alg;
use crate::error::{DecodeError, Error};
use crate::gcm::{GcmStream, NONCE_LEN, TAG_LEN};
use crate::limits::Limits;
use crate::manifest::SuitDigest;

/// A symmetric key-encryption key with its kid: the COSE_Key stored in the key repository
/// (`{1: 4, 2: kid, 3: alg, -1: k}`). The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct ReleaseKey {
    kid: Vec<u8>,
    alg: i64,
    k: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReleaseKey(kid={}, alg={}, secret redacted)",
            String::from_utf8_lossy(&self.kid),
            self.alg
        )
    }
}

impl ReleaseKey {
    /// A fresh random KEK for `alg` (A128KW or A256KW).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(
        alg_id: i64,
        kid: impl Into<Vec<u8>>,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let len = kw_key_len(alg_id)?;
        let mut k = Zeroizing::new(vec![0u8; len]);
        rng.fill_bytes(&mut k);
        Ok(Self {
            kid: kid.into(),
            alg: alg_id,
            k,
        })
    }

    /// From raw parts (e.g. the published example KEK).
    pub fn from_parts(alg_id: i64, kid: impl Into<Vec<u8>>, k: &[u8]) -> Result<Self, Error> {
        if k.len() != kw_key_len(alg_id)? {
            return Err(Error::InvalidKey("KEK length does not match its algorithm"));
        }
        Ok(Self {
            kid: kid.into(),
            alg: alg_id,
            k: Zeroizing::new(k.to_vec()),
        })
    }

    /// Decodes a COSE_Key (RFC 9052 §7): kty Symmetric (4), a kid, `k`; the alg defaults
    /// from the key length when absent.
    pub fn from_cose_key(bytes: &[u8]) -> Result<Self, Error> {
        cbor::decode(bytes, &Limits::default())?;
        let key = CoseKey::from_slice(bytes).map_err(|_| DecodeError::WrongType {
            at: "release key",
            expected: "COSE_Key",
        })?;
        if key.kty != coset::KeyType::Assigned(iana::KeyType::Symmetric) {
            return Err(Error::InvalidKey(
                "release key must be a symmetric COSE_Key",
            ));
        }
        let k = key
            .params
            .iter()
            .find(|(l, _)| *l == coset::Label::Int(iana::SymmetricKeyParameter::K as i64))
            .and_then(|(_, v)| v.as_bytes())
            .ok_or(Error::InvalidKey("COSE_Key has no k"))?;
        let alg_id = match &key.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
            Some(_) => return Err(Error::InvalidKey("unsupported release key alg")),
            None if k.len() == 16 => alg::A128KW,
            None if k.len() == 32 => alg::A256KW,
            None => return Err(Error::InvalidKey("KEK must be 16 or 32 bytes")),
        };
        if key.key_id.is_empty() {
            return Err(Error::InvalidKey("COSE_Key has no kid"));
        }
        Self::from_parts(alg_id, key.key_id.clone(), k)
    }

    /// Encodes as a COSE_Key.
    pub fn to_cose_key(&self) -> Zeroizing<Vec<u8>> {
        let alg = if self.alg == alg::A256KW {
            iana::Algorithm::A256KW
        } else {
            iana::Algorithm::A128KW
        };
        let key = CoseKeyBuilder::new_symmetric_key(self.k.to_vec())
            .key_id(self.kid.clone())
            .algorithm(alg)
            .build();
        Zeroizing::new(key.to_vec().unwrap_or_default())
    }

    /// The kid.
    pub fn kid(&self) -> &[u8] {
        &self.kid
    }

    /// The key-wrap algorithm.
    pub fn alg(&self) -> i64 {
        self.alg
    }

    /// RFC 3394 key wrap.
    fn wrap(&self, cek: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; cek.len() + 8];
        let r = match self.alg {
            alg::A128KW => aes_kw::KwAes128::new_from_slice(&self.k)
                .map_err(|_| Error::InvalidKey("KEK"))?
                .wrap_key(cek, &mut out)
                .map(|_| ()),
            alg::A256KW => aes_kw::KwAes256::new_from_slice(&self.k)
                .map_err(|_| Error::InvalidKey("KEK"))?
                .wrap_key(cek, &mut out)
                .map(|_| ()),
            _ => return Err(Error::InvalidKey("unsupported key wrap")),
        };
        r.map_err(|_| Error::InvalidKey("key wrap failed"))?;
        Ok(out)
    }

    /// RFC 3394 key unwrap; the integrity check fails for a wrong KEK.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) || wrapped.len() > 72 {
            return Err(Error::KeyUnwrapFailed);
        }
        let mut out = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
        let r = match self.alg {
            alg::A128KW => aes_kw::KwAes128::new_from_slice(&self.k)
                .map_err(|_| Error::InvalidKey("KEK"))?
                .unwrap_key(wrapped, &mut out)
                .map(|_| ()),
            alg::A256KW => aes_kw::KwAes256::new_from_slice(&self.k)
                .map_err(|_| Error::InvalidKey("KEK"))?
                .unwrap_key(wrapped, &mut out)
                .map(|_| ()),
            _ => return Err(Error::InvalidKey("unsupported key wrap")),
        };
        r.map_err(|_| Error::KeyUnwrapFailed)?;
        Ok(out)
    }
}

use aes_kw::KeyInit as _;

fn kw_key_len(alg_id: i64) -> Result<usize, Error> {
    match alg_id {
        alg::A128KW => Ok(16),
        alg::A256KW => Ok(32),
        _ => Err(Error::UnsupportedAlgorithm {
            at: "release key",
            alg: alg_id,
        }),
    }
}

fn gcm_key_len(alg_id: i64) -> Result<usize, Error> {
    match alg_id {
        alg::A128GCM => Ok(16),
        alg::A256GCM => Ok(32),
        _ => Err(Error::UnsupportedAlgorithm {
            at: "content encryption",
            alg: alg_id,
        }),
    }
}

/// One recipient of a SUIT_Encryption_Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Key distribution algorithm (A128KW -3, A256KW -5, ECDH-ES+A128KW -29, ...).
    pub alg: i64,
    /// Names the KEK.
    pub kid: Option<Vec<u8>>,
    /// Wrapped CEK.
    pub wrapped_cek: Vec<u8>,
}

/// A decoded SUIT_Encryption_Info.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptionInfo {
    /// Content algorithm (A128GCM 1, A256GCM 3, or others reported as unsupported on use).
    pub content_alg: i64,
    /// IV from the unprotected (or protected) header.
    pub iv: Vec<u8>,
    /// Recipients.
    pub recipients: Vec<Recipient>,
    /// Enc_structure AAD computed over the **received** protected header bytes.
    aad: Vec<u8>,
}

fn label_alg(h: &coset::Header) -> Option<i64> {
    match &h.alg {
        Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => Some(*a as i64),
        Some(coset::RegisteredLabelWithPrivate::PrivateUse(a)) => Some(*a),
        _ => None,
    }
}

impl EncryptionInfo {
    /// Decodes a SUIT_Encryption_Info: a COSE_Encrypt_Tagged with a detached ciphertext
    /// (draft-ietf-suit-firmware-encryption §4).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self::decode_cose_encrypt(bytes, b"", true)?.0)
    }

    /// Decodes a general COSE_Encrypt_Tagged with `external_aad`; returns the attached
    /// ciphertext too unless `require_detached`.
    pub fn decode_cose_encrypt(
        bytes: &[u8],
        external_aad: &[u8],
        require_detached: bool,
    ) -> Result<(Self, Option<Vec<u8>>), Error> {
        cbor::decode(bytes, &Limits::default())?;
        let enc = CoseEncrypt::from_tagged_slice(bytes).map_err(|_| DecodeError::WrongType {
            at: "SUIT_Encryption_Info",
            expected: "COSE_Encrypt_Tagged (96)",
        })?;
        let content_alg = label_alg(&enc.protected.header)
            .or_else(|| label_alg(&enc.unprotected))
            .ok_or(DecodeError::InvalidValue {
                at: "SUIT_Encryption_Info",
                reason: "no content algorithm",
            })?;
        let iv = if !enc.unprotected.iv.is_empty() {
            enc.unprotected.iv.clone()
        } else {
            enc.protected.header.iv.clone()
        };
        // firmware-encryption §4: the ciphertext is detached (nil).
        if require_detached && enc.ciphertext.is_some() {
            return Err(DecodeError::InvalidValue {
                at: "SUIT_Encryption_Info",
                reason: "ciphertext must be detached (nil)",
            }
            .into());
        }
        let recipients = enc
            .recipients
            .iter()
            .map(|r| Recipient {
                alg: label_alg(&r.protected.header)
                    .or_else(|| label_alg(&r.unprotected))
                    .unwrap_or(0),
                kid: [&r.protected.header.key_id, &r.unprotected.key_id]
                    .into_iter()
                    .find(|k| !k.is_empty())
                    .cloned(),
                wrapped_cek: r.ciphertext.clone().unwrap_or_default(),
            })
            .collect();
        // RFC 9052 §5.3: AAD = Enc_structure ["Encrypt", protected, external_aad].
        let aad = coset::enc_structure_data(
            EncryptionContext::CoseEncrypt,
            enc.protected.clone(),
            external_aad,
        );
        Ok((
            Self {
                content_alg,
                iv,
                recipients,
                aad,
            },
            enc.ciphertext.clone(),
        ))
    }

    /// The recipient whose kid names the release key, unwrapped to the CEK.
    fn cek(&self, key: &ReleaseKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        let expected = self
            .recipients
            .iter()
            .find_map(|r| r.kid.clone())
            .unwrap_or_default();
        let r = self
            .recipients
            .iter()
            .find(|r| r.kid.as_deref() == Some(key.kid()))
            .ok_or_else(|| Error::WrongKeyId {
                expected: String::from_utf8_lossy(&expected).into_owned(),
                actual: String::from_utf8_lossy(key.kid()).into_owned(),
            })?;
        if r.alg != key.alg() {
            return Err(Error::UnsupportedAlgorithm {
                at: "recipient",
                alg: r.alg,
            });
        }
        let cek = key.unwrap(&r.wrapped_cek)?;
        if cek.len() != gcm_key_len(self.content_alg)? {
            return Err(Error::KeyUnwrapFailed);
        }
        Ok(cek)
    }

    /// Starts streaming decryption of a payload `ciphertext || tag`.
    pub fn decryptor(&self, key: &ReleaseKey) -> Result<PayloadDecryptor, Error> {
        gcm_key_len(self.content_alg)?;
        if self.iv.len() != NONCE_LEN {
            return Err(DecodeError::InvalidValue {
                at: "SUIT_Encryption_Info",
                reason: "IV must be 12 bytes for AES-GCM",
            }
            .into());
        }
        let cek = self.cek(key)?;
        Ok(PayloadDecryptor {
            gcm: GcmStream::new(&cek, &self.iv, &self.aad)?,
            tail: [0; TAG_LEN],
            tail_len: 0,
        })
    }

    /// Decrypts a whole payload (`ciphertext || tag`).
    pub fn decrypt(&self, key: &ReleaseKey, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let mut d = self.decryptor(key)?;
        let mut out = payload.to_vec();
        let n = d.update(&mut out);
        out.truncate(n);
        d.finish()?;
        Ok(out)
    }
}

/// Streaming decryption: feed `ciphertext || tag` in chunks of any size. The last 16 bytes
/// seen are held back as the tag. Output is unauthenticated until [`Self::finish`].
#[derive(Debug)]
pub struct PayloadDecryptor {
    gcm: GcmStream,
    tail: [u8; TAG_LEN],
    tail_len: usize,
}

impl PayloadDecryptor {
    /// Decrypts in place and returns how many leading bytes of `buf` are now plaintext.
    /// The stream is `held-back tail ++ buf`; its last 16 bytes are held back (they may be
    /// the tag), everything before them is decrypted into `buf`. No allocation.
    pub fn update(&mut self, buf: &mut [u8]) -> usize {
        let t = self.tail_len;
        let n = buf.len();
        if n >= TAG_LEN {
            // New tail: the last 16 bytes of buf. Output: old tail ++ buf[..n-16], which
            // is t + n - 16 <= n bytes, moved into buf's own space.
            let mut new_tail = [0u8; TAG_LEN];
            new_tail.copy_from_slice(&buf[n - TAG_LEN..]);
            buf.copy_within(0..n - TAG_LEN, t);
            buf[..t].copy_from_slice(&self.tail[..t]);
            self.tail = new_tail;
            self.tail_len = TAG_LEN;
            let emit = t + n - TAG_LEN;
            self.gcm.decrypt(&mut buf[..emit]);
            emit
        } else {
            // Short chunk: stream = tail[..t] ++ buf, keep its last 16 bytes.
            let mut stream = [0u8; 2 * TAG_LEN];
            stream[..t].copy_from_slice(&self.tail[..t]);
            stream[t..t + n].copy_from_slice(buf);
            let total = t + n;
            let emit = total.saturating_sub(TAG_LEN);
            buf[..emit].copy_from_slice(&stream[..emit]);
            self.gcm.decrypt(&mut buf[..emit]);
            let keep = total - emit;
            self.tail[..keep].copy_from_slice(&stream[emit..total]);
            self.tail_len = keep;
            emit
        }
    }

    /// Checks the tag.
    pub fn finish(self) -> Result<(), Error> {
        if self.tail_len != TAG_LEN {
            return Err(Error::DecryptionFailed);
        }
        self.gcm.finish_decrypt(&self.tail)
    }
}

/// Streaming encryption of an image in place, with the ciphertext digest computed on the way.
pub struct PayloadEncryptor {
    gcm: GcmStream,
    ct_hash: Sha256,
    ct_len: u64,
}

impl std::fmt::Debug for PayloadEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PayloadEncryptor({} bytes)", self.ct_len)
    }
}

/// What encryption produced, besides the ciphertext itself.
#[derive(Debug, Clone)]
pub struct EncryptedPayload {
    /// The encoded SUIT_Encryption_Info (COSE_Encrypt_Tagged).
    pub encryption_info: Vec<u8>,
    /// The 16-byte tag that must be appended to the ciphertext.
    pub tag: [u8; TAG_LEN],
    /// SHA-256 digest of `ciphertext || tag`.
    pub digest: SuitDigest,
    /// Length of `ciphertext || tag`.
    pub size: u64,
}

impl PayloadEncryptor {
    /// Draws a fresh CEK and IV from `rng`, wraps the CEK with `kek`, and starts encryption.
    /// Returns the encryptor and the encoded SUIT_Encryption_Info.
    pub fn new<R: rand_core::CryptoRng + ?Sized>(
        content_alg: i64,
        kek: &ReleaseKey,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), Error> {
        let mut cek = Zeroizing::new(vec![0u8; gcm_key_len(content_alg)?]);
        rng.fill_bytes(&mut cek);
        let mut iv = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut iv);
        let alg = if content_alg == alg::A256GCM {
            iana::Algorithm::A256GCM
        } else {
            iana::Algorithm::A128GCM
        };
        let kw = if kek.alg() == alg::A256KW {
            iana::Algorithm::A256KW
        } else {
            iana::Algorithm::A128KW
        };
        let recipient = CoseRecipientBuilder::new()
            .unprotected(
                HeaderBuilder::new()
                    .algorithm(kw)
                    .key_id(kek.kid().to_vec())
                    .build(),
            )
            .ciphertext(kek.wrap(&cek)?)
            .build();
        let enc = coset::CoseEncryptBuilder::new()
            .protected(HeaderBuilder::new().algorithm(alg).build())
            .unprotected(HeaderBuilder::new().iv(iv.to_vec()).build())
            .add_recipient(recipient)
            .build();
        let aad =
            coset::enc_structure_data(EncryptionContext::CoseEncrypt, enc.protected.clone(), b"");
        let info = enc
            .to_tagged_vec()
            .map_err(|_| Error::InvalidInput("cannot encode encryption info".into()))?;
        Ok((
            Self {
                gcm: GcmStream::new(&cek, &iv, &aad)?,
                ct_hash: Sha256::new(),
                ct_len: 0,
            },
            info,
        ))
    }

    /// Encrypts the next chunk of the image in place and hashes the ciphertext.
    pub fn update(&mut self, buf: &mut [u8]) {
        self.encrypt_only(buf);
        self.ct_hash.update(&*buf);
    }

    /// Encrypts the next chunk in place without hashing it: for pipelines that hash the
    /// ciphertext on another thread and end with [`Self::finish_with_hasher`].
    pub fn encrypt_only(&mut self, buf: &mut [u8]) {
        self.gcm.encrypt(buf);
        self.ct_len += buf.len() as u64;
    }

    /// Ends encryption: returns the tag (to append to the ciphertext) and the digest and size
    /// of `ciphertext || tag`.
    pub fn finish(self, encryption_info: Vec<u8>) -> EncryptedPayload {
        let hasher = self.ct_hash.clone();
        self.finish_with_hasher(encryption_info, hasher)
    }

    /// Like [`Self::finish`], with the ciphertext hashed by the caller: `ct_hash` must have
    /// absorbed exactly the bytes produced by [`Self::encrypt_only`], in order.
    pub fn finish_with_hasher(
        self,
        encryption_info: Vec<u8>,
        mut ct_hash: Sha256,
    ) -> EncryptedPayload {
        let tag = self.gcm.finish_encrypt();
        ct_hash.update(tag);
        EncryptedPayload {
            encryption_info,
            tag,
            digest: SuitDigest::from_sha256(ct_hash.finalize().into()),
            size: self.ct_len + TAG_LEN as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_in_chunks_and_wrong_key() {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let kek = ReleaseKey::generate(alg::A128KW, b"rel-1".to_vec(), &mut rng).unwrap();
        let (mut e, info) = PayloadEncryptor::new(alg::A128GCM, &kek, &mut rng).unwrap();
        let image: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = image.clone();
        for c in buf.chunks_mut(333) {
            e.update(c);
        }
        let done = e.finish(info);
        buf.extend_from_slice(&done.tag);
        assert!(done.digest.matches(&buf).unwrap());
        assert_eq!(done.size, buf.len() as u64);

        let info = EncryptionInfo::decode(&done.encryption_info).unwrap();
        assert_eq!(info.decrypt(&kek, &buf).unwrap(), image);

        // Streaming decryption in odd chunk sizes gives the same plaintext.
        for size in [1, 7, 15, 16, 17, 33, 4096] {
            let mut d = info.decryptor(&kek).unwrap();
            let mut out = Vec::new();
            for chunk in buf.chunks(size) {
                let mut c = chunk.to_vec();
                let n = d.update(&mut c);
                out.extend_from_slice(&c[..n]);
            }
            d.finish().unwrap();
            assert_eq!(out, image, "chunk size {size}");
        }
        // Mixed chunk sizes.
        let mut d = info.decryptor(&kek).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        for (i, size) in [3usize, 40, 1, 16, 900, 2, 17].iter().cycle().enumerate() {
            if at >= buf.len() || i > 10_000 {
                break;
            }
            let end = (at + size).min(buf.len());
            let mut c = buf[at..end].to_vec();
            let n = d.update(&mut c);
            out.extend_from_slice(&c[..n]);
            at = end;
        }
        d.finish().unwrap();
        assert_eq!(out, image);

        let other = ReleaseKey::generate(alg::A128KW, b"rel-1".to_vec(), &mut rng).unwrap();
        assert_eq!(info.decrypt(&other, &buf), Err(Error::KeyUnwrapFailed));
        let other_kid = ReleaseKey::generate(alg::A128KW, b"rel-2".to_vec(), &mut rng).unwrap();
        assert!(matches!(
            info.decrypt(&other_kid, &buf),
            Err(Error::WrongKeyId { .. })
        ));
    }

    #[test]
    fn cose_key_roundtrip() {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let kek = ReleaseKey::generate(alg::A256KW, b"k".to_vec(), &mut rng).unwrap();
        let again = ReleaseKey::from_cose_key(&kek.to_cose_key()).unwrap();
        assert_eq!(again.kid(), b"k");
        assert_eq!(again.alg(), alg::A256KW);
        assert_eq!(*again.k, *kek.k);
        assert!(!format!("{kek:?}").contains(&hex::encode(&*kek.k)));
    }
}
