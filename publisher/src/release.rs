//! `keygen`, `release` and `author-sign`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use suit::consts::{alg, version_cmp};
use suit::manifest::{VersionMatch, parse_version};
use suit::release::{ImageInfo, ReleaseParams, build_release_envelope};
use suit::{IcsMetadata, PayloadEncryptor, ReleaseKey, SigningKey, SuitDigest, UpdateType};
use uuid::Uuid;

use crate::files::{AtomicFile, ensure_dir, read_bounded, write_atomic};
use crate::{CliError, Result, rng};

const KEY_FILE_LIMIT: u64 = 64 * 1024;
/// Chunk size of the release pipeline: large enough to amortise syscalls, small enough
/// that four in flight stay a few MiB.
const CHUNK: usize = 4 << 20;

/// The default kid of a key: the first 8 bytes of its RFC 9679 thumbprint, in hex.
pub fn default_kid(key: &suit::PublicKey) -> String {
    hex::encode(&key.thumbprint()[..8])
}

/// `publisher keygen`: writes `signing-key.pem` (0600), `signing-key.pub.pem` and
/// `signing-key.kid`; returns the kid.
pub fn keygen(out: &Path, kid: Option<&str>) -> Result<String> {
    ensure_dir(out)?;
    let key = SigningKey::generate(&mut rng());
    let kid = match kid {
        Some(k) => validate_kid(k)?.to_owned(),
        None => default_kid(&key.public_key()),
    };
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| CliError::Input(e.to_string()))?;
    let private = out.join("signing-key.pem");
    if private.exists() {
        return Err(CliError::Input(format!(
            "{} already exists; refusing to overwrite a signing key",
            private.display()
        )));
    }
    write_atomic(&private, pem.as_bytes(), true)?;
    write_atomic(
        &out.join("signing-key.pub.pem"),
        key.public_key().to_pem().as_bytes(),
        false,
    )?;
    write_atomic(
        &out.join("signing-key.kid"),
        format!("{kid}\n").as_bytes(),
        false,
    )?;
    Ok(kid)
}

fn validate_kid(kid: &str) -> Result<&str> {
    if kid.is_empty() || kid.len() > 64 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Input(
            "a kid must be 1 to 64 printable ASCII characters without spaces".into(),
        ));
    }
    Ok(kid)
}

/// Loads a PKCS#8 signing key. Its kid is `kid` if given, else the content of the
/// `.kid` file beside it (as written by keygen), else the default kid.
pub fn load_signing_key(path: &Path, kid: Option<&str>) -> Result<SigningKey> {
    let pem = read_bounded(path, KEY_FILE_LIMIT, "cannot read signing key")?;
    let pem = String::from_utf8(pem)
        .map_err(|_| CliError::Input(format!("{}: not a PEM file", path.display())))?;
    let key = SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let kid = match kid {
        Some(k) => validate_kid(k)?.to_owned(),
        None => {
            let side = path.with_extension("kid");
            match std::fs::read_to_string(&side) {
                Ok(k) => validate_kid(k.trim())?.to_owned(),
                Err(_) => default_kid(&key.public_key()),
            }
        }
    };
    Ok(key.with_kid(kid.into_bytes()))
}

/// Loads a public key PEM; the kid comes from the `.kid` file beside it when present.
pub fn load_public_key(path: &Path) -> Result<suit::PublicKey> {
    let pem = read_bounded(path, KEY_FILE_LIMIT, "cannot read public key")?;
    let pem = String::from_utf8(pem)
        .map_err(|_| CliError::Input(format!("{}: not a PEM file", path.display())))?;
    let key = suit::PublicKey::from_pem(&pem)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let stem = path
        .to_string_lossy()
        .trim_end_matches(".pem")
        .trim_end_matches(".pub")
        .to_owned();
    let kid = std::fs::read_to_string(format!("{stem}.kid"))
        .ok()
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|| default_kid(&key));
    Ok(key.with_kid(kid.into_bytes()))
}

/// Inputs of `publisher release`.
#[derive(Debug, Clone)]
pub struct ReleaseArgs {
    /// PKCS#8 signing key.
    pub signing_key: PathBuf,
    /// kid override.
    pub kid: Option<String>,
    /// Plaintext image.
    pub image: PathBuf,
    /// Vendor-id.
    pub vendor_id: Uuid,
    /// Class-id.
    pub class_id: Uuid,
    /// Device-id for a device-specific release.
    pub device_id: Option<Uuid>,
    /// Sequence number.
    pub sequence: u64,
    /// X.Y.Z.
    pub version: String,
    /// Version precondition, e.g. ">=1.2.0".
    pub requires: Option<String>,
    /// Metadata.
    pub ics: IcsMetadata,
    /// Fetch URI.
    pub uri: Option<String>,
    /// T3 author signature file.
    pub author_signature: Option<PathBuf>,
    /// kid of the per-release key in the key repository (default: random).
    pub release_kid: Option<String>,
    /// Content encryption: 128 or 256 bits.
    pub aes256: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
}

