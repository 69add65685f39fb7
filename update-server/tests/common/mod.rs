//! Helpers for the end-to-end tests: real `update-server` processes on loopback, releases
//! built with the `suit` library, tokens from a test issuer (a `foundations::token::TokenSigner`
//! whose JWKS the server reads from a file).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use foundations::token::{Audience, Claims, TokenSigner};
use suit::consts::alg;
use suit::release::{ImageInfo, ReleaseParams, build_release_envelope};
use suit::{IcsMetadata, PayloadEncryptor, ReleaseKey, SigningKey, SuitDigest, UpdateType};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_update-server");
pub const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
pub const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";
pub const OTHER_VENDOR: &str = "00000000-1111-5222-8333-444444444444";
pub const ISSUER: &str = "https://test-issuer.invalid";
pub const AUDIENCE: &str = "https://update-server.invalid";

pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub fn run_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "update-server {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A publisher signing key with a kid.
pub fn signing_key(kid: &str) -> SigningKey {
    SigningKey::generate(&mut rng()).with_kid(kid.as_bytes().to_vec())
}

/// A release: envelope, `ciphertext || tag`, and the KEK as a COSE_Key.
pub struct Rel {
    pub envelope: Vec<u8>,
    pub blob: Vec<u8>,
    pub release_id: String,
}

pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn make_release(key: &SigningKey, vendor: &str, seq: u64, image: &[u8]) -> Rel {
    let mut rng = rng();
    let kek =
        ReleaseKey::generate(alg::A128KW, format!("rk-{seq}").into_bytes(), &mut rng).unwrap();
    let (mut enc, info) = PayloadEncryptor::new(alg::A128GCM, &kek, &mut rng).unwrap();
    let mut blob = image.to_vec();
    enc.update(&mut blob);
    let e = enc.finish(info);
    blob.extend_from_slice(&e.tag);
    let mut ics = IcsMetadata::new(UpdateType::T2);
    ics.categories = vec![suit::Category::Security];
    ics.cves = vec!["CVE-2026-0001".into()];
    let params = ReleaseParams {
        vendor_id: Uuid::parse_str(vendor).unwrap(),
        class_id: Uuid::parse_str(CLASS).unwrap(),
        device_id: None,
        sequence: seq,
        version: vec![1, 0, seq as i64],
        requires: None,
        uri: None,
        ics,
    };
    let plain = ImageInfo {
        digest: SuitDigest::sha256(image),
        size: image.len() as u64,
    };
    let envelope = build_release_envelope(&params, &plain, &e, key).unwrap();
    let release_id = suit::Envelope::decode(&envelope, &suit::Limits::default())
        .unwrap()
        .release_id();
    Rel {
        envelope,
        blob,
        release_id,
    }
}

/// A server directory made by `update-server init`, with a test issuer and one publisher.
pub struct ServerDir {
    pub dir: tempfile::TempDir,
    pub signer: TokenSigner,
}

impl ServerDir {
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("update-server.toml")
    }
    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/ca.pem")).unwrap()
    }
    pub fn objects(&self) -> PathBuf {
        self.dir.path().join("objects")
    }
    /// Edits the configuration text.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let t = std::fs::read_to_string(self.config()).unwrap();
        std::fs::write(self.config(), f(t)).unwrap();
    }
    /// Registers `key` for `vendors`.
    pub fn add_publisher(&self, key: &SigningKey, vendors: &[&str]) {
        let kid = String::from_utf8(key.kid().to_vec()).unwrap();
        let pem = self.dir.path().join(format!("{kid}.pub.pem"));
        std::fs::write(&pem, key.public_key().to_pem()).unwrap();
        let mut args = vec![
            "publishers",
            "add",
            "--config",
            s(&self.config()).to_owned().leak(),
            "--kid",
            kid.clone().leak(),
            "--public-key",
            s(&pem).to_owned().leak(),
        ];
        for v in vendors {
            args.push("--vendor-id");
            args.push(v);
        }
        run_ok(&args);
    }
    /// A token from the test issuer.
    pub fn token(&self, scope: &str, products: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut extra = serde_json::Map::new();
        extra.insert("products".into(), serde_json::json!(products));
        self.signer
            .sign(&Claims {
                iss: ISSUER.into(),
                sub: Some("acme-publisher".into()),
                aud: Audience::One(AUDIENCE.into()),
                exp: now + 300,
                iat: now,
                nbf: Some(now),
                jti: Some("t".into()),
                client_id: Some("acme-publisher".into()),
                scope: Some(scope.into()),
                extra,
            })
            .unwrap()
    }
    pub fn publisher_token(&self) -> String {
        self.token("releases:write", &[&format!("{VENDOR}/{CLASS}")])
    }
    /// Files under objects/ (relative names), for "nothing left behind" checks.
    pub fn stored_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.objects(), &self.objects(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// `update-server init` plus a test issuer (JWKS file).
pub fn server_dir() -> ServerDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(&["init", "--dir", s(dir.path())]);
    let signer = TokenSigner::generate().unwrap();
    let jwks = serde_json::json!({ "keys": [signer.jwk()] });
    std::fs::write(dir.path().join("issuer-jwks.json"), jwks.to_string()).unwrap();
    let sd = ServerDir { dir, signer };
    sd.edit(|t| {
        format!(
            "{t}\n[[auth.issuers]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"issuer-jwks.json\"\n"
        )
    });
    sd
}

/// A running `update-server serve`; stopped with SIGTERM when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--config", s(config), "--listen", "127.0.0.1:0"])
            .env("UPDATE_SERVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let url = read_listening(&mut child, "update-server");
        Server { child, url }
    }

    pub fn client(
        &self,
        sd: &ServerDir,
        token: Option<String>,
    ) -> update_server::client::UpdateServerClient {
        update_server::client::UpdateServerClient::new(&self.url, Some(&sd.ca()), token).unwrap()
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops with SIGTERM and waits; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        terminate(&mut self.child)
    }
}

pub fn read_listening(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(u) = line.trim().strip_prefix("listening on ") {
                let _ = tx.send(u.to_string());
            }
            line.clear();
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{what} did not print its address"))
}

pub fn terminate(child: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..300 {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// Blocking-free helper: a tokio runtime for a test body.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
