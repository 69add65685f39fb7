//! Building releases per the project profile (DESIGN.md §3), and checking a payload against
//! a verified envelope.
//!
//! Profile (encrypt-then-sign): two components, `[h'00']` the installed image (#0, plaintext
//! digest and size) and `[h'01']` the encrypted blob as fetched (#1, ciphertext digest and
//! size), so the update server and the dispatcher can check a blob without the key.
//!
//! ```text
//! shared:   set-component-index 0, override {vendor-id, class-id, image-digest(pt), image-size(pt)
//!           [, device-id] [, version]}, condition vendor, condition class [, device] [, version],
//!           set-component-index 1, override {image-digest(ct), image-size(ct)}
//! install:  set-component-index 1 [, override {uri}], fetch, condition image-match,
//!           set-component-index 0, override {encryption-info, source-component 1}, copy,
//!           condition image-match
//! validate: set-component-index 0, condition image-match
//! ```

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::accept::Accepted;
use crate::cbor;
use crate::consts::{cmd, manifest as mk, param};
use crate::cose::SigningKey;
use crate::encryption::{EncryptedPayload, EncryptionInfo, ReleaseKey};
use crate::envelope::build_envelope;
use crate::error::Error;
use crate::ics::IcsMetadata;
use crate::manifest::{
    Command, CommandSequence, Common, ComponentIndex, Manifest, Param, Parameters, SuitDigest,
    VendorId, VersionMatch, encode_common, encode_set_version,
};

/// Component index of the installed (plaintext) image.
pub const COMPONENT_IMAGE: usize = 0;
/// Component index of the encrypted blob as fetched.
pub const COMPONENT_BLOB: usize = 1;

/// Digest and size of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// SUIT_Digest.
    pub digest: SuitDigest,
    /// Size in bytes.
    pub size: u64,
}

/// What goes into a release manifest besides the payload facts.
#[derive(Debug, Clone)]
pub struct ReleaseParams {
    /// Vendor-id (condition 1).
    pub vendor_id: Uuid,
    /// Class-id (condition 2).
    pub class_id: Uuid,
    /// Device-id (condition 24), for a release targeted at one device.
    pub device_id: Option<Uuid>,
    /// Manifest sequence number (anti-rollback).
    pub sequence: u64,
    /// The version this release installs (set-version).
    pub version: Vec<i64>,
    /// Version precondition on the installed image (condition-version).
    pub requires: Option<VersionMatch>,
    /// Where the blob can be fetched from.
    pub uri: Option<String>,
    /// ICS metadata.
    pub ics: IcsMetadata,
}

fn seq(commands: Vec<Command>) -> CommandSequence {
    CommandSequence(commands)
}

fn cond(id: i64) -> Command {
    // Reporting policy 15: record and report on success and failure.
    Command::Condition { id, policy: 15 }
}

fn directive(id: i64) -> Command {
    Command::Directive { id, policy: 15 }
}