/// What `release` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseSummary {
    /// Hex SHA-256 of the manifest bstr.
    pub release_id: String,
    /// kid of the release key (KEK).
    pub release_kid: String,
    /// kid of the signing key.
    pub signer_kid: String,
    /// Files.
    pub envelope: PathBuf,
    /// Encrypted payload.
    pub payload: PathBuf,
    /// COSE_Key of the KEK (secret).
    pub release_key: PathBuf,
    /// Plaintext size.
    pub image_size: u64,
    /// `ciphertext || tag` size.
    pub payload_size: u64,
    /// Seconds spent on the payload pipeline.
    pub seconds: f64,
}

/// Parses a version precondition: `>=1.2`, `>1`, `==2.0.1`, `<=3`, `<3`.
pub fn parse_requirement(s: &str) -> Result<VersionMatch> {
    let s = s.trim();
    let (cmp, rest) = [
        (">=", version_cmp::GREATER_EQUAL),
        ("<=", version_cmp::LESSER_EQUAL),
        ("==", version_cmp::EQUAL),
        (">", version_cmp::GREATER),
        ("<", version_cmp::LESSER),
    ]
    .into_iter()
    .find_map(|(op, c)| s.strip_prefix(op).map(|r| (c, r)))
    .ok_or_else(|| {
        CliError::Input(format!(
            "version requirement {s:?} must start with >=, >, ==, <= or <"
        ))
    })?;
    let version = parse_version(rest.trim())
        .ok_or_else(|| CliError::Input(format!("{rest:?} is not a version like 1.2.3")))?;
    Ok(VersionMatch {
        comparison: cmp,
        version,
    })
}

fn random_release_kid() -> String {
    let mut b = [0u8; 12];
    rand_core::Rng::fill_bytes(&mut rng(), &mut b);
    format!("rk-{}", hex::encode(b))
}

/// `publisher release`.
pub fn release(a: &ReleaseArgs) -> Result<ReleaseSummary> {
    let signer = load_signing_key(&a.signing_key, a.kid.as_deref())?;
    let version = parse_version(&a.version).ok_or_else(|| {
        CliError::Input(format!(
            "--version {:?} is not a version like 1.2.3",
            a.version
        ))
    })?;
    let requires = a.requires.as_deref().map(parse_requirement).transpose()?;
    let mut ics = a.ics.clone();
    for cve in &ics.cves {
        if !suit::ics::is_cve_id(cve) {
            return Err(CliError::Input(format!(
                "--cve {cve:?} is not a CVE id like CVE-2024-12345"
            )));
        }
    }
    match (ics.update_type, &a.author_signature) {
        (UpdateType::T3, None) => {
            return Err(CliError::Input(
                "a T3 release needs --author-signature (made with `publisher author-sign`)".into(),
            ));
        }
        (UpdateType::T3, Some(p)) => {
            let sig = read_bounded(p, KEY_FILE_LIMIT, "cannot read author signature")?;
            suit::cose::AuthBlock::parse(&sig).map_err(|e| {
                CliError::Input(format!(
                    "{}: not a COSE_Sign1 author signature: {e}",
                    p.display()
                ))
            })?;
            ics.author_signature = Some(sig);
        }
        (t, Some(_)) => {
            return Err(CliError::Input(format!(
                "--author-signature is for T3 releases; this is {t}"
            )));
        }
        (_, None) => {}
    }
    let release_kid = match &a.release_kid {
        Some(k) => validate_kid(k)?.to_owned(),
        None => random_release_kid(),
    };
    ensure_dir(&a.out)?;

    // Fresh KEK and CEK for every release (DESIGN.md §2 flow 1).
    let mut rng = rng();
    let kek = ReleaseKey::generate(
        if a.aes256 { alg::A256KW } else { alg::A128KW },
        release_kid.clone().into_bytes(),
        &mut rng,
    )?;
    let (encryptor, info) = PayloadEncryptor::new(
        if a.aes256 { alg::A256GCM } else { alg::A128GCM },
        &kek,
        &mut rng,
    )?;

    let payload_path = a.out.join("payload.enc");
    let started = Instant::now();
    let (plain, encrypted) = encrypt_file(&a.image, &payload_path, encryptor, info, a.progress)?;
    let seconds = started.elapsed().as_secs_f64();

    let params = ReleaseParams {
        vendor_id: a.vendor_id,
        class_id: a.class_id,
        device_id: a.device_id,
        sequence: a.sequence,
        version,
        requires,
        uri: a.uri.clone(),
        ics,
    };
    let envelope = build_release_envelope(&params, &plain, &encrypted, &signer)?;
    let key_path = a.out.join("release-key.cbor");
    write_atomic(&key_path, &kek.to_cose_key(), true)?;
    let env_path = a.out.join("envelope.suit");
    write_atomic(&env_path, &envelope, false)?;
    let release_id = suit::Envelope::decode(&envelope, &suit::Limits::default())?.release_id();
    Ok(ReleaseSummary {
        release_id,
        release_kid,
        signer_kid: String::from_utf8_lossy(signer.kid()).into_owned(),
        envelope: env_path,
        payload: payload_path,
        release_key: key_path,
        image_size: plain.size,
        payload_size: encrypted.size,
        seconds,
    })
}

