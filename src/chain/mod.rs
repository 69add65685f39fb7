//! The whole chain on loopback, as real processes of the multi-call `ics-suit` executable: a
//! key repository, one update server (and optionally a mirror), a dispatcher and a fleet of
//! simulated devices. Used by the demo (`cargo run --release`) and the end-to-end tests.
//! The publishers' side (signing, storing the release key, uploading) runs in the calling
//! process through the same library calls the `publisher` CLI makes.

mod fleet;
mod proc;
mod publish;
mod setup;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dispatcher::client::DispatcherClient;
use serde_json::Value;
use suit::SigningKey;
use uuid::Uuid;

pub use proc::{Proc, start, start_within, tool};
pub use publish::{image, params};
use setup::{KeyRepo, Keys};

/// Vendor-id of the demo manufacturer (the UUID5 of the spec examples).
pub const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
/// Class-id of the PLCs (manufacturer firmware, T2).
pub const CLASS_PLC: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
/// Class-id of the HMI panels (third-party application, T1).
pub const CLASS_HMI: &str = "5f2e3c1a-8d4b-5e6f-9a0b-1c2d3e4f5a6b";

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
        let kr = KeyRepo::start(&exe, &root, &logs)?;
        let keys = Keys::generate(&root, &kr)?;
        let names = setup::update_server_names(&opts);
        let (us, us_urls) = setup::start_update_servers(&exe, &root, &logs, names, &kr, &keys)?;
        setup::configure_dispatcher(&root.join("dispatcher"), &opts, &kr, &keys, names, &us_urls)?;
        let mut chain = Chain {
            opts,
            logs,
            kr_url: kr.url,
            us_urls,
            api_url: String::new(),
            coap_uri: String::new(),
            op: DispatcherClient::new("https://127.0.0.1:1", None, "x")?,
            manufacturer: keys.manufacturer,
            third_party: keys.third_party,
            untrusted: keys.untrusted,
            internal: keys.internal,
            devices: Vec::new(),
            kr_clients: std::sync::Mutex::default(),
            kr: kr.proc,
            us,
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

    /// Polls until the dispatcher lists `n` releases.
    pub async fn wait_releases(&self, n: usize, limit: Duration) -> anyhow::Result<Value> {
        poll_until(limit, async || {
            let v: Value = self.op.get("/v1/releases").await?;
            Ok(if v["releases"].as_array().map_or(0, Vec::len) >= n {
                ControlFlow::Break(v)
            } else {
                ControlFlow::Continue(format!(
                    "the dispatcher lists fewer than {n} releases after {limit:?}"
                ))
            })
        })
        .await
    }

    /// Polls until every rollout has settled (completed, halted or aborted).
    pub async fn wait_rollouts_settled(&self, limit: Duration) -> anyhow::Result<Value> {
        poll_until(limit, async || {
            let v: Value = self.op.get("/v1/rollouts").await?;
            let list = v["rollouts"].as_array().cloned().unwrap_or_default();
            Ok(
                if !list.is_empty()
                    && list.iter().all(|r| {
                        !matches!(
                            r["status"]["status"].as_str(),
                            Some("running" | "scheduled" | "paused")
                        )
                    })
                {
                    ControlFlow::Break(v)
                } else {
                    ControlFlow::Continue(format!("rollouts not settled after {limit:?}: {v}"))
                },
            )
        })
        .await
    }
}

/// Calls `check` every 250 ms until it breaks with a value; fails with the message of its
/// last `Continue` once `limit` has passed.
async fn poll_until<T>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<ControlFlow<T, String>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match check().await? {
            ControlFlow::Break(v) => return Ok(v),
            ControlFlow::Continue(why) => {
                if Instant::now() > deadline {
                    bail!("{why}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}
