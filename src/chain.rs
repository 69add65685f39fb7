//! The whole chain on loopback, as real processes of the multi-call `ics-suit` executable: a
//! key repository, one update server (and optionally a mirror), a dispatcher and a fleet of
//! simulated devices. Used by the demo (`cargo run --release`) and the end-to-end tests.
//! The publishers' side (signing, storing the release key, uploading) runs in the calling
//! process through the same library calls the `publisher` CLI makes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use dispatcher::client::DispatcherClient;
use serde_json::{Value, json};
use suit::{IcsMetadata, ReleaseParams, SigningKey, UpdateType};
use uuid::Uuid;

/// Vendor-id of the demo manufacturer (the UUID5 of the spec examples).
pub const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
/// Class-id of the PLCs (manufacturer firmware, T2).
pub const CLASS_PLC: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
/// Class-id of the HMI panels (third-party application, T1).
pub const CLASS_HMI: &str = "5f2e3c1a-8d4b-5e6f-9a0b-1c2d3e4f5a6b";

/// A service process; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("    {} did not stop on SIGTERM; killed", self.name);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A publisher: its signing key and its key-repository client credentials.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// Signing key (with kid).
    pub key: SigningKey,
    /// Key repository client id.
    pub client_id: String,
    /// Key repository client secret.
    pub client_secret: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `ics-suit` executable.
    pub exe: PathBuf,
    /// Fresh directory for everything.
    pub root: PathBuf,
    /// Start the dispatcher with `--injectable-clock`.
    pub injectable_clock: bool,
    /// Also run a mirror update server, listed second in the dispatcher's configuration.
    pub mirror: bool,
    /// Seconds between the dispatcher's polls.
    pub poll_interval_secs: u64,
    /// Policy text (default: the shipped plant policy).
    pub policy: Option<String>,
    /// Extra arguments for `device-sim fleet` (e.g. `--loss-percent 10`).
    pub fleet_args: Vec<String>,
    /// Further update servers for the dispatcher to poll, each its own group after the
    /// chain's own (tests: a hostile source beside the genuine one).
    pub extra_update_servers: Vec<dispatcher::config::UpdateServerConfig>,
    /// Applied to the dispatcher's configuration before its first start (tests: tighter
    /// limits).
    pub dispatcher_config: Option<fn(&mut dispatcher::config::Config)>,
}

impl Options {
    /// Defaults for `exe` in `root`.
    pub fn new(exe: PathBuf, root: PathBuf) -> Options {
        Options {
            exe,
            root,
            injectable_clock: false,
            mirror: false,
            poll_interval_secs: 2,
            policy: None,
            fleet_args: Vec::new(),
            extra_update_servers: Vec::new(),
            dispatcher_config: None,
        }
    }
}

/// A running chain.
#[derive(Debug)]
pub struct Chain {
    /// Options.
    pub opts: Options,
    /// `root/logs`.
    pub logs: PathBuf,
    /// Key repository URL.
    pub kr_url: String,
    /// Update server URLs (primary, then mirror).
    pub us_urls: Vec<String>,
    /// Dispatcher API URL.
    pub api_url: String,
    /// Dispatcher CoAP URI.
    pub coap_uri: String,
    /// Admin operator client.
    pub op: DispatcherClient,
    /// The manufacturer (signs T2 for the vendor).
    pub manufacturer: Publisher,
    /// The third-party application publisher (T1).
    pub third_party: Publisher,
    /// A publisher the dispatcher does not trust (the update server does).
    pub untrusted: Publisher,
    /// The plant's own engineering (internal role: T1, uploaded straight to the dispatcher).
    pub internal: SigningKey,
    /// Devices enrolled: (name, class-id).
    pub devices: Vec<(String, Uuid)>,
    /// Key repository clients by publisher client id, kept so that their tokens are reused
    /// (the token endpoint rate-limits each client).
    kr_clients: std::sync::Mutex<Vec<(String, std::sync::Arc<key_repo::client::KeyRepoClient>)>>,
    /// Held so the process lives as long as the chain.
    kr: Proc,
    us: Vec<Option<Proc>>,
    dispatcher: Option<Proc>,
    fleet: Option<Proc>,
}

