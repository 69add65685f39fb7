//! End to end: `publisher publish` through real `key-repo` and `update-server` processes on
//! loopback, then a dispatcher-side check (list, download, key from the key repository,
//! `publisher verify` with decryption).
//!
//! The `key-repo` and `update-server` binaries belong to other packages: [`workspace_bin`]
//! runs `cargo build -p key-repo -p update-server --bins` once (a no-op when they are fresh,
//! as under `cargo test --workspace`) into the same target directory and uses
//! `<target>/debug/<name>`.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `<target>/debug/<name>` for a binary of another workspace package, built once.
fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_publisher"));
    let dir = ours.parent().unwrap().to_owned();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                "key-repo",
                "-p",
                "update-server",
                "--bins",
                "--quiet",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            // Same target directory as this test binary: <target>/debug/publisher.
            .env("CARGO_TARGET_DIR", dir.parent().unwrap())
            .status()
            .expect("run cargo build");
        assert!(
            st.success(),
            "cargo build -p key-repo -p update-server failed"
        );
    });
    let p = dir.join(name);
    assert!(p.exists(), "{} missing", p.display());
    p
}

fn run(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(bin: &Path, args: &[&str]) -> String {
    let o = run(bin, args, &[]);
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

struct Proc(Child);

impl Proc {
    fn start(bin: &Path, args: &[&str]) -> (Proc, String) {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(u) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(u.to_string());
                }
                line.clear();
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("{} did not start", bin.display()));
        (Proc(child), url)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn publish_end_to_end_through_key_repo_and_update_server() {
    let kr_bin = workspace_bin("key-repo");
    let us_bin = workspace_bin("update-server");
    let pb = PathBuf::from(env!("CARGO_BIN_EXE_publisher"));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // Key repository with a publisher client and a dispatcher client for the product.
    let kr_dir = t.join("kr");
    ok(&kr_bin, &["init", "--dir", s(&kr_dir), "--json"]);
    let kr_cfg = kr_dir.join("key-repo.toml");
    let product = format!("{VENDOR}/{CLASS}");
    let client = |name: &str, role: &str| -> serde_json::Value {
        let out = ok(
            &kr_bin,
            &[
                "clients",
                "add",
                "--config",
                s(&kr_cfg),
                "--name",
                name,
                "--role",
                role,
                "--product",
                &product,
                "--json",
            ],
        );
        serde_json::from_str(&out).unwrap()
    };
    let publisher_client = client("acme-publisher", "publisher");
    let dispatcher_client = client("plant-dispatcher", "dispatcher");
    let (_kr, kr_url) = Proc::start(
        &kr_bin,
        &["serve", "--config", s(&kr_cfg), "--listen", "127.0.0.1:0"],
    );
    let kr_toml: toml::Table = toml::from_str(&std::fs::read_to_string(&kr_cfg).unwrap()).unwrap();

    // Publisher signing key.
    let keys = t.join("keys");
    ok(&pb, &["keygen", "--out", s(&keys), "--kid", "acme-2026"]);

    // Update server: the publisher key for the vendor, tokens from the key repository.
    let us_dir = t.join("us");
    ok(&us_bin, &["init", "--dir", s(&us_dir)]);
    let us_cfg = us_dir.join("update-server.toml");
    ok(
        &us_bin,
        &[
            "publishers",
            "add",
            "--config",
            s(&us_cfg),
            "--kid",
            "acme-2026",
            "--public-key",
            s(&keys.join("signing-key.pub.pem")),
            "--vendor-id",
            VENDOR,
        ],
    );
    let mut text = std::fs::read_to_string(&us_cfg).unwrap();
    text.push_str(&format!(
        "\n[[auth.issuers]]\nissuer = \"{}\"\naudience = \"{}\"\njwks_url = \"{kr_url}/.well-known/jwks.json\"\nca_file = \"{}\"\n",
        kr_toml["issuer"].as_str().unwrap(),
        kr_toml["audience"].as_str().unwrap(),
        s(&kr_dir.join("tls/ca.pem")),
    ));
    std::fs::write(&us_cfg, text).unwrap();
    let (_us, us_url) = Proc::start(
        &us_bin,
        &["serve", "--config", s(&us_cfg), "--listen", "127.0.0.1:0"],
    );

    // Publisher configuration: endpoints in a file, the secret in a 0600 file.
    let secret_file = t.join("client-secret");
    std::fs::write(
        &secret_file,
        publisher_client["client_secret"].as_str().unwrap(),
    )
    .unwrap();
    let pcfg = t.join("publisher.toml");
    std::fs::write(
        &pcfg,
        format!(
            "[key_repo]\nurl = \"{kr_url}\"\nca_file = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"client-secret\"\n\n[update_server]\nurl = \"{us_url}\"\nca_file = \"{}\"\n",
            s(&kr_dir.join("tls/ca.pem")),
            publisher_client["client_id"].as_str().unwrap(),
            s(&us_dir.join("tls/ca.pem")),
        ),
    )
    .unwrap();

    let image = t.join("fw.bin");
    std::fs::write(
        &image,
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = t.join("rel");
    let publish_args = |seq: &str, out: &Path| -> Vec<String> {
        [
            "publish",
            "--config",
            s(&pcfg),
            "--signing-key",
            s(&keys.join("signing-key.pem")),
            "--image",
            s(&image),
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--sequence",
            seq,
            "--version",
            "2.1.0",
            "--type",
            "T2",
            "--category",
            "security",
            "--cve",
            "CVE-2026-0001",
            "--severity",
            "high",
            "--out",
            s(out),
            "--json",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let args = publish_args("42", &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary: serde_json::Value = serde_json::from_str(&ok(&pb, &args)).unwrap();
    let release_id = summary["release_id"].as_str().unwrap().to_owned();
    let kid = summary["release_kid"].as_str().unwrap().to_owned();
    assert_eq!(summary["newly_published"], true);
    assert_eq!(
        summary["payload_url"],
        format!("{us_url}/v1/releases/{release_id}/payload")
    );
    assert_eq!(summary["key_url"], format!("{kr_url}/v1/keys/{kid}"));
    // The summary's release id is the envelope's.
    let inspect: serde_json::Value = serde_json::from_str(&ok(
        &pb,
        &["inspect", s(&out.join("envelope.suit")), "--json"],
    ))
    .unwrap();
    assert_eq!(inspect["release_id"], release_id.as_str());

    // Dispatcher side: list with ICS metadata, download envelope and payload, read the key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dl = t.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    rt.block_on(async {
        let us = update_server::client::UpdateServerClient::new(
            &us_url,
            Some(&std::fs::read(us_dir.join("tls/ca.pem")).unwrap()),
            None,
        )
        .unwrap();
        let list = us
            .list(&format!("vendor-id={VENDOR}&class-id={CLASS}"))
            .await
            .unwrap();
        assert_eq!(list.releases.len(), 1);
        let r = &list.releases[0].release;
        assert_eq!(r.release_id, release_id);
        assert_eq!(r.sequence, 42);
        assert_eq!(r.release_kid.as_deref(), Some(kid.as_str()));
        let ics = r.ics.clone().unwrap();
        assert_eq!(
            (ics.update_type.as_str(), ics.severity.as_deref()),
            ("T2", Some("high"))
        );
        assert_eq!(ics.cves, vec!["CVE-2026-0001".to_string()]);
        std::fs::write(
            dl.join("envelope.suit"),
            us.envelope(&release_id, 1 << 20).await.unwrap(),
        )
        .unwrap();
        let payload = us
            .payload(&release_id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(dl.join("payload.enc"), &payload).unwrap();
        let kr = key_repo::client::KeyRepoClient::new(key_repo::client::ClientConfig {
            base_url: kr_url.clone(),
            client_id: dispatcher_client["client_id"].as_str().unwrap().into(),
            client_secret: dispatcher_client["client_secret"].as_str().unwrap().into(),
            ca_pem: Some(std::fs::read(kr_dir.join("tls/ca.pem")).unwrap()),
            scopes: vec![],
        })
        .unwrap();
        let key = kr.get_key(&kid).await.unwrap();
        assert_eq!(key.product, product);
        std::fs::write(dl.join("release-key.cbor"), key.cose_key).unwrap();
    });
    let verified = ok(
        &pb,
        &[
            "verify",
            s(&dl.join("envelope.suit")),
            "--trust",
            s(&keys.join("signing-key.pub.pem")),
            "--payload",
            s(&dl.join("payload.enc")),
            "--release-key",
            s(&dl.join("release-key.cbor")),
            "--extract",
            s(&dl.join("image.out")),
        ],
    );
    assert!(
        verified.starts_with(&format!("OK {release_id}")),
        "{verified}"
    );
    assert_eq!(
        std::fs::read(dl.join("image.out")).unwrap(),
        std::fs::read(&image).unwrap()
    );

    // A replayed older sequence is refused by the update server (exit 4, check named).
    let args = publish_args("41", &t.join("rel-old"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&pb, &args, &[]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rollback"),
        "{o:?}"
    );

    // A wrong client secret (from the environment, overriding the file) is refused.
    let args = publish_args("43", &t.join("rel-bad"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&pb, &args, &[("PUBLISHER_CLIENT_SECRET", "not-the-secret")]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
}

#[test]
fn publish_without_endpoints_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pb = PathBuf::from(env!("CARGO_BIN_EXE_publisher"));
    let o = Command::new(&pb)
        .args([
            "publish",
            "--signing-key",
            "x.pem",
            "--image",
            "x",
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--sequence",
            "1",
            "--version",
            "1.0.0",
            "--type",
            "T2",
            "--out",
            s(tmp.path()),
        ])
        .env_remove("PUBLISHER_CONFIG")
        .env_remove("PUBLISHER_KEY_REPO_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("PUBLISHER_KEY_REPO_URL"));
}