/// Streams `image` through SHA-256 (plaintext) on a reader thread and AES-GCM + SHA-256
/// (ciphertext) on this one, writing `ciphertext || tag` atomically to `out`.
fn encrypt_file(
    image: &Path,
    out: &Path,
    mut encryptor: PayloadEncryptor,
    info: Vec<u8>,
    progress: bool,
) -> Result<(ImageInfo, suit::encryption::EncryptedPayload)> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Io { what, path, source }
    };
    let mut file = File::open(image).map_err(io("cannot open image", image))?;
    let size = file
        .metadata()
        .map_err(io("cannot read image", image))?
        .len();
    let bar = byte_progress(size, "encrypting", progress);
    let mut output = AtomicFile::create(out, false)?;

    // Three stages, so that two cores share the work: (1) read + SHA-256 of the plaintext,
    // (2) AES-GCM in place, (3) SHA-256 of the ciphertext + write. Buffers circulate
    // 1 -> 2 -> 3 -> 1, so memory stays at BUFFERS * CHUNK whatever the image size.
    const BUFFERS: usize = 4;
    let (plain_tx, plain_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    let (cipher_tx, cipher_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    let result = std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<(SuitDigest, u64)> {
            let mut hash = Sha256::new();
            let mut total = 0u64;
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(CHUNK, 0);
                let mut n = 0;
                while n < CHUNK {
                    match file.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(n);
                hash.update(&buf);
                total += n as u64;
                let last = n < CHUNK;
                if plain_tx.send(buf).is_err() || last {
                    break;
                }
            }
            Ok((SuitDigest::from_sha256(hash.finalize().into()), total))
        });
        let bar = &bar;
        let output = &mut output;
        let writer = s.spawn(move || -> Result<Sha256> {
            let mut hash = Sha256::new();
            for buf in cipher_rx.iter() {
                hash.update(&buf);
                output.write_all(&buf)?;
                bar.inc(buf.len() as u64);
                // The reader may have finished; a closed channel is fine.
                let _ = empty_tx.send(buf);
            }
            Ok(hash)
        });
        for mut buf in plain_rx.iter() {
            encryptor.encrypt_only(&mut buf);
            if cipher_tx.send(buf).is_err() {
                break;
            }
        }
        drop(cipher_tx);
        let ct_hash = writer
            .join()
            .map_err(|_| CliError::Input("payload writer thread panicked".into()))??;
        let read = reader
            .join()
            .map_err(|_| CliError::Input("image reader thread panicked".into()))?
            .map_err(io("cannot read image", image))?;
        Ok::<_, CliError>((read, ct_hash))
    });
    let ((digest, total), ct_hash) = result?;
    bar.finish_and_clear();
    if total != size {
        return Err(CliError::Input(format!(
            "{} changed size while being read ({size} then {total} bytes)",
            image.display()
        )));
    }
    let encrypted = encryptor.finish_with_hasher(info, ct_hash);
    output.write_all(&encrypted.tag)?;
    output.commit()?;
    Ok((ImageInfo { digest, size }, encrypted))
}

/// `publisher author-sign`: a COSE_Sign1 over the image's SUIT_Digest (T3).
pub fn author_sign(signing_key: &Path, image: &Path, out: &Path) -> Result<String> {
    let key = load_signing_key(signing_key, None)?;
    let digest = hash_file(image)?;
    write_atomic(out, &key.sign1_detached(&digest.encode()), false)?;
    Ok(String::from_utf8_lossy(key.kid()).into_owned())
}

/// SHA-256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<SuitDigest> {
    let mut f = File::open(path).map_err(|source| CliError::Io {
        what: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| CliError::Io {
            what: "cannot read",
            path: path.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(SuitDigest::from_sha256(hash.finalize().into()))
}

/// A progress bar over `len` bytes labelled `message`; hidden unless `show`.
pub(crate) fn byte_progress(len: u64, message: &'static str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(message);
    b
}