/// Builds the manifest content (the bytes inside the manifest bstr).
pub fn build_manifest(
    p: &ReleaseParams,
    plaintext: &ImageInfo,
    encrypted: &EncryptedPayload,
) -> Result<Vec<u8>, Error> {
    if p.version.is_empty() {
        return Err(Error::InvalidInput(
            "version must have at least one component".into(),
        ));
    }
    let mut image_params: Parameters = vec![
        (
            param::VENDOR_IDENTIFIER,
            Param::Vendor(VendorId::Uuid(p.vendor_id)),
        ),
        (param::CLASS_IDENTIFIER, Param::Uuid(p.class_id)),
        (param::IMAGE_DIGEST, Param::Digest(plaintext.digest.clone())),
        (param::IMAGE_SIZE, Param::Uint(plaintext.size)),
    ];
    if let Some(d) = p.device_id {
        image_params.push((param::DEVICE_IDENTIFIER, Param::Uuid(d)));
    }
    if let Some(r) = &p.requires {
        image_params.push((param::VERSION, Param::Version(r.clone())));
    }
    let mut shared = vec![
        Command::SetComponentIndex(ComponentIndex::One(COMPONENT_IMAGE as u64)),
        Command::OverrideParameters(image_params),
        cond(cmd::VENDOR_IDENTIFIER),
        cond(cmd::CLASS_IDENTIFIER),
    ];
    if p.device_id.is_some() {
        shared.push(cond(cmd::DEVICE_IDENTIFIER));
    }
    if p.requires.is_some() {
        shared.push(cond(cmd::VERSION));
    }
    shared.extend([
        Command::SetComponentIndex(ComponentIndex::One(COMPONENT_BLOB as u64)),
        Command::OverrideParameters(vec![
            (param::IMAGE_DIGEST, Param::Digest(encrypted.digest.clone())),
            (param::IMAGE_SIZE, Param::Uint(encrypted.size)),
        ]),
    ]);

    let mut install = vec![Command::SetComponentIndex(ComponentIndex::One(
        COMPONENT_BLOB as u64,
    ))];
    if let Some(uri) = &p.uri {
        install.push(Command::OverrideParameters(vec![(
            param::URI,
            Param::Text(uri.clone()),
        )]));
    }
    install.extend([
        directive(cmd::FETCH),
        cond(cmd::IMAGE_MATCH),
        Command::SetComponentIndex(ComponentIndex::One(COMPONENT_IMAGE as u64)),
        Command::OverrideParameters(vec![
            (
                param::ENCRYPTION_INFO,
                Param::EncryptionInfo(encrypted.encryption_info.clone()),
            ),
            (param::SOURCE_COMPONENT, Param::Uint(COMPONENT_BLOB as u64)),
        ]),
        directive(cmd::COPY),
        cond(cmd::IMAGE_MATCH),
    ]);
    let validate = vec![
        Command::SetComponentIndex(ComponentIndex::One(COMPONENT_IMAGE as u64)),
        cond(cmd::IMAGE_MATCH),
    ];
    let common = Common {
        components: vec![vec![vec![0x00]], vec![vec![0x01]]],
        dependencies: None,
        shared_sequence: Some(seq(shared)),
    };

    use ciborium::Value as V;
    let int = |n: i64| V::Integer(n.into());
    let manifest = V::Map(vec![
        (int(mk::VERSION), int(1)),
        (int(mk::SEQUENCE_NUMBER), V::Integer(p.sequence.into())),
        (int(mk::COMMON), V::Bytes(encode_common(&common))),
        (
            int(mk::SET_VERSION),
            V::Bytes(encode_set_version(&p.version)),
        ),
        (int(mk::VALIDATE), V::Bytes(seq(validate).encode())),
        (int(mk::INSTALL), V::Bytes(seq(install).encode())),
        (int(mk::ICS_METADATA), p.ics.to_value()),
    ]);
    Ok(cbor::encode(&manifest))
}

/// Builds and signs a release envelope (encrypt-then-sign: the payload is already
/// encrypted, its ciphertext digest is in the manifest).
pub fn build_release_envelope(
    p: &ReleaseParams,
    plaintext: &ImageInfo,
    encrypted: &EncryptedPayload,
    signer: &SigningKey,
) -> Result<Vec<u8>, Error> {
    let content = build_manifest(p, plaintext, encrypted)?;
    // Sanity: what we produce must decode under default limits.
    Manifest::decode(&content, &Default::default())?;
    let digest = SuitDigest::sha256(&cbor::bstr_wrap(&content));
    let block = signer.sign1_detached(&digest.encode());
    Ok(build_envelope(&content, &[&block], &[]))
}

/// A release built in memory by [`build_release`].
#[derive(Debug, Clone)]
pub struct BuiltRelease {
    /// The signed envelope.
    pub envelope: Vec<u8>,
    /// `ciphertext || tag`.
    pub blob: Vec<u8>,
    /// The fresh release key (KEK) the blob's CEK is wrapped with.
    pub release_key: ReleaseKey,
}

