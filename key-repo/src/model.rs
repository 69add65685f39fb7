//! Wire types shared by the server and the typed client, and the role/scope model.

use serde::{Deserialize, Serialize};

/// Scope to store keys for the client's products.
pub const SCOPE_WRITE: &str = "keys:write";
/// Scope to read keys of the client's products.
pub const SCOPE_READ: &str = "keys:read";
/// Scope to revoke keys of the client's products.
pub const SCOPE_REVOKE: &str = "keys:revoke";
/// Scope to revoke any key (admin).
pub const SCOPE_ADMIN: &str = "keys:admin";
/// Scope to read the audit trail.
pub const SCOPE_AUDIT: &str = "audit:read";
/// Scope to upload releases to an update server (issued here for the update servers that
/// trust this authorization server).
pub const SCOPE_RELEASES_WRITE: &str = "releases:write";
/// Scope to download releases from an update server that requires authentication.
pub const SCOPE_RELEASES_READ: &str = "releases:read";

/// `PUT /v1/keys/{kid}` body and `GET /v1/keys/{kid}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// `VENDOR_UUID/CLASS_UUID`.
    pub product: String,
    /// Standard base64 of the COSE_Key bytes.
    pub cose_key: String,
}

/// `GET /v1/keys/{kid}/meta`: everything except the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    pub kid: String,
    pub product: String,
    /// `active` or `revoked`.
    pub state: String,
    pub created_at: u64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// OAuth client roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Stores and revokes keys for its products.
    Publisher,
    /// Reads keys for its products.
    Dispatcher,
    /// Reads the audit trail.
    Auditor,
    /// Revokes any key, reads the audit trail. Created by `init`.
    Admin,
}

impl Role {
    /// Scopes a client of this role may be granted.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Role::Publisher => &[SCOPE_WRITE, SCOPE_REVOKE, SCOPE_RELEASES_WRITE],
            Role::Dispatcher => &[SCOPE_READ, SCOPE_RELEASES_READ],
            Role::Auditor => &[SCOPE_AUDIT],
            Role::Admin => &[SCOPE_REVOKE, SCOPE_ADMIN, SCOPE_AUDIT],
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Publisher => "publisher",
            Role::Dispatcher => "dispatcher",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        })
    }
}

/// Token endpoint success response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

/// Checks that `cose_key` is a single CBOR map describing a symmetric COSE_Key
/// (RFC 9052 §7: kty (1) = Symmetric (4), k (-1) a bstr of 16, 24 or 32 bytes; kid (2), if
/// present, a bstr). Nothing else about the key is interpreted.
pub fn validate_cose_key(bytes: &[u8]) -> Result<(), &'static str> {
    use ciborium::value::{Integer, Value};
    if bytes.is_empty() || bytes.len() > 1024 {
        return Err("COSE_Key size");
    }
    let mut rd = bytes;
    let v: Value = ciborium::de::from_reader(&mut rd).map_err(|_| "COSE_Key is not CBOR")?;
    if !rd.is_empty() {
        return Err("trailing bytes after COSE_Key");
    }
    let Value::Map(entries) = v else {
        return Err("COSE_Key is not a map");
    };
    if entries.len() > 16 {
        return Err("COSE_Key has too many entries");
    }
    let label = |e: &Value| -> Option<i128> {
        match e {
            Value::Integer(i) => Some(i128::from(*i)),
            _ => None,
        }
    };
    let mut seen: Vec<Value> = Vec::new();
    let (mut kty, mut k) = (false, false);
    for (key, val) in &entries {
        if seen.contains(key) {
            return Err("duplicate label in COSE_Key");
        }
        seen.push(key.clone());
        match label(key) {
            Some(1) => {
                kty = *val == Value::Integer(Integer::from(4));
                if !kty {
                    return Err("COSE_Key kty is not Symmetric (4)");
                }
            }
            Some(2) if !matches!(val, Value::Bytes(_)) => return Err("COSE_Key kid is not a bstr"),
            Some(-1) => match val {
                Value::Bytes(b) if matches!(b.len(), 16 | 24 | 32) => k = true,
                _ => return Err("COSE_Key k must be a bstr of 16, 24 or 32 bytes"),
            },
            _ => {}
        }
    }
    if kty && k {
        Ok(())
    } else {
        Err("COSE_Key lacks kty or k")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    pub(crate) fn sym_key(k: &[u8]) -> Vec<u8> {
        enc(&Value::Map(vec![
            (Value::from(1), Value::from(4)),
            (Value::from(2), Value::Bytes(b"kid-1".to_vec())),
            (Value::from(-1), Value::Bytes(k.to_vec())),
        ]))
    }

    #[test]
    fn cose_key_validation() {
        assert!(validate_cose_key(&sym_key(&[7; 16])).is_ok());
        assert!(validate_cose_key(&sym_key(&[7; 32])).is_ok());
        assert!(validate_cose_key(&sym_key(&[7; 5])).is_err());
        let mut trailing = sym_key(&[7; 16]);
        trailing.push(0);
        assert!(validate_cose_key(&trailing).is_err());
        assert!(validate_cose_key(&enc(&Value::from(4))).is_err());
        let ec2 = enc(&Value::Map(vec![
            (Value::from(1), Value::from(2)),
            (Value::from(-1), Value::Bytes(vec![1; 32])),
        ]));
        assert!(validate_cose_key(&ec2).is_err());
        assert!(validate_cose_key(b"\xff\xff").is_err());
    }
}