impl Chain {
    /// Process id of the dispatcher, if running.
    pub fn dispatcher_pid(&self) -> Option<u32> {
        self.dispatcher.as_ref().map(Proc::pid)
    }

    /// Process id of the device fleet, if running.
    pub fn fleet_pid(&self) -> Option<u32> {
        self.fleet.as_ref().map(Proc::pid)
    }

    /// Process ids of every process of the chain that runs (key repository, update servers,
    /// dispatcher, fleet): for a test harness that must stop them even if it never drops
    /// the chain.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.kr.pid()];
        v.extend(self.us.iter().flatten().map(Proc::pid));
        v.extend(self.dispatcher_pid());
        v.extend(self.fleet_pid());
        v
    }
}

impl Chain {
    /// Runs a tool of the executable to completion; its stdout.
    pub fn tool(&self, args: &[&str]) -> anyhow::Result<String> {
        tool(&self.opts.exe, args)
    }

    /// Starts a service and waits for the stdout line starting with `ready`.
    fn start(&self, name: &str, args: &[&str], ready: &str) -> anyhow::Result<(Proc, String)> {
        start(&self.opts.exe, name, args, ready, &self.logs)
    }

    /// Time allowed for `n` devices to provision, start or check in (2 cores, loopback).
    fn fleet_allowance(n: usize) -> Duration {
        Duration::from_secs(120)
            + Duration::from_millis(30).saturating_mul(n.try_into().unwrap_or(u32::MAX))
    }

    /// The dispatcher's directory.
    pub fn dispatcher_dir(&self) -> PathBuf {
        self.opts.root.join("dispatcher")
    }

    /// The devices' parent directory.
    pub fn devices_dir(&self) -> PathBuf {
        self.opts.root.join("devices")
    }

