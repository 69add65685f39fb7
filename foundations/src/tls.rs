//! TLS material: the rustls server configuration (ring provider) and, for the `init` commands,
//! a local CA with a server certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The `[tls]` table of a service configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Private key (PEM, PKCS#8 or SEC1).
    pub key_file: PathBuf,
    /// CA certificate clients should trust (informational; written by `init`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The files [`write_generated`] makes, relative to the configuration's directory.
    pub fn generated() -> TlsConfig {
        TlsConfig {
            cert_file: "tls/cert.pem".into(),
            key_file: "tls/key.pem".into(),
            ca_file: Some("tls/ca.pem".into()),
        }
    }

    /// Makes the paths absolute against `base` (the configuration file's directory).
    pub fn resolve(&mut self, base: &Path) {
        crate::config::resolve(base, &mut self.cert_file);
        crate::config::resolve(base, &mut self.key_file);
        if let Some(p) = self.ca_file.as_mut() {
            crate::config::resolve(base, p);
        }
    }

    /// The rustls server configuration of these files.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        load_server_config(&self.cert_file, &self.key_file)
    }
}

/// The rustls crypto provider (ring; aws-lc-rs is deliberately not built).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a certificate chain (PEM, leaf first) and its key into a rustls server
/// configuration offering HTTP/2 and HTTP/1.1 (ALPN).
pub fn load_server_config(
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert_file.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificates",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| Error::Tls(format!("{}: {e}", key_file.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A local CA and a server certificate signed by it, as PEM. Holds the server's private key:
/// write it with [`crate::fs::write_secret_file`], never log it.
pub struct Generated {
    /// The CA certificate (give it to clients).
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate.
    pub chain_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated").finish_non_exhaustive()
    }
}

/// Makes a self-signed CA named after `service` and a server certificate for `hostname`
/// plus `localhost`, `127.0.0.1` and `::1`. The CA key is discarded: re-run `init` (or
/// configure a real certificate) to renew.
pub fn generate(hostname: &str, service: &str) -> Result<Generated, Error> {
    let e = |e: rcgen::Error| Error::Tls(e.to_string());
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("{service} local CA ({hostname})"),
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut names = vec![hostname.to_string()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let leaf_key = KeyPair::generate().map_err(e)?;
    let mut leaf = CertificateParams::new(names).map_err(e)?;
    leaf.distinguished_name.push(DnType::CommonName, hostname);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(e)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: zeroize::Zeroizing::new(leaf_key.serialize_pem()),
    })
}

/// Where [`write_generated`] put the files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `tls/ca.pem` (0644).
    pub ca_file: PathBuf,
    /// `tls/cert.pem` (0644).
    pub cert_file: PathBuf,
    /// `tls/key.pem` (0600).
    pub key_file: PathBuf,
}

/// `init`: generates the TLS material for `hostname` and writes it to `dir/tls/` (the
/// directory mode 0700, the key 0600).
pub fn write_generated(dir: &Path, hostname: &str, service: &str) -> Result<TlsFiles, Error> {
    crate::fs::create_private_dir(&dir.join("tls"))?;
    let g = generate(hostname, service)?;
    let files = TlsFiles {
        ca_file: dir.join("tls/ca.pem"),
        cert_file: dir.join("tls/cert.pem"),
        key_file: dir.join("tls/key.pem"),
    };
    crate::fs::write_file_atomic(&files.ca_file, g.ca_pem.as_bytes(), 0o644)?;
    crate::fs::write_file_atomic(&files.cert_file, g.chain_pem.as_bytes(), 0o644)?;
    crate::fs::write_secret_file(&files.key_file, g.key_pem.as_bytes())?;
    Ok(files)
}

/// Checks a `--hostname` for a certificate: 1 to 253 characters of letters, digits, `.`,
/// `-` and `:` (IPv6).
pub fn valid_hostname(hostname: &str) -> bool {
    !hostname.is_empty()
        && hostname.len() <= 253
        && hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_material_loads_into_rustls() {
        let dir = tempfile::tempdir().unwrap();
        let f = write_generated(dir.path(), "plant.example", "test").unwrap();
        load_server_config(&f.cert_file, &f.key_file).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&f.key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(valid_hostname("a.example"));
        assert!(!valid_hostname("a b"));
        assert!(load_server_config(&f.ca_file, &f.ca_file).is_err());
    }
}
