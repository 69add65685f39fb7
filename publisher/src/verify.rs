//! `publisher inspect` and `publisher verify`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use suit::release::PayloadVerifier;
use suit::{Limits, ReleaseKey, Role, TrustAnchor, TrustStore};
use zeroize::Zeroizing;

use crate::files::read_bounded;
use crate::release::load_public_key;
use crate::{CliError, Result};

/// Envelopes larger than this are refused before parsing.
pub const ENVELOPE_FILE_LIMIT: u64 = 1 << 20;

/// `publisher inspect`.
pub fn inspect(path: &Path) -> Result<suit::inspect::Description> {
    let bytes = read_bounded(path, ENVELOPE_FILE_LIMIT, "cannot read envelope")?;
    let env = suit::Envelope::decode(&bytes, &Limits::default())?;
    Ok(suit::inspect::describe(&env))
}

/// Inputs of `publisher verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// Envelope file.
    pub envelope: PathBuf,
    /// Trusted manufacturer keys.
    pub trust: Vec<PathBuf>,
    /// Trusted third-party keys (may sign T1 only).
    pub third_party: Vec<PathBuf>,
    /// Trusted approver (dispatcher) keys; when given, an approval signature is required.
    pub approver: Vec<PathBuf>,
    /// HMAC key material (hex), already read from its source.
    pub mac_key: Option<Zeroizing<Vec<u8>>>,
    /// Encrypted payload.
    pub payload: Option<PathBuf>,
    /// Release key (COSE_Key).
    pub release_key: Option<PathBuf>,
    /// T3 author key.
    pub author_trust: Vec<PathBuf>,
    /// Where to write the decrypted image (only after every check passed).
    pub extract: Option<PathBuf>,
}

/// What passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Release id.
    pub release_id: String,
    /// The checks that passed, in order.
    pub passed: Vec<String>,
}

/// `publisher verify`: signatures or MAC, then the payload checks that the inputs allow.
pub fn verify(a: &VerifyArgs) -> Result<VerifyReport> {
    if a.trust.is_empty() && a.third_party.is_empty() && a.mac_key.is_none() {
        return Err(CliError::Input(
            "give at least one --trust PUBPEM (or --mac-key) to verify against".into(),
        ));
    }
    if a.release_key.is_some() && a.payload.is_none() {
        return Err(CliError::Input("--release-key needs --payload".into()));
    }
    let mut trust = TrustStore::new();
    // Keys given by a person on the command line are tried against every signature.
    for (paths, role) in [
        (&a.trust, Role::Manufacturer),
        (&a.third_party, Role::ThirdParty),
        (&a.approver, Role::Approver),
        (&a.author_trust, Role::Author),
    ] {
        for p in paths {
            trust.add(TrustAnchor::new(load_public_key(p)?, role).matching_any_kid());
        }
    }
    trust.require_approval = !a.approver.is_empty();
    trust.require_author = !a.author_trust.is_empty();
    if let Some(k) = &a.mac_key {
        trust.add_mac_key(k);
    }
    let bytes = read_bounded(&a.envelope, ENVELOPE_FILE_LIMIT, "cannot read envelope")?;
    let verified = suit::verify(&bytes, &trust, &Limits::default())?;
    let mut passed = vec![
        "manifest digest".to_owned(),
        match verified
            .signers()
            .iter()
            .filter(|s| s.role.is_some())
            .count()
        {
            0 => "MAC".to_owned(),
            n => format!("{n} signature(s)"),
        },
    ];
    if verified.approved() {
        passed.push("approval signature".into());
    }
    if verified.author_verified() {
        passed.push("T3 author signature".into());
    }

    if let Some(payload) = &a.payload {
        let key = match &a.release_key {
            Some(p) => Some(
                ReleaseKey::from_cose_key(&Zeroizing::new(read_bounded(
                    p,
                    4096,
                    "cannot read release key",
                )?))
                .map_err(|e| CliError::Input(format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        let mut checker = PayloadVerifier::new(&verified, key.as_ref())?;
        // Decrypted bytes go to a temporary file that is kept only if every check passes.
        let mut sink = match (&a.extract, &key) {
            (Some(out), Some(_)) => Some(crate::files::AtomicFile::create(out, false)?),
            (Some(_), None) => {
                return Err(CliError::Input("--extract needs --release-key".into()));
            }
            _ => None,
        };
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| CliError::Io { what, path, source }
        };
        let mut f = File::open(payload).map_err(io("cannot open payload", payload))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(io("cannot read payload", payload))?;
            if n == 0 {
                break;
            }
            let plain = checker.update(&mut buf[..n])?;
            if let Some(s) = sink.as_mut() {
                s.write_all(plain)?;
            }
        }
        checker.finish()?;
        passed.push("ciphertext size and digest".into());
        if key.is_some() {
            passed.push("decryption (AES-GCM tag)".into());
            passed.push("plaintext size and digest".into());
        }
        if let Some(s) = sink {
            s.commit()?;
        }
    }
    let _ = std::io::stdout().flush();
    Ok(VerifyReport {
        release_id: verified.release_id(),
        passed,
    })
}