/// Encrypt-then-sign an image held in memory: a fresh A128KW release key named
/// `release_kid`, a fresh A128GCM CEK and IV, then the signed envelope. For tools, tests and
/// benchmarks; the publisher streams large images through [`crate::PayloadEncryptor`].
pub fn build_release<R: rand_core::CryptoRng + ?Sized>(
    p: &ReleaseParams,
    image: &[u8],
    release_kid: &[u8],
    signer: &SigningKey,
    rng: &mut R,
) -> Result<BuiltRelease, Error> {
    use crate::consts::alg;
    let release_key = ReleaseKey::generate(alg::A128KW, release_kid.to_vec(), rng)?;
    let (mut enc, info) = crate::PayloadEncryptor::new(alg::A128GCM, &release_key, rng)?;
    let mut blob = image.to_vec();
    enc.update(&mut blob);
    let done = enc.finish(info);
    blob.extend_from_slice(&done.tag);
    let plain = ImageInfo {
        digest: SuitDigest::sha256(image),
        size: image.len() as u64,
    };
    Ok(BuiltRelease {
        envelope: build_release_envelope(p, &plain, &done, signer)?,
        blob,
        release_key,
    })
}

/// Creates a T3 author signature: COSE_Sign1 over the plaintext image's SUIT_Digest.
pub fn author_sign(image: &[u8], author: &SigningKey) -> Vec<u8> {
    author.sign1_detached(&SuitDigest::sha256(image).encode())
}

/// Parameters for `component` as set by the shared, payload-fetch and install sequences
/// (set-component-index followed in order; try-each alternatives are not entered).
pub fn component_params(manifest: &Manifest, component: usize) -> BTreeMap<i64, Param> {
    manifest.parameters(component, &[mk::PAYLOAD_FETCH, mk::INSTALL])
}

fn image_info(manifest: &Manifest, component: usize) -> Option<ImageInfo> {
    let p = component_params(manifest, component);
    match (p.get(&param::IMAGE_DIGEST), p.get(&param::IMAGE_SIZE)) {
        (Some(Param::Digest(d)), Some(Param::Uint(s))) => Some(ImageInfo {
            digest: d.clone(),
            size: *s,
        }),
        _ => None,
    }
}

/// The ciphertext digest and size signed for the fetched blob (component #1).
pub fn ciphertext_info(v: &Accepted) -> Result<ImageInfo, Error> {
    if let Ok(r) = v.release() {
        return Ok(r.blob.clone());
    }
    image_info(v.manifest(), COMPONENT_BLOB).ok_or(Error::ProfileViolation(
        "ciphertext digest and size (component 1)",
    ))
}

/// The plaintext digest and size signed for the installed image (component #0).
pub fn plaintext_info(v: &Accepted) -> Result<ImageInfo, Error> {
    if let Ok(r) = v.release() {
        return Ok(r.image.clone());
    }
    image_info(v.manifest(), COMPONENT_IMAGE).ok_or(Error::ProfileViolation(
        "plaintext digest and size (component 0)",
    ))
}

/// The SUIT_Encryption_Info that decrypts into the installed image.
pub fn encryption_info(v: &Accepted) -> Result<EncryptionInfo, Error> {
    if let Ok(r) = v.release() {
        return Ok(r.encryption.clone());
    }
    let m = v.manifest();
    (0..m.common.components.len())
        .find_map(
            |i| match component_params(m, i).remove(&param::ENCRYPTION_INFO) {
                Some(Param::EncryptionInfo(b)) => Some(b),
                _ => None,
            },
        )
        .ok_or(Error::ProfileViolation("encryption info (parameter 19)"))
        .and_then(|b| EncryptionInfo::decode(&b))
}

/// Checks a received blob against the signed ciphertext size and digest (no key needed).
pub fn check_ciphertext(v: &Accepted, payload: &[u8]) -> Result<(), Error> {
    let info = ciphertext_info(v)?;
    check_size_and_digest(
        &info,
        payload.len() as u64,
        &Sha256::digest(payload).into(),
        true,
    )
}

