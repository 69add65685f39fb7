//! What every module of the suite shares: one tokio runtime for all tests (a chain started
//! by one test serves the next), chains shared by the attacks of a module and stopped when
//! the test process ends, the attacker's tools (envelope surgery, raw requests, a CoAP
//! socket) and the probes that show nothing was stored, approved, pushed or installed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ics_suit::chain::{Chain, Options, Publisher, params};
use serde_json::{Value, json};
use suit::UpdateType;

/// The multi-call executable every process of the chain runs.
pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_ics-suit");

/// Patience for what must happen (a refusal being audited, a rollout settling); no
/// assertion depends on it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Runs an attack on the suite's runtime. Shared chains (their clients, hostile servers)
/// live on this runtime, so every test that uses one must run here, not on a runtime of its
/// own that would end with the test.
pub(crate) fn run<F: Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}

pub(crate) fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

pub(crate) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

pub(crate) fn opts(dir: &Path) -> Options {
    Options::new(EXE.into(), dir.to_owned())
}

/// A directory that outlives the test that made it: a shared chain runs in it until the
/// test process ends ([`reap_at_exit`] then removes it).
pub(crate) fn kept_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("attacks-{name}-"))
        .tempdir()
        .expect("a temporary directory")
        .keep()
}

/// A shared chain lives in a `static` and is never dropped, so nothing would stop its
/// processes when the test binary exits. This starts a small watcher (`sh`) that waits for
/// this process to end, then stops exactly `pids` (SIGTERM, then SIGKILL) — each only if it
/// is still one of ours (its command line names `ics-suit`) — and removes `dir`.
pub(crate) fn reap_at_exit(dir: &Path, pids: &[u32]) {
    const SCRIPT: &str = r#"p=$1; d=$2; shift 2
while kill -0 "$p" 2>/dev/null; do sleep 1; done
ours() { grep -qa ics-suit "/proc/$1/cmdline" 2>/dev/null; }
for q in "$@"; do ours "$q" && kill -TERM "$q"; done
sleep 3
for q in "$@"; do ours "$q" && kill -KILL "$q"; done
rm -rf "$d""#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("attack-suite-reaper")
        .arg(std::process::id().to_string())
        .arg(dir)
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("cannot start the reaper of {}: {e}", dir.display());
    }
}

/// A chain shared by the attacks of one module. Attacks that store something at the update
/// server take their sequence number from [`Shared::stored`] (one sequence space per
/// product there: stores must happen in increasing order); edits of trust files are
/// serialised by `edits`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) c: Chain,
    seq: tokio::sync::Mutex<u64>,
    pub(crate) edits: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Starts key repository, update server(s) and dispatcher in a kept directory.
    pub(crate) async fn start(name: &str, tweak: impl FnOnce(&mut Options)) -> Shared {
        let dir = kept_dir(name);
        let mut o = opts(&dir);
        o.poll_interval_secs = 3600;
        tweak(&mut o);
        let c = Chain::start_services(o)
            .await
            .unwrap_or_else(|e| panic!("{name}: chain did not start: {e:#}"));
        reap_at_exit(&dir, &c.pids());
        Shared::from_chain(c)
    }

    pub(crate) fn from_chain(c: Chain) -> Shared {
        Shared {
            c,
            seq: tokio::sync::Mutex::new(100),
            edits: tokio::sync::Mutex::new(()),
        }
    }

    /// Publishes a release the update server stores, with the next sequence number of the
    /// chain (stores serialised). Returns (release id, sequence).
    pub(crate) async fn stored(
        &self,
        p: &Publisher,
        class: &str,
        t: UpdateType,
        image: &[u8],
        release_kid: &str,
    ) -> (String, u64) {
        let mut next = self.seq.lock().await;
        let s = *next;
        *next += 1;
        let prm = params(class, t, s, vec![1, i64::try_from(s).unwrap_or(1), 0]).unwrap();
        let id = self
            .c
            .publish(p, &prm, image, release_kid, 0)
            .await
            .unwrap_or_else(|e| panic!("publishing {release_kid}: {e:#}"));
        (id, s)
    }

    /// Reserves `n` consecutive sequence numbers nobody else will use, and holds the store
    /// order until the guard is dropped.
    pub(crate) async fn reserve(&self, n: u64) -> (u64, tokio::sync::MutexGuard<'_, u64>) {
        let mut next = self.seq.lock().await;
        let s = *next;
        *next += n;
        (s, next)
    }
}

