//! Streaming AES-GCM (NIST SP 800-38D) for payloads too large to hold in memory.
//!
//! `aes-gcm` only works on whole buffers; a device decrypting into its inactive slot, and
//! a publisher encrypting a 1 GiB image, need bounded memory. This composes the same
//! RustCrypto primitives that `aes-gcm` is built from (`aes`, `ctr` with a 32-bit counter,
//! `ghash`) and is tested to produce byte-identical output to `aes-gcm`.
//!
//! Decryption releases plaintext before the tag is checked (that is inherent to streaming):
//! callers must treat it as untrusted until [`GcmStream::finish_decrypt`] succeeds, e.g. by
//! writing it only to an inactive slot that is not activated on failure.

use aes::cipher::{BlockCipherEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// GCM tag length used by COSE A128GCM / A256GCM (RFC 9053 §4.1).
pub const TAG_LEN: usize = 16;
/// Nonce length (RFC 9053 §4.1).
pub const NONCE_LEN: usize = 12;

// One stream per payload, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Ctr {
    A128(ctr::Ctr32BE<Aes128>),
    A256(ctr::Ctr32BE<Aes256>),
}

/// Incremental AES-GCM encryption or decryption in place.
pub struct GcmStream {
    ctr: Ctr,
    ghash: GHash,
    tag_mask: [u8; 16],
    pending: [u8; 16],
    pending_len: usize,
    aad_len: u64,
    ct_len: u64,
}

impl std::fmt::Debug for GcmStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GcmStream({} bytes processed)", self.ct_len)
    }
}

impl GcmStream {
    /// Starts a stream with a 16- or 32-byte key, a 12-byte nonce and the AAD.
    pub fn new(key: &[u8], nonce: &[u8], aad: &[u8]) -> Result<Self, Error> {
        if nonce.len() != NONCE_LEN {
            return Err(Error::InvalidKey("GCM nonce must be 12 bytes"));
        }
        // SP 800-38D §7.1: H = E(K, 0^128); J0 = IV || 0^31 || 1; counter starts at inc32(J0).
        let mut j0 = [0u8; 16];
        j0[..12].copy_from_slice(nonce);
        j0[15] = 1;
        let mut first = j0;
        first[15] = 2;
        let mut h = [0u8; 16];
        let mut mask = j0;
        let ctr = match key.len() {
            16 => {
                let c = Aes128::new_from_slice(key).map_err(|_| Error::InvalidKey("AES key"))?;
                c.encrypt_block((&mut h).into());
                c.encrypt_block((&mut mask).into());
                Ctr::A128(
                    ctr::Ctr32BE::<Aes128>::new_from_slices(key, &first)
                        .map_err(|_| Error::InvalidKey("AES key"))?,
                )
            }
            32 => {
                let c = Aes256::new_from_slice(key).map_err(|_| Error::InvalidKey("AES key"))?;
                c.encrypt_block((&mut h).into());
                c.encrypt_block((&mut mask).into());
                Ctr::A256(
                    ctr::Ctr32BE::<Aes256>::new_from_slices(key, &first)
                        .map_err(|_| Error::InvalidKey("AES key"))?,
                )
            }
            _ => return Err(Error::InvalidKey("AES-GCM key must be 16 or 32 bytes")),
        };
        let mut ghash = GHash::new((&h).into());
        ghash.update_padded(aad);
        Ok(Self {
            ctr,
            ghash,
            tag_mask: mask,
            pending: [0; 16],
            pending_len: 0,
            aad_len: aad.len() as u64,
            ct_len: 0,
        })
    }

    fn keystream(&mut self, buf: &mut [u8]) {
        match &mut self.ctr {
            Ctr::A128(c) => c.apply_keystream(buf),
            Ctr::A256(c) => c.apply_keystream(buf),
        }
    }