/// Compares a size and SHA-256 with signed values; `cipher` selects the error variants.
pub fn check_size_and_digest(
    info: &ImageInfo,
    size: u64,
    sha256: &[u8; 32],
    cipher: bool,
) -> Result<(), Error> {
    if size != info.size {
        return Err(if cipher {
            Error::CiphertextSizeMismatch {
                expected: info.size,
                actual: size,
            }
        } else {
            Error::PlaintextSizeMismatch {
                expected: info.size,
                actual: size,
            }
        });
    }
    if !info.digest.matches_sha256(sha256)? {
        return Err(if cipher {
            Error::CiphertextDigestMismatch
        } else {
            Error::PlaintextDigestMismatch
        });
    }
    Ok(())
}

/// Full payload check in one call: see [`PayloadVerifier`]. Returns the image.
pub fn decrypt_payload(v: &Accepted, payload: &[u8], key: &ReleaseKey) -> Result<Vec<u8>, Error> {
    let mut checker = PayloadVerifier::new(v, Some(key))?;
    let mut buf = payload.to_vec();
    let n = checker.update(&mut buf)?.len();
    buf.truncate(n);
    checker.finish()?;
    Ok(buf)
}

/// Streaming check of a blob against a verified envelope: ciphertext size and digest
/// (component #1), and with a release key, decryption and plaintext size and digest
/// (component #0). Memory use is independent of the payload size. Plaintext handed out by
/// [`Self::update`] is unauthenticated until [`Self::finish`] returns Ok.
#[derive(Debug)]
pub struct PayloadVerifier {
    ct: ImageInfo,
    ct_hash: Sha256,
    ct_len: u64,
    decrypt: Option<(crate::encryption::PayloadDecryptor, ImageInfo, Sha256, u64)>,
}

impl PayloadVerifier {
    /// Starts a check; `key` enables decryption.
    pub fn new(v: &Accepted, key: Option<&ReleaseKey>) -> Result<Self, Error> {
        let ct = ciphertext_info(v)?;
        let decrypt = match key {
            Some(k) => Some((
                encryption_info(v)?.decryptor(k)?,
                plaintext_info(v)?,
                Sha256::new(),
                0,
            )),
            None => None,
        };
        Ok(Self {
            ct,
            ct_hash: Sha256::new(),
            ct_len: 0,
            decrypt,
        })
    }

    /// Feeds the next chunk of the blob; decrypts it in place when a key was given and
    /// returns the plaintext now available (a prefix of `chunk`). A blob longer than the
    /// signed size is rejected as soon as it is seen.
    pub fn update<'a>(&mut self, chunk: &'a mut [u8]) -> Result<&'a [u8], Error> {
        self.ct_len += chunk.len() as u64;
        if self.ct_len > self.ct.size {
            return Err(Error::CiphertextSizeMismatch {
                expected: self.ct.size,
                actual: self.ct_len,
            });
        }
        self.ct_hash.update(&*chunk);
        match &mut self.decrypt {
            Some((d, _, pt_hash, pt_len)) => {
                let n = d.update(chunk);
                pt_hash.update(&chunk[..n]);
                *pt_len += n as u64;
                Ok(&chunk[..n])
            }
            None => Ok(&chunk[..0]),
        }
    }

    /// Runs the final checks in order: ciphertext size, ciphertext digest, GCM tag,
    /// plaintext size, plaintext digest.
    pub fn finish(self) -> Result<(), Error> {
        let ct_digest: [u8; 32] = self.ct_hash.finalize().into();
        check_size_and_digest(&self.ct, self.ct_len, &ct_digest, true)?;
        if let Some((d, pt, pt_hash, pt_len)) = self.decrypt {
            d.finish()?;
            check_size_and_digest(&pt, pt_len, &pt_hash.finalize().into(), false)?;
        }
        Ok(())
    }
}
