//! Operator authentication: bearer tokens with a role (viewer, operator, admin).
//!
//! `operators.json` holds, per operator, a name, a role and the SHA-256 of the token; the
//! token itself (`dop_` + 43 base64url characters, 256 random bits) is shown once when it is
//! created and never stored. Tokens are compared in constant time.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// What an operator may do. Ordered: each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    /// Read everything.
    Viewer,
    /// Also approve, reject, schedule, pause, resume, abort.
    Operator,
    /// Also enrol devices, reload the policy, manage operators.
    Admin,
}

impl OperatorRole {
    /// Parses `viewer`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<OperatorRole> {
        match s {
            "viewer" => Some(OperatorRole::Viewer),
            "operator" => Some(OperatorRole::Operator),
            "admin" => Some(OperatorRole::Admin),
            _ => None,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Viewer => "viewer",
            OperatorRole::Operator => "operator",
            OperatorRole::Admin => "admin",
        }
    }
}

/// One operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Name, as it appears in the audit log.
    pub name: String,
    /// Role.
    pub role: OperatorRole,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
}

/// The operators file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operators {
    /// Operators.
    pub operators: Vec<Operator>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Operators {
    /// Reads the file (bounded to 1 MiB).
    pub fn load(path: &Path) -> Result<Operators, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.len() > 1 << 20 {
            return Err(Error::Config {
                path: path.display().to_string(),
                reason: "larger than 1 MiB".into(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Writes the file atomically (0600).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let data = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        foundations::fs::write_file_atomic(path, &data, 0o600)?;
        Ok(())
    }

    /// Adds an operator with a fresh token, which is returned (shown once).
    pub fn add(&mut self, name: &str, role: OperatorRole) -> Result<String, Error> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(Error::BadRequest(format!(
                "operator name {name:?}: 1-64 characters of A-Z a-z 0-9 - _ . @"
            )));
        }
        if self.operators.iter().any(|o| o.name == name) {
            return Err(Error::Conflict(format!("operator {name} exists")));
        }
        let raw: [u8; 32] = foundations::random_bytes()?;
        let token = format!("dop_{}", foundations::b64url(&raw));
        self.operators.push(Operator {
            name: name.to_owned(),
            role,
            token_sha256: hex::encode(digest(&token)),
        });
        Ok(token)
    }

    /// The operator holding `token`, comparing every entry in constant time.
    pub fn authenticate(&self, token: &str) -> Option<&Operator> {
        let d = digest(token);
        let mut found = None;
        for o in &self.operators {
            let Ok(want) = hex::decode(&o.token_sha256) else {
                continue;
            };
            if foundations::ct_eq(&want, &d) && found.is_none() {
                found = Some(o);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_authenticate_only_their_operator() {
        let mut ops = Operators::default();
        let a = ops.add("alice", OperatorRole::Operator).unwrap();
        let v = ops.add("victor", OperatorRole::Viewer).unwrap();
        assert_eq!(ops.authenticate(&a).unwrap().name, "alice");
        assert_eq!(ops.authenticate(&v).unwrap().role, OperatorRole::Viewer);
        // One character off, a prefix, the stored hash itself: all refused.
        let mut prefix = a.clone();
        let last = prefix.pop().unwrap();
        assert!(ops.authenticate(&prefix).is_none());
        let other = if last == 'A' { 'B' } else { 'A' };
        assert!(ops.authenticate(&format!("{prefix}{other}")).is_none());
        assert!(
            ops.authenticate(&ops.operators[0].token_sha256.clone())
                .is_none()
        );
        assert!(ops.add("alice", OperatorRole::Admin).is_err());
        assert!(ops.add("bad name", OperatorRole::Admin).is_err());
        assert!(OperatorRole::Admin > OperatorRole::Operator);
    }
}