    fn absorb(&mut self, mut ct: &[u8]) {
        self.ct_len += ct.len() as u64;
        if self.pending_len > 0 {
            let take = (16 - self.pending_len).min(ct.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&ct[..take]);
            self.pending_len += take;
            ct = &ct[take..];
            if self.pending_len < 16 {
                return;
            }
            let block = self.pending;
            self.ghash.update_padded(&block);
            self.pending_len = 0;
        }
        let full = ct.len() / 16 * 16;
        // Whole blocks: update_padded adds no padding to a multiple of 16 bytes.
        self.ghash.update_padded(&ct[..full]);
        let rest = &ct[full..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Encrypts `buf` in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        self.keystream(buf);
        self.absorb(buf);
    }

    /// Decrypts `buf` in place (the plaintext is unauthenticated until `finish_decrypt`).
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        self.absorb(buf);
        self.keystream(buf);
    }

    fn tag(mut self) -> [u8; 16] {
        if self.pending_len > 0 {
            let p = self.pending;
            self.ghash.update_padded(&p[..self.pending_len]);
        }
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&(self.ct_len * 8).to_be_bytes());
        self.ghash.update_padded(&lengths);
        let s = self.ghash.finalize();
        let mut tag = [0u8; 16];
        for (i, t) in tag.iter_mut().enumerate() {
            *t = s[i] ^ self.tag_mask[i];
        }
        tag
    }

    /// Ends encryption and returns the tag.
    pub fn finish_encrypt(self) -> [u8; TAG_LEN] {
        self.tag()
    }

    /// Ends decryption: Ok only if `tag` authenticates everything (constant-time compare).
    pub fn finish_decrypt(self, tag: &[u8]) -> Result<(), Error> {
        let expected = self.tag();
        if tag.len() == TAG_LEN && bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::DecryptionFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInOut;
    use proptest::prelude::*;

    fn reference(key: &[u8], nonce: &[u8], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let mut buf = pt.to_vec();
        let tag = if key.len() == 16 {
            aes_gcm::Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached(nonce.try_into().unwrap(), aad, buf.as_mut_slice().into())
                .unwrap()
        } else {
            aes_gcm::Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt_inout_detached(nonce.try_into().unwrap(), aad, buf.as_mut_slice().into())
                .unwrap()
        };
        buf.extend_from_slice(&tag);
        buf
    }

    proptest! {
        #[test]
        fn matches_aes_gcm(
            key in prop_oneof![prop::collection::vec(any::<u8>(), 16), prop::collection::vec(any::<u8>(), 32)],
            nonce in prop::collection::vec(any::<u8>(), 12),
            aad in prop::collection::vec(any::<u8>(), 0..40),
            pt in prop::collection::vec(any::<u8>(), 0..300),
            cuts in prop::collection::vec(0usize..300, 0..6),
        ) {
            let expected = reference(&key, &nonce, &aad, &pt);
            let mut buf = pt.clone();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= pt.len()).collect();
            cuts.sort_unstable();
            let mut g = GcmStream::new(&key, &nonce, &aad).unwrap();
            let mut at = 0;
            for c in cuts.into_iter().chain([pt.len()]) {
                g.encrypt(&mut buf[at..c]);
                at = c;
            }
            let tag = g.finish_encrypt();
            prop_assert_eq!(&buf[..], &expected[..pt.len()]);
            prop_assert_eq!(&tag[..], &expected[pt.len()..]);

            let mut d = GcmStream::new(&key, &nonce, &aad).unwrap();
            d.decrypt(&mut buf);
            prop_assert_eq!(&buf, &pt);
            prop_assert!(d.finish_decrypt(&tag).is_ok());
        }
    }

    #[test]
    fn tampered_tag_or_ciphertext_fails() {
        let (key, nonce) = ([1u8; 16], [2u8; 12]);
        let mut buf = b"firmware image bytes".to_vec();
        let mut g = GcmStream::new(&key, &nonce, b"aad").unwrap();
        g.encrypt(&mut buf);
        let tag = g.finish_encrypt();
        let mut flipped = buf.clone();
        flipped[3] ^= 1;
        let mut d = GcmStream::new(&key, &nonce, b"aad").unwrap();
        d.decrypt(&mut flipped);
        assert_eq!(d.finish_decrypt(&tag), Err(Error::DecryptionFailed));
        let mut d = GcmStream::new(&key, &nonce, b"aad").unwrap();
        d.decrypt(&mut buf.clone());
        let mut bad_tag = tag;
        bad_tag[0] ^= 0x80;
        assert_eq!(d.finish_decrypt(&bad_tag), Err(Error::DecryptionFailed));
    }
}
