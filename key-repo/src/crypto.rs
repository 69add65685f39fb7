//! At-rest encryption (AES-256-GCM under the master key).

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// Domain separation for the associated data of stored keys.
const AAD_LABEL: &[u8] = b"ics-suit key-repo v1 release key";

/// The 256-bit master key. Never logged, zeroized on drop.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Result<Self, Error> {
        Ok(MasterKey {
            key: Zeroizing::new(foundations::random_bytes::<32>()?),
        })
    }

    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey {
            key: Zeroizing::new(b),
        }
    }

    /// Reads the hex-encoded key file written by `key-repo init`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = foundations::fs::read_secret_file(path)?;
        let mut raw = hex::decode(text.trim()).map_err(|_| Error::Config {
            path: path.display().to_string(),
            reason: "master key file must hold 64 hex digits".into(),
        })?;
        let res = <[u8; 32]>::try_from(raw.as_slice())
            .map(Self::from_bytes)
            .map_err(|_| Error::Config {
                path: path.display().to_string(),
                reason: "master key file must hold 64 hex digits".into(),
            });
        raw.zeroize();
        res
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = Zeroizing::new(format!("{}\n", hex::encode(*self.key)));
        foundations::fs::write_secret_file(path, text.as_bytes())
    }

    fn aad(kid: &str, product: &str) -> Vec<u8> {
        // Length-prefixed fields, so ("a","bc") and ("ab","c") never collide.
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + kid.len() + product.len() + 8);
        aad.extend_from_slice(AAD_LABEL);
        for f in [kid.as_bytes(), product.as_bytes()] {
            aad.extend_from_slice(&(f.len() as u32).to_be_bytes());
            aad.extend_from_slice(f);
        }
        aad
    }

    /// Encrypts `plaintext` bound to `kid` and `product`: returns nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &str, product: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).map_err(|_| Error::Random)?;
        let nonce_bytes = foundations::random_bytes::<12>()?;
        let nonce = Nonce::from(nonce_bytes);
        let aad = Self::aad(kid, product);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts the output of [`MasterKey::seal`]; fails if `kid` or `product` differ.
    pub fn open(
        &self,
        kid: &str,
        product: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < 12 + 16 {
            return Err(Error::Corrupt(format!("sealed key {kid} too short")));
        }
        let cipher = Aes256Gcm::new_from_slice(&self.key[..]).map_err(|_| Error::Random)?;
        let (n, ct) = sealed.split_at(12);
        let nonce_bytes: [u8; 12] = n.try_into().map_err(|_| Error::Corrupt("nonce".into()))?;
        let nonce = Nonce::from(nonce_bytes);
        let aad = Self::aad(kid, product);
        cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Corrupt(format!("authentication of sealed key {kid} failed")))
    }

    /// Key for the audit chain MAC, derived so that it is independent of the sealing key.
    pub fn audit_mac_key(&self) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key[..])
            .expect("HMAC accepts keys of any length");
        mac.update(b"ics-suit key-repo v1 audit chain");
        let out = mac.finalize().into_bytes();
        let mut k = [0u8; 32];
        k.copy_from_slice(&out);
        Zeroizing::new(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_kid_and_product() {
        let mk = MasterKey::generate().unwrap();
        let sealed = mk.seal("k1", "p1", b"secret key bytes").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            &mk.open("k1", "p1", &sealed).unwrap()[..],
            b"secret key bytes"
        );
        assert!(mk.open("k2", "p1", &sealed).is_err());
        assert!(mk.open("k1", "p2", &sealed).is_err());
        let other = MasterKey::generate().unwrap();
        assert!(other.open("k1", "p1", &sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(mk.open("k1", "p1", &tampered).is_err());
    }

    #[test]
    fn master_key_file_roundtrip_is_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let mk = MasterKey::generate().unwrap();
        mk.save(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = MasterKey::load(&p).unwrap();
        let sealed = mk.seal("k", "p", b"x").unwrap();
        assert_eq!(&back.open("k", "p", &sealed).unwrap()[..], b"x");
    }
}
