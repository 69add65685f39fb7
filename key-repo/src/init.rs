//! `key-repo init`: a ready-to-run embedded default in one directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::Serialize;

use crate::Error;
use crate::clients::NewClient;
use crate::config::{Config, Limits, TlsConfig, TokenConfig};
use crate::crypto::{MasterKey, write_file_atomic, write_secret_file};
use crate::jwt::TokenSigner;
use crate::model::Role;

/// What `init` created. Contains the admin secret: print once, never log.
#[derive(Debug, Serialize)]
pub struct InitReport {
    pub config: PathBuf,
    pub ca_file: PathBuf,
    pub created: Vec<PathBuf>,
    pub admin: NewClient,
}

/// Creates a self-signed CA and a server certificate for `hostname` (plus localhost and
/// 127.0.0.1). The CA key is discarded: re-run init (or configure a real certificate) to
/// renew.
pub fn make_tls(hostname: &str) -> Result<(String, String, String), Error> {
    make_tls_named(hostname, "key-repo")
}

/// As [`make_tls`], naming the CA after `service`.
pub fn make_tls_named(hostname: &str, service: &str) -> Result<(String, String, String), Error> {
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
    let config_path = dir.join("key-repo.toml");
    if config_path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; refusing to overwrite keys (use another --dir)",
            config_path.display()
        )));
    }
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("tls"))
            .map_err(|e| Error::io(dir, e))?;
    }
    let mut created = Vec::new();

    let (ca_pem, chain_pem, key_pem) = make_tls(hostname)?;
    let ca_file = dir.join("tls/ca.pem");
    write_file_atomic(&ca_file, ca_pem.as_bytes(), 0o644)?;
    write_file_atomic(&dir.join("tls/cert.pem"), chain_pem.as_bytes(), 0o644)?;
    write_secret_file(&dir.join("tls/key.pem"), key_pem.as_bytes())?;
    created.extend([
        ca_file.clone(),
        dir.join("tls/cert.pem"),
        dir.join("tls/key.pem"),
    ]);

    MasterKey::generate()?.save(&dir.join("master.key"))?;
    created.push(dir.join("master.key"));
    TokenSigner::generate()?.save(&dir.join("token-signing.pem"))?;
    created.push(dir.join("token-signing.pem"));

    let clients = dir.join("clients.json");
    let admin = crate::clients::add(&clients, "admin", Role::Admin, &[])?;
    created.push(clients);

    let issuer = if hostname.contains(':') {
        format!("https://[{hostname}]:8443")
    } else {
        format!("https://{hostname}:8443")
    };
    let cfg = Config {
        listen: "127.0.0.1:8443"
            .parse()
            .map_err(|_| Error::Usage("listen".into()))?,
        audience: format!("{issuer}/v1"),
        issuer,
        data_dir: "data".into(),
        clients_file: "clients.json".into(),
        master_key_file: "master.key".into(),
        token_signing_key_file: "token-signing.pem".into(),
        tls: TlsConfig {
            cert_file: "tls/cert.pem".into(),
            key_file: "tls/key.pem".into(),
            ca_file: Some("tls/ca.pem".into()),
        },
        tokens: TokenConfig::default(),
        limits: Limits::default(),
        external_issuers: Vec::new(),
    };
    let mut text = String::from(
        "# key-repo configuration (written by `key-repo init`). Relative paths are relative\n\
         # to this file. Secrets are in the files named here, mode 0600.\n",
    );
    text.push_str(&toml::to_string_pretty(&cfg).map_err(|e| Error::Corrupt(e.to_string()))?);
    text.push_str(
        "\n# Accept tokens from an external OAuth 2.0 authorization server, e.g.:\n\
         # [[external_issuers]]\n\
         # issuer = \"https://idp.plant.example\"\n\
         # audience = \"https://key-repo.plant.example\"\n\
         # jwks_url = \"https://idp.plant.example/jwks\"\n\
         # products_claim = \"products\"\n",
    );
    write_file_atomic(&config_path, text.as_bytes(), 0o600)?;
    created.push(config_path.clone());
    Ok(InitReport {
        config: config_path,
        ca_file,
        created,
        admin,
    })
}
