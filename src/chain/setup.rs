//! The stages of [`super::Chain::start_services`], in the order they run: the key
//! repository and its clients, the publishers' keys, the update server(s), the dispatcher's
//! configuration. Each stage runs the tools of the executable as an operator would.

use std::path::{Path, PathBuf};

use serde_json::Value;
use suit::SigningKey;

use super::proc::{Proc, start, tool};
use super::{CLASS_HMI, CLASS_PLC, Options, Publisher, VENDOR, rng, s};

/// Key repository client credentials: (client id, client secret).
type Credentials = (String, String);

/// The key repository, running, with a client for each publisher and for the dispatcher.
pub(super) struct KeyRepo {
    pub(super) proc: Proc,
    pub(super) url: String,
    /// Its data directory.
    dir: PathBuf,
    /// Its configuration (issuer and audience of its tokens).
    config: toml::Table,
    acme: Credentials,
    hmi_apps: Credentials,
    unknown: Credentials,
    dispatcher: Credentials,
}

impl KeyRepo {
    /// Initialises the key repository with its clients, then starts it.
    pub(super) fn start(exe: &Path, root: &Path, logs: &Path) -> anyhow::Result<KeyRepo> {
        let products = [
            format!("{VENDOR}/{CLASS_PLC}"),
            format!("{VENDOR}/{CLASS_HMI}"),
        ];
        let kr = root.join("key-repo");
        tool(exe, &["key-repo", "init", "--dir", s(&kr), "--json"])?;
        let kr_cfg = kr.join("key-repo.toml");
        let client = |name: &str, role: &str, prods: &[&str]| -> anyhow::Result<Credentials> {
            let mut args = vec![
                "key-repo",
                "clients",
                "add",
                "--config",
                s(&kr_cfg),
                "--name",
                name,
                "--role",
                role,
                "--json",
            ];
            for p in prods {
                args.push("--product");
                args.push(p);
            }
            let v: Value = serde_json::from_str(&tool(exe, &args)?)?;
            Ok((
                v["client_id"].as_str().unwrap_or_default().to_owned(),
                v["client_secret"].as_str().unwrap_or_default().to_owned(),
            ))
        };
        let all = [products[0].as_str(), products[1].as_str()];
        let acme = client("acme-publisher", "publisher", &all[..1])?;
        // Both products, so a test can try third-party firmware (refused by the dispatcher).
        let hmi_apps = client("hmi-apps-publisher", "publisher", &all)?;
        let unknown = client("unknown-publisher", "publisher", &all)?;
        let dispatcher = client("plant-dispatcher", "dispatcher", &all)?;
        let (proc, url) = start(
            exe,
            "key-repo",
            &[
                "key-repo",
                "serve",
                "--config",
                s(&kr_cfg),
                "--listen",
                "127.0.0.1:0",
            ],
            "listening on",
            logs,
        )?;
        let config: toml::Table = toml::from_str(&std::fs::read_to_string(&kr_cfg)?)?;
        Ok(KeyRepo {
            proc,
            url,
            dir: kr,
            config,
            acme,
            hmi_apps,
            unknown,
            dispatcher,
        })
    }

    /// The CA certificate of its TLS endpoint.
    fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }
}

/// The publishers' signing keys, with their key repository credentials, and the plant's
/// own engineering key.
pub(super) struct Keys {
    pub(super) manufacturer: Publisher,
    pub(super) third_party: Publisher,
    pub(super) untrusted: Publisher,
    pub(super) internal: SigningKey,
    /// Where the publishers' public keys are written (`KID.pub.pem`).
    dir: PathBuf,
}

impl Keys {
    /// Fresh keys; the publishers' public keys are written under `root/publisher-keys`.
    pub(super) fn generate(root: &Path, kr: &KeyRepo) -> anyhow::Result<Keys> {
        let mut rng = rng();
        let manufacturer = publisher(b"acme-fw-2026", &kr.acme, &mut rng);
        let third_party = publisher(b"hmi-apps-2026", &kr.hmi_apps, &mut rng);
        let untrusted = publisher(b"unknown-2026", &kr.unknown, &mut rng);
        let internal = SigningKey::generate(&mut rng).with_kid(b"plant-eng-2026".to_vec());
        let dir = root.join("publisher-keys");
        std::fs::create_dir_all(&dir)?;
        for p in [&manufacturer, &third_party, &untrusted] {
            let kid = String::from_utf8_lossy(p.key.kid()).into_owned();
            std::fs::write(
                dir.join(format!("{kid}.pub.pem")),
                p.key.public_key().to_pem(),
            )?;
        }
        Ok(Keys {
            manufacturer,
            third_party,
            untrusted,
            internal,
            dir,
        })
    }
}

/// A publisher with a fresh signing key named `kid` and the key repository `credentials`.
fn publisher(
    kid: &[u8],
    (client_id, client_secret): &Credentials,
    rng: &mut impl rand_core::CryptoRng,
) -> Publisher {
    Publisher {
        key: SigningKey::generate(rng).with_kid(kid.to_vec()),
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
    }
}

/// The update servers' names (and data directories): the primary, then the mirror.
pub(super) fn update_server_names(opts: &Options) -> &'static [&'static str] {
    if opts.mirror {
        &["update-server", "update-mirror"]
    } else {
        &["update-server"]
    }
}

