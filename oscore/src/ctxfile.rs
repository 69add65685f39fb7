//! The JSON security context file of the examples and the dispatcher provisioning:
//! `{"master_secret_hex", "master_salt_hex"?, "sender_id_hex", "recipient_id_hex",
//! "id_context_hex"?}`; the sender sequence state lives beside it in `FILE.seq`.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::context::{ContextParams, SecurityContext};
use crate::error::{Error, Result};
use crate::seq::FileSeqStore;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    master_secret_hex: String,
    #[serde(default)]
    master_salt_hex: Option<String>,
    sender_id_hex: String,
    recipient_id_hex: String,
    #[serde(default)]
    id_context_hex: Option<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::ContextFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a context file (does not print or log the secret).
pub fn load_params(path: &Path) -> Result<ContextParams> {
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| bad(path, e.to_string()))?);
    let f: ContextFile = serde_json::from_slice(&text)
        .map_err(|e| bad(path, format!("invalid JSON ({})", e.classify_string())))?;
    let h =
        |name: &str, v: &str| hex::decode(v).map_err(|_| bad(path, format!("{name} is not hex")));
    let secret = Zeroizing::new(h("master_secret_hex", &f.master_secret_hex)?);
    if secret.is_empty() {
        return Err(bad(path, "master_secret_hex is empty"));
    }
    Ok(ContextParams {
        master_secret: secret,
        master_salt: f
            .master_salt_hex
            .as_deref()
            .map(|s| h("master_salt_hex", s))
            .transpose()?
            .unwrap_or_default(),
        id_context: f
            .id_context_hex
            .as_deref()
            .map(|s| h("id_context_hex", s))
            .transpose()?,
        sender_id: h("sender_id_hex", &f.sender_id_hex)?,
        recipient_id: h("recipient_id_hex", &f.recipient_id_hex)?,
    })
}

trait Classify {
    fn classify_string(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    // The serde message may quote input; keep only the category so no secret is echoed.
    fn classify_string(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or unknown field, or wrong type",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// `FILE.seq`.
pub fn seq_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".seq");
    PathBuf::from(s)
}

/// Loads a context file and its sequence state (`FILE.seq`).
pub fn load(path: &Path) -> Result<SecurityContext> {
    let params = load_params(path)?;
    SecurityContext::new(&params, Box::new(FileSeqStore::new(seq_path(path))))
}
