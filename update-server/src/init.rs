//! `update-server init`: a ready-to-run default in one directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::Serialize;

use crate::Error;
use crate::config::{AuthConfig, Config, Limits, Policy, StorageConfig, TlsConfig};
use crate::util::write_file_atomic;

/// What `init` created.
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub config: PathBuf,
    pub ca_file: PathBuf,
    pub created: Vec<PathBuf>,
}

/// A self-signed CA (key discarded) and a server certificate for `hostname`, localhost,
/// 127.0.0.1 and ::1. Returns (CA PEM, chain PEM, leaf key PEM).
fn make_tls(hostname: &str) -> Result<(String, String, String), Error> {
    let e = |e: rcgen::Error| Error::Tls(e.to_string());
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("update-server local CA ({hostname})"),
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
    let chain = format!("{}{}", leaf_cert.pem(), ca_cert.pem());
    Ok((ca_cert.pem(), chain, leaf_key.serialize_pem()))
}

pub fn init(dir: &Path, hostname: &str) -> Result<InitReport, Error> {
    if hostname.is_empty()
        || hostname.len() > 253
        || !hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return Err(Error::Usage(format!("invalid --hostname {hostname:?}")));
    }
    let config_path = dir.join("update-server.toml");
    if config_path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; refusing to overwrite (use another --dir)",
            config_path.display()
        )));
    }
    {
        use std::os::unix::fs::DirBuilderExt as _;
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["tls", "objects"] {
            b.create(dir.join(sub)).map_err(|e| Error::io(dir, e))?;
        }
    }
    let (ca_pem, chain_pem, key_pem) = make_tls(hostname)?;
    let ca_file = dir.join("tls/ca.pem");
    write_file_atomic(&ca_file, ca_pem.as_bytes(), 0o644)?;
    write_file_atomic(&dir.join("tls/cert.pem"), chain_pem.as_bytes(), 0o644)?;
    write_file_atomic(&dir.join("tls/key.pem"), key_pem.as_bytes(), 0o600)?;
    let publishers = dir.join("publishers.toml");
    crate::publishers::Registry::create_empty(&publishers)?;
    let cfg = Config {
        listen: "127.0.0.1:8444"
            .parse()
            .map_err(|_| Error::Usage("listen".into()))?,
        data_dir: "data".into(),
        publishers_file: "publishers.toml".into(),
        tls: TlsConfig {
            cert_file: "tls/cert.pem".into(),
            key_file: "tls/key.pem".into(),
            ca_file: Some("tls/ca.pem".into()),
        },
        storage: StorageConfig::Local {
            path: "objects".into(),
        },
        auth: AuthConfig {
            upload_scopes: vec!["releases:write".into()],
            download_scopes: vec!["releases:read".into()],
            ..AuthConfig::default()
        },
        limits: Limits::default(),
        policy: Policy::default(),
        mirrors: Vec::new(),
    };
    let mut text = String::from(
        "# update-server configuration (written by `update-server init`). Relative paths are\n\
         # relative to this file.\n",
    );
    text.push_str(&toml::to_string_pretty(&cfg).map_err(|e| Error::Usage(e.to_string()))?);
    text.push_str(
        "\n# Accept upload tokens from a key repository's built-in authorization server:\n\
         # [[auth.issuers]]\n\
         # issuer = \"https://keys.vendor.example:8443\"\n\
         # audience = \"https://keys.vendor.example:8443/v1\"\n\
         # jwks_url = \"https://keys.vendor.example:8443/.well-known/jwks.json\"\n\
         # ca_file = \"key-repo-ca.pem\"\n\
         #\n\
         # S3-compatible storage instead of the local directory:\n\
         # [storage]\n\
         # kind = \"s3\"\n\
         # bucket = \"releases\"\n\
         # endpoint = \"https://s3.example\"\n",
    );
    write_file_atomic(&config_path, text.as_bytes(), 0o600)?;
    Ok(InitReport {
        created: vec![
            config_path.clone(),
            ca_file.clone(),
            dir.join("tls/cert.pem"),
            dir.join("tls/key.pem"),
            publishers,
        ],
        config: config_path,
        ca_file,
    })
}
