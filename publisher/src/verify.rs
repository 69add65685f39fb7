//! `publisher inspect` and `publisher verify`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use suit::release::PayloadVerifier;
use suit::{ApprovalRule, AuthorRule, Limits, ReleaseKey, Role, Rules, TrustAnchor, TrustStore};
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
    /// A trust-store file (TOML).
    pub trust_store: Option<PathBuf>,
    /// Require the approval signature (also implied by `approver`).
    pub require_approval: bool,
    /// Require a verified T3 author signature (also implied by `author_trust`).
    pub require_author: bool,
    /// Unix time to judge key validity at (default: now).
    pub at: Option<u64>,
    /// Any authenticated SUIT envelope, not only the release profile.
    pub generic: bool,
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

/// Largest trust-store file read.
const TRUST_FILE_LIMIT: u64 = suit::trust::MAX_TRUST_FILE as u64;

/// Builds the trust store from the trust-store file and the keys given one by one.
fn trust_store(a: &VerifyArgs) -> Result<TrustStore> {
    let mut trust = match &a.trust_store {
        Some(path) => {
            let text = read_bounded(path, TRUST_FILE_LIMIT, "cannot read trust store")?;
            let text = String::from_utf8(text)
                .map_err(|_| CliError::Input(format!("{}: not UTF-8", path.display())))?;
            let base = path.parent().unwrap_or(Path::new(".")).to_owned();
            TrustStore::from_toml(&text, &mut |name| {
                std::fs::read_to_string(base.join(name)).map_err(|e| e.to_string())
            })
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?
        }
        None => TrustStore::new(),
    };
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
    if let Some(k) = &a.mac_key {
        trust.add_mac_key(k);
    }
    Ok(trust)
}

/// The rules `publisher verify` accepts under: the release profile, as the update server,
/// the dispatcher and devices apply it (`suit::Rules::publisher_check`).
fn rules(a: &VerifyArgs) -> Rules {
    let mut rules = if a.generic {
        Rules::generic()
    } else {
        Rules::publisher_check()
    };
    if a.require_approval || !a.approver.is_empty() {
        rules.approval = ApprovalRule::Required;
    }
    if a.require_author || !a.author_trust.is_empty() {
        rules.author = AuthorRule::Require;
    }
    rules
}

/// `publisher verify`: `suit::accept`, then the payload checks that the inputs allow.
pub fn verify(a: &VerifyArgs) -> Result<VerifyReport> {
    if a.trust.is_empty()
        && a.third_party.is_empty()
        && a.mac_key.is_none()
        && a.trust_store.is_none()
    {
        return Err(CliError::Input(
            "give --trust-store FILE or at least one --trust PUBPEM (or --mac-key) to verify against"
                .into(),
        ));
    }
    if a.release_key.is_some() && a.payload.is_none() {
        return Err(CliError::Input("--release-key needs --payload".into()));
    }
    let trust = trust_store(a)?;
    let rules = rules(a);
    let bytes = read_bounded(&a.envelope, ENVELOPE_FILE_LIMIT, "cannot read envelope")?;
    let now = a.at.unwrap_or_else(now_unix);
    let verified = suit::accept(&bytes, &trust, &rules, now)?;
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
    match verified.author() {
        suit::AuthorStatus::Verified { .. } => passed.push("T3 author signature".into()),
        suit::AuthorStatus::Missing => {
            passed.push("T3 author signature MISSING (not required)".into())
        }
        suit::AuthorStatus::UnknownKey { kid } => passed.push(format!(
            "T3 author signature by unknown key {kid} (not checked)"
        )),
        _ => {}
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

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