/// Initialises and starts each update server: every publisher registered for the vendor
/// (the update server checks publishers; the dispatcher decides whom its plant trusts),
/// tokens of the key repository accepted. Their processes and URLs, in order.
pub(super) fn start_update_servers(
    exe: &Path,
    root: &Path,
    logs: &Path,
    names: &[&str],
    kr: &KeyRepo,
    keys: &Keys,
) -> anyhow::Result<(Vec<Option<Proc>>, Vec<String>)> {
    let mut us_procs = Vec::new();
    let mut us_urls = Vec::new();
    for name in names {
        let us = root.join(name);
        tool(exe, &["update-server", "init", "--dir", s(&us)])?;
        let us_cfg = us.join("update-server.toml");
        for kid in ["acme-fw-2026", "hmi-apps-2026", "unknown-2026"] {
            tool(
                exe,
                &[
                    "update-server",
                    "publishers",
                    "add",
                    "--config",
                    s(&us_cfg),
                    "--kid",
                    kid,
                    "--public-key",
                    s(&keys.dir.join(format!("{kid}.pub.pem"))),
                    "--vendor-id",
                    VENDOR,
                ],
            )?;
        }
        let mut text = std::fs::read_to_string(&us_cfg)?;
        text.push_str(&format!(
            "\n[[auth.issuers]]\nissuer = \"{}\"\naudience = \"{}\"\njwks_url = \"{}/.well-known/jwks.json\"\nca_file = \"{}\"\n",
            kr.config["issuer"].as_str().unwrap_or_default(),
            kr.config["audience"].as_str().unwrap_or_default(),
            kr.url,
            s(&kr.ca_file()),
        ));
        std::fs::write(&us_cfg, text)?;
        let (p, url) = start(
            exe,
            name,
            &[
                "update-server",
                "serve",
                "--config",
                s(&us_cfg),
                "--listen",
                "127.0.0.1:0",
            ],
            "listening on",
            logs,
        )?;
        us_procs.push(Some(p));
        us_urls.push(url);
    }
    Ok((us_procs, us_urls))
}

/// Initialises the dispatcher's directory `dd`: the plant's trust store, the policy when
/// given, its key repository client and the update server group (`names`, at `us_urls`).
pub(super) fn configure_dispatcher(
    dd: &Path,
    opts: &Options,
    kr: &KeyRepo,
    keys: &Keys,
    names: &[&str],
    us_urls: &[String],
) -> anyhow::Result<()> {
    tool(
        &opts.exe,
        &[
            "dispatcher",
            "init",
            "--dir",
            s(dd),
            "--listen",
            "127.0.0.1:0",
            "--coap-listen",
            "127.0.0.1:0",
        ],
    )?;
    // The plant's trust store (docs/trust-store.md): whom this dispatcher trusts.
    let entry = |k: &SigningKey, role: suit::Role| suit::trust::KeyEntry {
        vendors: Some(vec![VENDOR.to_owned()]),
        ..suit::trust::KeyEntry::new(
            &String::from_utf8_lossy(k.kid()),
            role,
            &k.public_key().to_pem(),
        )
    };
    let trust = suit::TrustFile {
        keys: vec![
            entry(&keys.manufacturer.key, suit::Role::Manufacturer),
            entry(&keys.third_party.key, suit::Role::ThirdParty),
            entry(&keys.internal, suit::Role::Internal),
        ],
    };
    std::fs::write(dd.join("trust.toml"), trust.to_toml())?;
    if let Some(p) = &opts.policy {
        std::fs::write(dd.join("policy.toml"), p)?;
    }
    let secret_file = dd.join("key-repo-client.secret");
    foundations::fs::write_secret_file(&secret_file, kr.dispatcher.1.as_bytes())?;
    let cfg_path = dd.join("dispatcher.toml");
    let mut cfg = dispatcher::config::Config::load(&cfg_path)?;
    cfg.update_servers
        .push(dispatcher::config::UpdateServerConfig {
            urls: us_urls.to_vec(),
            ca_file: None,
            token_file: None,
        });
    // Each update server has its own CA; concatenate them for the group.
    let mut cas = Vec::new();
    for name in names {
        cas.extend(std::fs::read(opts.root.join(name).join("tls/ca.pem"))?);
    }
    std::fs::write(dd.join("update-servers-ca.pem"), cas)?;
    cfg.update_servers[0].ca_file = Some(dd.join("update-servers-ca.pem"));
    cfg.key_repos.push(dispatcher::config::KeyRepoConfig {
        url: kr.url.clone(),
        ca_file: Some(kr.ca_file()),
        client_id: kr.dispatcher.0.clone(),
        client_secret_file: secret_file,
        publishers: vec![],
    });
    cfg.limits.poll_interval_secs = opts.poll_interval_secs;
    cfg.limits.checkin_interval_secs = 10;
    cfg.update_servers
        .extend(opts.extra_update_servers.iter().cloned());
    if let Some(f) = opts.dispatcher_config {
        f(&mut cfg);
    }
    cfg.save(&cfg_path)?;
    Ok(())
}