// ---------------------------------------------------------------------------------------
// Envelope surgery (the attacker's workbench)

/// The manifest content (the bytes inside the manifest bstr) of an envelope.
pub(crate) fn manifest_content(envelope: &[u8]) -> Vec<u8> {
    let v: ciborium::Value = ciborium::from_reader(envelope).unwrap();
    let ciborium::Value::Tag(107, inner) = v else {
        panic!("not an envelope")
    };
    let map = inner.as_map().unwrap();
    map.iter()
        .find(|(k, _)| k.as_integer() == Some(3.into()))
        .and_then(|(_, v)| v.as_bytes())
        .unwrap()
        .clone()
}

/// The authentication blocks of an envelope, as received.
pub(crate) fn auth_blocks(envelope: &[u8]) -> Vec<Vec<u8>> {
    let env = suit::Envelope::decode(envelope, &suit::Limits::default()).unwrap();
    env.auth_blocks().iter().map(|b| b.bytes.clone()).collect()
}

/// `envelope` with `extra` authentication blocks appended.
pub(crate) fn with_blocks(envelope: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let env = suit::Envelope::decode(envelope, &suit::Limits::default()).unwrap();
    let mut blocks: Vec<&[u8]> = env.auth_blocks().iter().map(|b| &b.bytes[..]).collect();
    blocks.extend(extra.iter().map(|b| &b[..]));
    env.encode_with_blocks(&blocks)
}

/// `envelope` with every authentication block removed.
pub(crate) fn unsigned(envelope: &[u8]) -> Vec<u8> {
    let env = suit::Envelope::decode(envelope, &suit::Limits::default()).unwrap();
    env.encode_with_blocks(&[])
}

/// A signature block under `kid` by a key nobody trusts, over `envelope`'s manifest digest.
pub(crate) fn forged_block(envelope: &[u8], kid: &str) -> Vec<u8> {
    let env = suit::Envelope::decode(envelope, &suit::Limits::default()).unwrap();
    let impostor = suit::SigningKey::generate(&mut rng()).with_kid(kid.as_bytes().to_vec());
    impostor.sign1_detached(env.signed_payload())
}

/// `envelope` with one byte of its manifest changed (inside the class-id, so the CBOR stays
/// well formed), the authentication wrapper untouched.
pub(crate) fn manifest_byte_flipped(envelope: &[u8], class: &str) -> Vec<u8> {
    let class = uuid::Uuid::parse_str(class).unwrap();
    let mut out = envelope.to_vec();
    let at = out
        .windows(16)
        .position(|w| w == class.as_bytes())
        .expect("the class-id in the envelope");
    out[at] ^= 0x01;
    out
}

// ---------------------------------------------------------------------------------------
// Raw requests

/// An HTTPS client trusting one CA.
pub(crate) fn https(base: &str, ca: &[u8]) -> reqwest::Client {
    let limits = foundations::client::ClientLimits {
        connect_timeout: Duration::from_secs(10),
        request_timeout: PATIENCE,
        read_timeout: PATIENCE,
        max_error_body: 64 * 1024,
    };
    foundations::client::https_client(base, Some(ca), &limits).unwrap()
}

/// Status and JSON body (a problem or a result) of a request.
pub(crate) async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&body)}));
    (status, v)
}

/// The dispatcher's operator API, as the admin, without the typed client (which keeps only
/// the title of a problem): status and body.
pub(crate) async fn operator(
    c: &Chain,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let ca = std::fs::read(c.dispatcher_dir().join("tls/ca.pem")).unwrap();
    let token = std::fs::read_to_string(c.dispatcher_dir().join("admin.token")).unwrap();
    let mut rb = https(&c.api_url, &ca)
        .request(method, format!("{}{path}", c.api_url))
        .bearer_auth(token.trim());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

/// `POST /v1/releases` on the dispatcher: a direct upload (internal publishers' path).
pub(crate) async fn direct_upload(
    c: &Chain,
    envelope: &[u8],
    blob: &[u8],
    key: &[u8],
) -> (u16, Value) {
    let body = json!({"envelope_b64": b64(envelope), "blob_b64": b64(blob), "key_b64": b64(key)});
    operator(c, reqwest::Method::POST, "/v1/releases", Some(body)).await
}

/// Asserts a dispatcher problem: status and the `check` that failed.
pub(crate) fn assert_refused(got: &(u16, Value), status: u16, check: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["check"], check, "{}", got.1);
}

