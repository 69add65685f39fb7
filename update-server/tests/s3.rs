//! The S3 storage back-end against a real S3-compatible server: moto's standalone server,
//! installed from PyPI by `scripts/peers/s3.sh` into `.peers/moto`. Without it the test is
//! skipped with a message, except under CI (env `CI` set), where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_bin() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.peers/moto/venv/bin/moto_server"
    ));
    p.exists().then_some(p)
}

fn start_moto() -> Option<(Moto, String)> {
    let Some(bin) = moto_bin() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "moto server missing under CI: run scripts/setup-peers.sh (scripts/peers/s3.sh)"
            );
        }
        eprintln!("SKIPPED: .peers/moto missing; run scripts/peers/s3.sh to test the S3 back-end");
        return None;
    };
    // A free loopback port (moto's server cannot report a port chosen by the OS).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto(child);
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((moto, format!("http://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto server did not start on port {port}");
}

#[test]
fn s3_backend_stores_only_verified_releases_and_serves_ranges() {
    let Some((_moto, endpoint)) = start_moto() else {
        return;
    };
    let rt = rt();
    let plain = reqwest::Client::new();
    // Create the bucket (path-style; moto accepts any credentials).
    rt.block_on(async {
        let r = plain
            .put(format!("{endpoint}/releases"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{r:?}");
    });
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    std::fs::write(sd.dir.path().join("s3-secret"), "testing-secret\n").unwrap();
    sd.edit(|t| {
        t.replace(
            "[storage]\nkind = \"local\"\npath = \"objects\"\n",
            &format!(
                "[storage]\nkind = \"s3\"\nbucket = \"releases\"\nendpoint = \"{endpoint}\"\nallow_http = true\naccess_key_id = \"testing\"\nsecret_access_key_file = \"s3-secret\"\n"
            ),
        )
    });
    assert!(
        std::fs::read_to_string(sd.config())
            .unwrap()
            .contains("kind = \"s3\"")
    );
    let srv = Server::start(&sd.config());
    let c = srv.client(&sd, Some(sd.publisher_token()));
    let bucket_keys = || async {
        let xml = plain
            .get(format!("{endpoint}/releases?list-type=2"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut keys: Vec<String> = xml
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    };
    rt.block_on(async {
        let rel = make_release(&acme, VENDOR, 1, &image(6_000_000, 4));
        let up = |blob: Vec<u8>| {
            let len = blob.len() as u64;
            let env = rel.envelope.clone();
            let c = c.clone();
            async move {
                c.upload_stream(
                    env,
                    futures_util::stream::iter(
                        blob.chunks(1 << 20)
                            .map(|x| Ok::<_, std::io::Error>(Bytes::copy_from_slice(x)))
                            .collect::<Vec<_>>(),
                    ),
                    len,
                )
                .await
            }
        };
        // Tampered payload (larger than one 5 MiB part): refused, nothing left in the bucket.
        let mut bad = rel.blob.clone();
        bad[5_500_000] ^= 1;
        let e = up(bad).await.unwrap_err();
        assert_eq!(e.check(), Some("ciphertext-digest-mismatch"));
        assert!(bucket_keys().await.is_empty(), "{:?}", bucket_keys().await);

        assert!(up(rel.blob.clone()).await.unwrap().created);
        assert!(!up(rel.blob.clone()).await.unwrap().created);
        let sha = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&rel.blob))
        };
        assert_eq!(
            bucket_keys().await,
            vec![
                format!("blobs/{sha}"),
                format!("envelopes/{}.suit", rel.release_id)
            ]
        );
        let r = c
            .payload(&rel.release_id, Some("bytes=5242870-5242889"))
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), &rel.blob[5_242_870..5_242_890]);
        let all = c
            .payload(&rel.release_id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(all, rel.blob);
        assert_eq!(
            c.envelope(&rel.release_id, 1 << 20).await.unwrap(),
            rel.envelope
        );
    });
}
