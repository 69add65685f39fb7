//! Test harness: runs the real `key-repo` binary on loopback.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use foundations::token::{Audience, Claims, TokenSigner};

pub const BIN: &str = env!("CARGO_BIN_EXE_key-repo");
pub const PRODUCT_A: &str =
    "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45";
pub const PRODUCT_B: &str =
    "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/2f4c8a1e-6d3b-5e4f-9a7c-0b1d2e3f4a5b";

#[derive(Debug, Clone)]
pub struct Creds {
    pub id: String,
    pub secret: String,
}

pub fn run_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run key-repo");
    assert!(
        out.status.success(),
        "key-repo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An initialised repository directory (server not necessarily running).
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub admin: Creds,
}

impl Repo {
    pub fn init() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let out = run_ok(&["init", "--dir", repo.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let admin = Creds {
            id: v["admin"]["client_id"].as_str().unwrap().into(),
            secret: v["admin"]["client_secret"].as_str().unwrap().into(),
        };
        Repo { dir, admin }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("key-repo.toml")
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path().join("tls/ca.pem")).unwrap()
    }

    pub fn signer(&self) -> TokenSigner {
        TokenSigner::load(&self.path().join("token-signing.pem")).unwrap()
    }

    pub fn cfg(&self) -> key_repo::config::Config {
        key_repo::config::Config::load(&self.config()).unwrap()
    }

    /// Appends text to the configuration file.
    pub fn append_config(&self, text: &str) {
        let mut cfg = std::fs::read_to_string(self.config()).unwrap();
        cfg.push_str(text);
        std::fs::write(self.config(), cfg).unwrap();
    }

    pub fn add_client(&self, name: &str, role: &str, products: &[&str]) -> Creds {
        let cfg = self.config();
        let mut args = vec![
            "clients",
            "add",
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            name,
            "--role",
            role,
            "--json",
        ];
        for p in products {
            args.push("--product");
            args.push(p);
        }
        let v: serde_json::Value = serde_json::from_str(&run_ok(&args)).unwrap();
        Creds {
            id: v["client_id"].as_str().unwrap().into(),
            secret: v["client_secret"].as_str().unwrap().into(),
        }
    }

    pub fn start(&self) -> Server {
        Server::start(&self.config())
    }

    /// `audit verify` after the test itself opened the database: sled releases its file
    /// lock asynchronously after the last handle drops, so retry while it is still held
    /// (exit code 1); 0 and 3 are answers.
    pub fn audit_verify_after_local_open(&self) -> (i32, String) {
        for _ in 0..50 {
            let r = self.audit_verify();
            if r.0 != 1 {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.audit_verify()
    }

    /// `key-repo audit verify`: (exit code, stdout).
    pub fn audit_verify(&self) -> (i32, String) {
        let out = Command::new(BIN)
            .args([
                "audit",
                "verify",
                "--config",
                self.config().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// A bearer token signed by the repository's real signing key with chosen claims, for
    /// a registered client (the admin's id: the server checks the client of every token of
    /// its own issuer, not the claims against its role).
    pub fn forge(&self, f: impl FnOnce(&mut Claims)) -> String {
        let cfg = self.cfg();
        let now = foundations::now_unix();
        let mut extra = serde_json::Map::new();
        extra.insert("products".into(), serde_json::json!([PRODUCT_A]));
        let mut c = Claims {
            iss: cfg.issuer.clone(),
            sub: Some(self.admin.id.clone()),
            aud: Audience::One(cfg.audience.clone()),
            exp: now + 300,
            iat: now,
            nbf: Some(now),
            jti: Some("j1".into()),
            client_id: Some(self.admin.id.clone()),
            scope: Some("keys:read keys:write keys:revoke audit:read".into()),
            extra,
        };
        f(&mut c);
        self.signer().sign(&c).unwrap()
    }
}

/// A running `key-repo serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .env(
                "KEY_REPO_LOG",
                std::env::var("KR_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("listening on ") {
                        break u.to_string();
                    }
                }
                _ => {
                    let st = child.wait().unwrap();
                    panic!("key-repo serve exited before listening: {st}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop after SIGTERM");
    }

    /// SIGKILL (crash).
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn http(&self, ca: &[u8]) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
            .build()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gets a token from the built-in server with raw HTTP.
pub async fn token(http: &reqwest::Client, url: &str, c: &Creds) -> String {
    let r = http
        .post(format!("{url}/oauth/token"))
        .basic_auth(&c.id, Some(&c.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// A symmetric COSE_Key (kty 4, kid, k) for tests.
pub fn cose_key(kid: &[u8], k: &[u8]) -> Vec<u8> {
    use ciborium::value::Value;
    let v = Value::Map(vec![
        (Value::from(1), Value::from(4)),
        (Value::from(2), Value::Bytes(kid.to_vec())),
        (Value::from(-1), Value::Bytes(k.to_vec())),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&v, &mut out).unwrap();
    out
}

pub fn random_key() -> [u8; 16] {
    foundations::random_bytes::<16>().unwrap()
}

pub fn b64(b: &[u8]) -> String {
    foundations::b64(b)
}

/// Response status, content type and body.
pub async fn send(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.text().await.unwrap())
}

/// Fetches the whole audit trail with an auditor token.
pub async fn audit_records(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut from = 0u64;
    loop {
        let v: serde_json::Value = http
            .get(format!("{url}/v1/audit?from={from}&limit=1000"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let recs = v["records"].as_array().expect("audit page").clone();
        // Each audit read appends its own record, so stop at a short page rather than
        // chasing the head.
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