    /// Starts key repository, update server(s) and dispatcher.
    pub async fn start_services(opts: Options) -> anyhow::Result<Chain> {
        let root = opts.root.clone();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
        let exe = opts.exe.clone();
        let products = [
            format!("{VENDOR}/{CLASS_PLC}"),
            format!("{VENDOR}/{CLASS_HMI}"),
        ];

        // Key repository with clients for the publishers and the dispatcher.
        let kr = root.join("key-repo");
        tool(&exe, &["key-repo", "init", "--dir", s(&kr), "--json"])?;
        let kr_cfg = kr.join("key-repo.toml");
        let client = |name: &str, role: &str, prods: &[&str]| -> anyhow::Result<(String, String)> {
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
            let v: Value = serde_json::from_str(&tool(&exe, &args)?)?;
            Ok((
                v["client_id"].as_str().unwrap_or_default().to_owned(),
                v["client_secret"].as_str().unwrap_or_default().to_owned(),
            ))
        };
        let all = [products[0].as_str(), products[1].as_str()];
        let acme = client("acme-publisher", "publisher", &all[..1])?;
        // Both products, so a test can try third-party firmware (refused by the dispatcher).
        let tp = client("hmi-apps-publisher", "publisher", &all)?;
        let rogue = client("unknown-publisher", "publisher", &all)?;
        let disp = client("plant-dispatcher", "dispatcher", &all)?;
        let (kr_proc, kr_url) = start(
            &exe,
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
            &logs,
        )?;
        let kr_toml: toml::Table = toml::from_str(&std::fs::read_to_string(&kr_cfg)?)?;

        let mut rng = rng();
        let manufacturer = Publisher {
            key: SigningKey::generate(&mut rng).with_kid(b"acme-fw-2026".to_vec()),
            client_id: acme.0,
            client_secret: acme.1,
        };
        let third_party = Publisher {
            key: SigningKey::generate(&mut rng).with_kid(b"hmi-apps-2026".to_vec()),
            client_id: tp.0,
            client_secret: tp.1,
        };
        let untrusted = Publisher {
            key: SigningKey::generate(&mut rng).with_kid(b"unknown-2026".to_vec()),
            client_id: rogue.0,
            client_secret: rogue.1,
        };
        let internal = SigningKey::generate(&mut rng).with_kid(b"plant-eng-2026".to_vec());
        let keys = root.join("publisher-keys");
        std::fs::create_dir_all(&keys)?;
        for p in [&manufacturer, &third_party, &untrusted] {
            let kid = String::from_utf8_lossy(p.key.kid()).into_owned();
            std::fs::write(
                keys.join(format!("{kid}.pub.pem")),
                p.key.public_key().to_pem(),
            )?;
        }

        // Update server(s): every publisher registered for the vendor (the update server
        // checks publishers; the dispatcher decides whom its plant trusts).
        let mut us_procs = Vec::new();
        let mut us_urls = Vec::new();
        let names: &[&str] = if opts.mirror {
            &["update-server", "update-mirror"]
        } else {
            &["update-server"]
        };
        for name in names {
            let us = root.join(name);
            tool(&exe, &["update-server", "init", "--dir", s(&us)])?;
            let us_cfg = us.join("update-server.toml");
            for kid in ["acme-fw-2026", "hmi-apps-2026", "unknown-2026"] {
                tool(
                    &exe,
                    &[
                        "update-server",
                        "publishers",
                        "add",
                        "--config",
                        s(&us_cfg),
                        "--kid",
                        kid,
                        "--public-key",
                        s(&keys.join(format!("{kid}.pub.pem"))),
                        "--vendor-id",
                        VENDOR,
                    ],
                )?;
            }
            let mut text = std::fs::read_to_string(&us_cfg)?;
            text.push_str(&format!(
                "\n[[auth.issuers]]\nissuer = \"{}\"\naudience = \"{}\"\njwks_url = \"{kr_url}/.well-known/jwks.json\"\nca_file = \"{}\"\n",
                kr_toml["issuer"].as_str().unwrap_or_default(),
                kr_toml["audience"].as_str().unwrap_or_default(),
                s(&kr.join("tls/ca.pem")),
            ));
            std::fs::write(&us_cfg, text)?;
            let (p, url) = start(
                &exe,
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
                &logs,
            )?;
            us_procs.push(Some(p));
            us_urls.push(url);
        }

        // Dispatcher.
        let dd = root.join("dispatcher");
        tool(
            &exe,
            &[
                "dispatcher",
                "init",
                "--dir",
                s(&dd),
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
                entry(&manufacturer.key, suit::Role::Manufacturer),
                entry(&third_party.key, suit::Role::ThirdParty),
                entry(&internal, suit::Role::Internal),
            ],
        };
        std::fs::write(dd.join("trust.toml"), trust.to_toml())?;
        if let Some(p) = &opts.policy {
            std::fs::write(dd.join("policy.toml"), p)?;
        }
        let secret_file = dd.join("key-repo-client.secret");
        foundations::fs::write_secret_file(&secret_file, disp.1.as_bytes())?;
        let cfg_path = dd.join("dispatcher.toml");
        let mut cfg = dispatcher::config::Config::load(&cfg_path)?;
        cfg.update_servers
            .push(dispatcher::config::UpdateServerConfig {
                urls: us_urls.clone(),
                ca_file: None,
                token_file: None,
            });
        // Each update server has its own CA; concatenate them for the group.
        let mut cas = Vec::new();
        for name in names {
            cas.extend(std::fs::read(root.join(name).join("tls/ca.pem"))?);
        }
        std::fs::write(dd.join("update-servers-ca.pem"), cas)?;
        cfg.update_servers[0].ca_file = Some(dd.join("update-servers-ca.pem"));
        cfg.key_repos.push(dispatcher::config::KeyRepoConfig {
            url: kr_url.clone(),
            ca_file: Some(kr.join("tls/ca.pem")),
            client_id: disp.0,
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
        let mut chain = Chain {
            opts,
            logs,
            kr_url,
            us_urls,
            api_url: String::new(),
            coap_uri: String::new(),
            op: DispatcherClient::new("https://127.0.0.1:1", None, "x")?,
            manufacturer,
            third_party,
            untrusted,
            internal,
            devices: Vec::new(),
            kr_clients: std::sync::Mutex::default(),
            kr: kr_proc,
            us: us_procs,
            dispatcher: None,
            fleet: None,
        };
        chain.start_dispatcher()?;
        Ok(chain)
    }

    /// (Re)starts the dispatcher process. After a restart its ports differ from before
    /// unless the configuration fixes them; the first start writes the bound ports into
    /// the configuration so restarts keep them (devices know the CoAP address).
    pub fn start_dispatcher(&mut self) -> anyhow::Result<()> {
        let dd = self.dispatcher_dir();
        let cfg_path = dd.join("dispatcher.toml");
        let mut args = vec!["dispatcher", "serve", "--config", s(&cfg_path)];
        if self.opts.injectable_clock {
            args.push("--injectable-clock");
        }
        let (p, line) = self.start("dispatcher", &args, "dispatcher listening")?;
        let mut it = line.split_whitespace();
        let api = it.next().unwrap_or_default().to_owned();
        let coap = it.next().unwrap_or_default().to_owned();
        if self.api_url.is_empty() {
            // Pin the ports for restarts.
            let mut cfg = dispatcher::config::Config::load(&cfg_path)?;
            cfg.listen = api.trim_start_matches("https://").parse()?;
            cfg.coap_listen = coap.trim_start_matches("coap://").parse()?;
            cfg.coap_uri = coap.clone();
            cfg.save(&cfg_path)?;
        }
        self.api_url = api;
        self.coap_uri = coap;
        let ca = std::fs::read(dd.join("tls/ca.pem"))?;
        let token = std::fs::read_to_string(dd.join("admin.token"))?;
        self.op = DispatcherClient::new(&self.api_url, Some(&ca), token.trim())?;
        self.dispatcher = Some(p);
        Ok(())
    }

    /// Stops the dispatcher gracefully (SIGTERM) and waits for it.
    pub fn stop_dispatcher(&mut self) {
        self.dispatcher = None;
    }

    /// Environment for the operator CLI (`ics-suit dispatcher ...`) with `token_file`.
    pub fn cli_env(&self, token_file: &Path) -> Vec<(String, String)> {
        vec![
            ("DISPATCHER_URL".into(), self.api_url.clone()),
            (
                "DISPATCHER_CA".into(),
                s(&self.dispatcher_dir().join("tls/ca.pem")).to_owned(),
            ),
            ("DISPATCHER_TOKEN_FILE".into(), s(token_file).to_owned()),
        ]
    }

    /// Kills the dispatcher with SIGKILL.
    pub fn kill_dispatcher(&mut self) {
        if let Some(mut p) = self.dispatcher.take() {
            p.kill9();
        }
    }

    /// Stops update server `i` (0: primary).
    pub fn stop_update_server(&mut self, i: usize) {
        if let Some(p) = self.us.get_mut(i) {
            *p = None;
        }
    }

    /// Enrols `n` devices (even: PLCs in group `line-1`, odd: HMIs in group `hmi`), starts
    /// them as one fleet process and waits until each has checked in. `prepare` runs on
    /// each provisioned device directory before the fleet starts (e.g. to write faults).
    pub async fn start_fleet(
        &mut self,
        n: usize,
        prepare: impl Fn(usize, &Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.start_fleet_of(n, None, prepare).await
    }

    /// As [`Chain::start_fleet`]; with `only_hmi` every device is an HMI panel.
    pub async fn start_fleet_of(
        &mut self,
        n: usize,
        only_hmi: Option<bool>,
        prepare: impl Fn(usize, &Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let vendor = Uuid::parse_str(VENDOR)?;
        let (plc, hmi) = (Uuid::parse_str(CLASS_PLC)?, Uuid::parse_str(CLASS_HMI)?);
        let mut bundles = Vec::new();
        for i in 0..n {
            let (name, class, group) = if only_hmi == Some(true) {
                (format!("hmi-{i:05}"), hmi, "hmi")
            } else if i % 2 == 0 {
                (format!("plc-{:04}", i / 2), plc, "line-1")
            } else {
                (format!("hmi-{:04}", i / 2), hmi, "hmi")
            };
            let b: Value = self
                .op
                .post("/v1/devices", &json!({"name": name, "vendor_id": vendor, "class_id": class, "group": group, "factory_version": "1.0.0"}))
                .await
                .with_context(|| format!("enrol {name}"))?;
            bundles.push(b);
            self.devices.push((name, class));
        }
        let devs = self.devices_dir();
        std::fs::create_dir_all(&devs)?;
        let bundle_file = self.opts.root.join("bundles.json");
        foundations::fs::write_secret_file(&bundle_file, &serde_json::to_vec(&bundles)?)?;
        drop(bundles);
        let count = n.to_string();
        // The fleet provisions DIR/dev-NNNN from bundle NNNN and starts at once; the hook runs
        // before any release exists (faults.json is read at each install attempt).
        let mut args = vec![
            "device-sim",
            "fleet",
            "--count",
            &count,
            "--dir",
            s(&devs),
            "--provision",
            s(&bundle_file),
            "--max-blob",
            "4194304",
        ];
        let extra = self.opts.fleet_args.clone();
        args.extend(extra.iter().map(String::as_str));
        let (p, _) = start_within(
            &self.opts.exe,
            "device-sim",
            &args,
            &format!("{count} devices listening"),
            &self.logs,
            Self::fleet_allowance(n),
        )?;
        let _ = std::fs::remove_file(&bundle_file);
        for i in 0..n {
            prepare(i, &devs.join(format!("dev-{i:04}")))?;
        }
        self.fleet = Some(p);
        self.wait_for_checkins(n).await
    }

    /// Waits until `n` devices have an address (checked in).
    pub async fn wait_for_checkins(&self, n: usize) -> anyhow::Result<()> {
        let limit = Self::fleet_allowance(n);
        let deadline = Instant::now() + limit;
        loop {
            let v: Value = self.op.get("/v1/devices").await?;
            let seen = v["devices"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|d| !d["address"].is_null()).count());
            if seen >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {seen} of {n} devices checked in within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Publishes a release: builds it (encrypt-then-sign), stores its key at the key
    /// repository, uploads it to update server `server`. Returns the release id.
    pub async fn publish(
        &self,
        p: &Publisher,
        params: &ReleaseParams,
        image: &[u8],
        release_kid: &str,
        server: usize,
    ) -> anyhow::Result<String> {
        self.publish_to(p, params, image, release_kid, &[server])
            .await
    }

    /// As [`Chain::publish`], uploading the same release to each of `servers` (a mirror).
    pub async fn publish_to(
        &self,
        p: &Publisher,
        params: &ReleaseParams,
        image: &[u8],
        release_kid: &str,
        servers: &[usize],
    ) -> anyhow::Result<String> {
        self.publish_altered(p, params, image, release_kid, servers, |e| e)
            .await
    }

    /// As [`Chain::publish_to`], with the signed envelope passed through `alter` before it
    /// is uploaded (tests of what an attacker between publisher and update server can do).
    pub async fn publish_altered(
        &self,
        p: &Publisher,
        params: &ReleaseParams,
        image: &[u8],
        release_kid: &str,
        servers: &[usize],
        alter: impl Fn(Vec<u8>) -> Vec<u8>,
    ) -> anyhow::Result<String> {
        let mut rng = rng();
        let mut built =
            suit::release::build_release(params, image, release_kid.as_bytes(), &p.key, &mut rng)?;
        built.envelope = alter(built.envelope);
        let krc = self.key_repo_client(p)?;
        krc.put_key(
            release_kid,
            &format!("{}/{}", params.vendor_id, params.class_id),
            &built.release_key.to_cose_key(),
        )
        .await?;
        let token = krc.access_token().await?;
        let blob_path = self.opts.root.join(format!("{release_kid}.enc"));
        std::fs::write(&blob_path, &built.blob)?;
        let mut id = String::new();
        for &server in servers {
            let name = if server == 0 {
                "update-server"
            } else {
                "update-mirror"
            };
            let ca = std::fs::read(self.opts.root.join(name).join("tls/ca.pem"))?;
            let usc = update_server::client::UpdateServerClient::new(
                &self.us_urls[server],
                Some(&ca),
                Some(token.clone()),
            )?;
            let up = usc
                .upload(
                    built.envelope.clone(),
                    &blob_path,
                    std::sync::Arc::new(|_| {}),
                )
                .await?;
            id = up.release.release_id;
        }
        let _ = std::fs::remove_file(&blob_path);
        Ok(id)
    }

    /// A key repository client with `p`'s credentials, one per publisher and chain (its
    /// access token is reused until it is due for renewal).
    pub fn key_repo_client(
        &self,
        p: &Publisher,
    ) -> anyhow::Result<std::sync::Arc<key_repo::client::KeyRepoClient>> {
        let mut cache = self
            .kr_clients
            .lock()
            .map_err(|_| anyhow!("key repository clients: lock poisoned"))?;
        if let Some((_, c)) = cache.iter().find(|(id, _)| *id == p.client_id) {
            return Ok(c.clone());
        }
        let kr_ca = std::fs::read(self.opts.root.join("key-repo/tls/ca.pem"))?;
        let c = std::sync::Arc::new(key_repo::client::KeyRepoClient::new(
            key_repo::client::ClientConfig {
                base_url: self.kr_url.clone(),
                client_id: p.client_id.clone(),
                client_secret: p.client_secret.clone(),
                ca_pem: Some(kr_ca),
                scopes: vec![],
            },
        )?);
        cache.push((p.client_id.clone(), c.clone()));
        Ok(c)
    }

    /// Revokes a release key at the key repository (as its publisher).
    pub async fn revoke_key(&self, p: &Publisher, release_kid: &str) -> anyhow::Result<()> {
        let krc = self.key_repo_client(p)?;
        krc.revoke(release_kid).await?;
        Ok(())
    }

    /// Polls until the dispatcher lists `n` releases.
    pub async fn wait_releases(&self, n: usize, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let v: Value = self.op.get("/v1/releases").await?;
            if v["releases"].as_array().map_or(0, Vec::len) >= n {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("the dispatcher lists fewer than {n} releases after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls until every rollout has settled (completed, halted or aborted).
    pub async fn wait_rollouts_settled(&self, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let v: Value = self.op.get("/v1/rollouts").await?;
            let list = v["rollouts"].as_array().cloned().unwrap_or_default();
            if !list.is_empty()
                && list.iter().all(|r| {
                    !matches!(
                        r["status"]["status"].as_str(),
                        Some("running" | "scheduled" | "paused")
                    )
                })
            {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("rollouts not settled after {limit:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Release parameters for the demo products.
pub fn params(
    class: &str,
    t: UpdateType,
    sequence: u64,
    version: Vec<i64>,
) -> anyhow::Result<ReleaseParams> {
    let mut ics = IcsMetadata::new(t);
    if t == UpdateType::T1 {
        ics.categories = vec![suit::Category::Enhancement];
        ics.notes = Some("New alarm overview screen.".into());
    } else {
        ics.categories = vec![suit::Category::Security, suit::Category::Bugfix];
        ics.cves = vec!["CVE-2026-31337".into()];
        ics.severity = Some(suit::Severity::High);
        ics.reboot = true;
        ics.notes = Some("Fixes an authentication bypass in the Modbus gateway.".into());
    }
    Ok(ReleaseParams {
        vendor_id: Uuid::parse_str(VENDOR)?,
        class_id: Uuid::parse_str(class)?,
        device_id: None,
        sequence,
        version,
        requires: None,
        uri: None,
        ics,
    })
}

/// A deterministic test image.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Runs a tool to completion; its stdout on success.
pub fn tool(exe: &Path, args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !o.status.success() {
        bail!(
            "{} failed: {}",
            args.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Starts a service and waits (up to 120 s) for the stdout line starting with `ready`;
/// returns the rest of that line.
pub fn start(
    exe: &Path,
    name: &str,
    args: &[&str],
    ready: &str,
    logs: &Path,
) -> anyhow::Result<(Proc, String)> {
    start_within(exe, name, args, ready, logs, Duration::from_secs(120))
}

/// As [`start`], waiting up to `limit`.
pub fn start_within(
    exe: &Path,
    name: &str,
    args: &[&str],
    ready: &str,
    logs: &Path,
    limit: Duration,
) -> anyhow::Result<(Proc, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let mut sent = false;
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if !sent && let Some(rest) = line.trim().strip_prefix(&ready) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
            line.clear();
        }
    });
    let p = Proc {
        name: name.to_owned(),
        child,
    };
    match rx.recv_timeout(limit) {
        Ok(rest) => Ok((p, rest)),
        Err(_) => bail!(
            "{name} did not start; see {}",
            logs.join(format!("{name}.log")).display()
        ),
    }
}