fn server_name(i: usize) -> &'static str {
    if i == 0 {
        "update-server"
    } else {
        "update-mirror"
    }
}

/// The CA of update server `i` (0: primary, 1: mirror).
pub(crate) fn us_ca(c: &Chain, i: usize) -> Vec<u8> {
    std::fs::read(c.opts.root.join(server_name(i)).join("tls/ca.pem")).unwrap()
}

/// A client of update server `i` with `token`.
pub(crate) fn us_client(
    c: &Chain,
    i: usize,
    token: Option<String>,
) -> update_server::client::UpdateServerClient {
    update_server::client::UpdateServerClient::new(&c.us_urls[i], Some(&us_ca(c, i)), token)
        .unwrap()
}

/// Uploads arbitrary bytes to update server `i` with `token`.
pub(crate) async fn us_upload(
    c: &Chain,
    i: usize,
    token: &str,
    envelope: Vec<u8>,
    blob: Vec<u8>,
) -> Result<update_server::client::Uploaded, update_server::client::ClientError> {
    let len = blob.len() as u64;
    let stream =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(bytes::Bytes::from(blob)) },
        );
    us_client(c, i, Some(token.to_owned()))
        .upload_stream(envelope, stream, len)
        .await
}

/// Asserts an update-server problem: status and check.
pub(crate) fn assert_us_refused<T: std::fmt::Debug>(
    r: &Result<T, update_server::client::ClientError>,
    status: u16,
    check: &str,
) {
    match r {
        Err(e) => {
            assert_eq!(e.status(), Some(status), "{e}");
            assert_eq!(e.check(), Some(check), "{e}");
        }
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

/// An access token of publisher `p` from the key repository's token endpoint.
pub(crate) async fn token_of(c: &Chain, p: &Publisher) -> String {
    c.key_repo_client(p).unwrap().access_token().await.unwrap()
}

// ---------------------------------------------------------------------------------------
// Probes: nothing stored, approved, pushed or installed

/// Release ids the update server `i` lists.
pub(crate) async fn us_listed(c: &Chain, i: usize) -> Vec<String> {
    us_client(c, i, None)
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.release.release_id)
        .collect()
}

/// Whether update server `i` holds an object (blob by SHA-256, or envelope by release id)
/// in its storage directory.
pub(crate) fn us_blob_stored(c: &Chain, i: usize, blob: &[u8]) -> bool {
    c.opts
        .root
        .join(server_name(i))
        .join("objects/blobs")
        .join(sha256_hex(blob))
        .exists()
}

pub(crate) fn us_envelope_stored(c: &Chain, i: usize, release_id: &str) -> bool {
    c.opts
        .root
        .join(server_name(i))
        .join(format!("objects/envelopes/{release_id}.suit"))
        .exists()
}

/// Asserts update server `i` neither lists nor stores the release (envelope or blob).
pub(crate) async fn assert_not_at_update_server(
    c: &Chain,
    i: usize,
    release_id: &str,
    blob: &[u8],
) {
    assert!(
        !us_listed(c, i).await.iter().any(|id| id == release_id),
        "the update server lists {release_id}"
    );
    assert!(!us_envelope_stored(c, i, release_id), "envelope stored");
    assert!(!us_blob_stored(c, i, blob), "blob stored");
}

/// Release ids the dispatcher holds.
pub(crate) async fn dispatcher_releases(c: &Chain) -> Vec<String> {
    let v: Value = c.op.get("/v1/releases").await.unwrap();
    v["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) async fn rollouts(c: &Chain) -> Vec<Value> {
    let v: Value = c.op.get("/v1/rollouts").await.unwrap();
    v["rollouts"].as_array().unwrap().clone()
}

/// Asserts the dispatcher neither holds the release, nor has files for it, nor a rollout.
pub(crate) async fn assert_not_at_dispatcher(c: &Chain, release_id: &str) {
    assert!(
        !dispatcher_releases(c)
            .await
            .iter()
            .any(|id| id == release_id),
        "the dispatcher holds {release_id}"
    );
    assert!(
        !c.dispatcher_dir()
            .join("data/releases")
            .join(release_id)
            .exists(),
        "the dispatcher has files of {release_id}"
    );
    assert!(
        !rollouts(c)
            .await
            .iter()
            .any(|r| r["release_id"] == release_id),
        "a rollout of {release_id}"
    );
}

pub(crate) async fn audit(c: &Chain) -> Vec<Value> {
    let v: Value = c.op.get("/v1/audit?limit=1000").await.unwrap();
    v["records"].as_array().unwrap().clone()
}

/// Waits until the dispatcher's audit log records the refusal of `release_id`; its result
/// (`refused:CHECK`).
pub(crate) async fn refusal_of(c: &Chain, release_id: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(r) = audit(c)
            .await
            .iter()
            .find(|r| r["action"] == "release.refuse" && r["target"] == release_id)
        {
            return r["result"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{release_id} never refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The dispatcher's view of a device.
pub(crate) async fn device(c: &Chain, name: &str) -> Value {
    let d: Value = c.op.get(&format!("/v1/devices/{name}")).await.unwrap();
    if d["device"].is_object() {
        d["device"].clone()
    } else {
        d
    }
}

/// A device's own state (`state.json` in its directory).
pub(crate) fn device_state(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
}

/// A device's anti-rollback counter, as the device itself holds it.
pub(crate) fn device_counter(dir: &Path) -> u64 {
    device_state(dir)["counter"].as_u64().unwrap()
}

/// Install attempts in a device's log.
pub(crate) fn install_attempts(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("install.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "install")
        .count()
}

// ---------------------------------------------------------------------------------------
// CoAP

/// Sends one datagram from a fresh socket and waits for one back.
pub(crate) async fn exchange(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exchange_from(&s, to, bytes).await.expect("an answer")
}

/// Sends one datagram from `s` and waits (20 s at most) for one back.
pub(crate) async fn exchange_from(
    s: &tokio::net::UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    s.send_to(bytes, to).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(20), s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends one datagram and returns what came back within `wait` (nothing: `None`).
pub(crate) async fn answer_within(to: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(bytes, to).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The uplink context of an enrolment bundle, as the device holds it.
pub(crate) fn uplink_params(bundle: &Value) -> oscore::ContextParams {
    let u = &bundle["uplink"];
    let h = |k: &str| hex::decode(u[k].as_str().unwrap_or_default()).unwrap();
    oscore::ContextParams {
        master_secret: zeroize::Zeroizing::new(h("master_secret_hex")),
        master_salt: h("master_salt_hex"),
        id_context: None,
        sender_id: h("sender_id_hex"),
        recipient_id: h("recipient_id_hex"),
    }
}

/// A check-in the device's strict decoder accepts, protected with `ctx`, from a device that
/// says it listens on `port`; with `echo`, repeating an Echo value of the dispatcher.
pub(crate) fn checkin(
    ctx: &mut oscore::SecurityContext,
    port: u16,
    mid: u16,
    echo: Option<&[u8]>,
) -> (Vec<u8>, oscore::protect::RequestBinding) {
    use oscore::coap_lite::MessageType;
    use oscore::message::{self, code, opt};
    let mut req = message::packet(
        MessageType::Confirmable,
        code::POST,
        mid,
        &mid.to_be_bytes(),
    );
    message::set_path(&mut req, "d/checkin");
    if let Some(e) = echo {
        message::set(&mut req, opt::ECHO, e.to_vec());
    }
    req.payload = serde_json::to_vec(&json!({
        "coap_port": port, "version": "1.0.0", "sequence": 0, "release_id": null, "boots": 1,
        "state": {"active": "a", "a": {"version": "1.0.0", "sequence": 0,
            "sha256": "ab".repeat(32), "size": 7, "release_id": "factory"},
            "b": null, "counter": 0, "pending": null, "boots": 1}
    }))
    .unwrap();
    let (outer, b) = oscore::protect::protect_request(ctx, &req).unwrap();
    (message::encode(&outer, 1500).unwrap(), b)
}

/// The Partial IV of a response's OSCORE option (a response under its own nonce), if any.
pub(crate) fn response_piv(p: &oscore::coap_lite::Packet) -> Option<Vec<u8>> {
    oscore::protect::oscore_option(p)
        .unwrap()
        .and_then(|o| o.piv)
}

/// The port of a device's push address at the dispatcher.
pub(crate) async fn device_port(c: &Chain, name: &str) -> Option<u16> {
    device(c, name).await["address"]
        .as_str()
        .map(|a| a.parse::<SocketAddr>().unwrap().port())
}

/// The dispatcher's CoAP (uplink) address.
pub(crate) fn uplink_addr(c: &Chain) -> SocketAddr {
    c.coap_uri.trim_start_matches("coap://").parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// The shared chain of services

static SERVICES: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();

/// Key repository, update server and dispatcher (no devices), shared by the attacks that are
/// refused before anything reaches a device: nothing in them is accepted by the dispatcher
/// (releases it must refuse are signed by keys the plant does not trust), and each looks
/// only at its own releases, keys and devices.
pub(crate) async fn services() -> &'static Shared {
    SERVICES
        .get_or_init(|| Shared::start("services", |_| {}))
        .await
}

/// A release built in memory (not published anywhere): envelope, blob, release key (COSE),
/// release id.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub(crate) envelope: Vec<u8>,
    pub(crate) blob: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) id: String,
}

pub(crate) fn build(
    signer: &suit::SigningKey,
    p: &suit::ReleaseParams,
    image: &[u8],
    release_kid: &str,
) -> Built {
    let b =
        suit::release::build_release(p, image, release_kid.as_bytes(), signer, &mut rng()).unwrap();
    Built {
        id: release_id(&b.envelope),
        key: b.release_key.to_cose_key().to_vec(),
        envelope: b.envelope,
        blob: b.blob,
    }
}

/// The release id an envelope claims (the hex SHA-256 of its manifest bstr), also for
/// envelopes `suit` would not decode.
pub(crate) fn release_id(envelope: &[u8]) -> String {
    sha256_hex(&suit::cbor::bstr_wrap(&manifest_content(envelope)))
}

/// A policy for the chains of the suite: T1 installs at once in `batches`, T2 and T3 are
/// held; no window.
pub(crate) fn policy(batches: &str, pause: &str, threshold: &str) -> String {
    format!(
        "[defaults]\naction = \"hold\"\n\n[[rollout]]\nname = \"test\"\nbatches = [{batches}]\npause = \"{pause}\"\nfailure_threshold = \"{threshold}\"\n\n\
         [[rule]]\nname = \"apps\"\nmatch = {{ type = [\"T1\"] }}\naction = \"install\"\nrollout = \"test\"\n\n\
         [[rule]]\nname = \"firmware\"\nmatch = {{ type = [\"T2\", \"T3\"] }}\naction = \"hold\"\nrollout = \"test\"\n"
    )
}

/// Edits the dispatcher's trust file and reloads it (`POST /v1/trust/reload`).
pub(crate) async fn edit_trust(c: &Chain, edit: impl FnOnce(&mut suit::TrustFile)) {
    let path = c.dispatcher_dir().join("trust.toml");
    let mut file = suit::TrustFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut file);
    std::fs::write(&path, file.to_toml()).unwrap();
    let _: Value = c.op.post("/v1/trust/reload", &json!({})).await.unwrap();
}

/// The versions the dispatcher records for every device.
pub(crate) async fn device_versions(c: &Chain) -> Vec<(String, String)> {
    let v: Value = c.op.get("/v1/devices").await.unwrap();
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The key repository's tokens

/// The key repository's built-in authorization server, as a forger holding its signing key
/// would use it: tokens that are valid in every respect but the one a test changes. (The
/// suite reads the key from the repository's directory; an attacker has no such key, so
/// each forged token stands for a token from elsewhere: another issuer, another audience,
/// an expired one replayed, …)
#[derive(Debug)]
pub(crate) struct Issuer {
    signer: foundations::token::TokenSigner,
    pub(crate) iss: String,
    pub(crate) aud: String,
    /// A registered client (the manufacturer's): the key repository checks the client of
    /// every token of its own issuer, so a token naming nobody is refused for that alone.
    client: String,
}

impl Issuer {
    pub(crate) fn of(c: &Chain) -> Issuer {
        let cfg =
            key_repo::config::Config::load(&c.opts.root.join("key-repo/key-repo.toml")).unwrap();
        Issuer {
            signer: foundations::token::TokenSigner::load(&cfg.token_signing_key_file).unwrap(),
            iss: cfg.issuer,
            aud: cfg.audience,
            client: c.manufacturer.client_id.clone(),
        }
    }

    /// Valid claims for `products` with `scope`.
    pub(crate) fn claims(&self, scope: &str, products: &[String]) -> foundations::token::Claims {
        let now = foundations::now_unix();
        foundations::token::Claims {
            iss: self.iss.clone(),
            sub: Some(self.client.clone()),
            aud: foundations::token::Audience::One(self.aud.clone()),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: None,
            client_id: Some(self.client.clone()),
            scope: Some(scope.into()),
            extra: serde_json::Map::from_iter([("products".to_string(), json!(products))]),
        }
    }

    pub(crate) fn sign(&self, c: &foundations::token::Claims) -> String {
        self.signer.sign(c).unwrap()
    }

    pub(crate) fn sign_typed(&self, typ: &str, c: &foundations::token::Claims) -> String {
        self.signer.sign_typed(typ, c).unwrap()
    }

    pub(crate) fn jwk(&self) -> &foundations::token::Jwk {
        self.signer.jwk()
    }
}

/// Every record of the key repository's audit trail (read with an auditor token).
pub(crate) async fn key_repo_audit(c: &Chain) -> Vec<Value> {
    let iss = Issuer::of(c);
    let token = iss.sign(&iss.claims("audit:read", &[]));
    let http = https(
        &c.kr_url,
        &std::fs::read(c.opts.root.join("key-repo/tls/ca.pem")).unwrap(),
    );
    let mut all = Vec::new();
    let mut from = 0u64;
    loop {
        let (status, v) = send(
            http.get(format!("{}/v1/audit?from={from}&limit=1000", c.kr_url))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let recs = v["records"].as_array().unwrap().clone();
        let done = recs.len() < 1000;
        if let Some(last) = recs.last() {
            from = last["seq"].as_u64().unwrap() + 1;
        }
        all.extend(recs);
        if done {
            return all;
        }
    }
}

/// The dispatcher's own key-repository client (its genuine credentials), one per chain so
/// that its token is reused (the token endpoint rate-limits each client).
pub(crate) fn dispatcher_reader(c: &Chain) -> std::sync::Arc<key_repo::client::KeyRepoClient> {
    static READERS: std::sync::Mutex<
        Vec<(String, std::sync::Arc<key_repo::client::KeyRepoClient>)>,
    > = std::sync::Mutex::new(Vec::new());
    let mut readers = READERS.lock().unwrap();
    if let Some((_, r)) = readers.iter().find(|(url, _)| *url == c.kr_url) {
        return r.clone();
    }
    let cfg =
        dispatcher::config::Config::load(&c.dispatcher_dir().join("dispatcher.toml")).unwrap();
    let k = &cfg.key_repos[0];
    let r = std::sync::Arc::new(
        key_repo::client::KeyRepoClient::new(key_repo::client::ClientConfig {
            base_url: c.kr_url.clone(),
            client_id: k.client_id.clone(),
            client_secret: std::fs::read_to_string(&k.client_secret_file)
                .unwrap()
                .trim()
                .to_owned(),
            ca_pem: Some(std::fs::read(c.opts.root.join("key-repo/tls/ca.pem")).unwrap()),
            scopes: vec![],
        })
        .unwrap(),
    );
    readers.push((c.kr_url.clone(), r.clone()));
    r
}
