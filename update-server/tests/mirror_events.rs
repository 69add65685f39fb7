//! Notification stream (SSE) and mirrors, against real `update-server` processes.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt as _;

async fn publish(srv: &Server, sd: &ServerDir, rel: &Rel) {
    let body = Bytes::from(rel.blob.clone());
    let len = body.len() as u64;
    srv.client(sd, Some(sd.publisher_token()))
        .upload_stream(
            rel.envelope.clone(),
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) }),
            len,
        )
        .await
        .unwrap();
}

fn http(sd: &ServerDir) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&sd.ca()).unwrap())
        .build()
        .unwrap()
}

/// Reads SSE `data:` lines of `release` events until `n` are seen.
async fn read_events(resp: reqwest::Response, n: usize) -> Vec<(u64, serde_json::Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut s = resp.bytes_stream();
    let mut id = 0;
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), s.next())
            .await
            .expect("no event within 30 s")
            .expect("stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find('\n') {
            let line = buf[..pos].to_string();
            buf.drain(..=pos);
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().unwrap();
            } else if let Some(d) = line.strip_prefix("data:") {
                out.push((id, serde_json::from_str(d.trim()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn notification_stream_pushes_new_releases_and_resumes() {
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    let srv = Server::start(&sd.config());
    rt().block_on(async {
        let h = http(&sd);
        let url = format!("{}/v1/events?vendor-id={VENDOR}", srv.url);
        let resp = h.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let r1 = make_release(&acme, VENDOR, 1, &image(1000, 1));
        let r2 = make_release(&acme, VENDOR, 2, &image(1000, 2));
        let reader = tokio::spawn(read_events(resp, 2));
        // Give the subscription a moment to be registered before publishing.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        publish(&srv, &sd, &r1).await;
        publish(&srv, &sd, &r2).await;
        let ev = reader.await.unwrap();
        assert_eq!(ev[0].1["release_id"], r1.release_id.as_str());
        assert_eq!(ev[1].1["release_id"], r2.release_id.as_str());
        assert_eq!(ev[1].1["sequence"], 2);
        assert!(ev[1].0 > ev[0].0);
        // Reconnecting with Last-Event-ID replays what came after it.
        let resp = h
            .get(&url)
            .header("last-event-id", ev[0].0.to_string())
            .send()
            .await
            .unwrap();
        let replay = read_events(resp, 1).await;
        assert_eq!(replay[0].1["release_id"], r2.release_id.as_str());
    });
    // SSE connections do not keep the server from stopping.
    assert!(srv.stop());
}

#[test]
fn mirror_replicates_and_refuses_a_tampered_source() {
    let src = server_dir();
    let acme = signing_key("acme-2026");
    src.add_publisher(&acme, &[VENDOR]);
    let srv = Server::start(&src.config());
    let r1 = make_release(&acme, VENDOR, 1, &image(50_000, 1));
    let r2 = make_release(&acme, VENDOR, 2, &image(70_000, 2));
    rt().block_on(async {
        publish(&srv, &src, &r1).await;
        publish(&srv, &src, &r2).await;
    });
    let ca = src.dir.path().join("tls/ca.pem");

    // A faithful mirror: same publisher key registered on the mirror.
    let m = server_dir();
    m.add_publisher(&acme, &[VENDOR]);
    let out = run(&[
        "mirror",
        "--config",
        s(&m.config()),
        "--from",
        &srv.url,
        "--ca",
        s(&ca),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["copied"].as_array().unwrap().len(), 2, "{rep}");
    // Running it again copies nothing.
    let out = run(&[
        "mirror",
        "--config",
        s(&m.config()),
        "--from",
        &srv.url,
        "--ca",
        s(&ca),
        "--json",
    ]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["unchanged"].as_array().unwrap().len(), 2, "{rep}");
    let mirror_srv = Server::start(&m.config());
    rt().block_on(async {
        let c = mirror_srv.client(&m, None);
        let l = c.list("").await.unwrap().releases;
        assert_eq!(l.len(), 2);
        let p = c
            .payload(&r2.release_id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(p, r2.blob);
        assert!(
            l.iter()
                .all(|r| r.release.published_by.starts_with("mirror:"))
        );
    });
    drop(mirror_srv);

    // A mirror that does not trust the publisher key refuses everything.
    let untrusting = server_dir();
    let out = run(&[
        "mirror",
        "--config",
        s(&untrusting.config()),
        "--from",
        &srv.url,
        "--ca",
        s(&ca),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rep["refused"][0][1], "untrusted-signer", "{rep}");
    assert!(untrusting.stored_files().is_empty());

    // Tamper with the source's stored payload of r2 and envelope of r1.
    let sha2 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&r2.blob))
    };
    let blob_file = src.objects().join("blobs").join(&sha2);
    let mut b = std::fs::read(&blob_file).unwrap();
    b[1234] ^= 0x40;
    std::fs::write(&blob_file, b).unwrap();
    let env_file = src
        .objects()
        .join("envelopes")
        .join(format!("{}.suit", r1.release_id));
    let mut e = std::fs::read(&env_file).unwrap();
    let n = e.len();
    e[n - 3] ^= 0x01;
    std::fs::write(&env_file, e).unwrap();

    let fresh = server_dir();
    fresh.add_publisher(&acme, &[VENDOR]);
    let out = run(&[
        "mirror",
        "--config",
        s(&fresh.config()),
        "--from",
        &srv.url,
        "--ca",
        s(&ca),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rep["copied"].as_array().unwrap().is_empty(), "{rep}");
    let refused: Vec<(String, String)> = rep["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 2, "{rep}");
    let r2_check = &refused
        .iter()
        .find(|(id, _)| *id == r2.release_id)
        .unwrap()
        .1;
    assert_eq!(r2_check, "ciphertext-digest-mismatch");
    let r1_check = &refused
        .iter()
        .find(|(id, _)| *id == r1.release_id)
        .unwrap()
        .1;
    assert!(
        [
            "manifest-digest-mismatch",
            "signature-invalid",
            "malformed-envelope",
            "profile-violation"
        ]
        .contains(&r1_check.as_str()),
        "{r1_check}"
    );
    assert!(
        fresh.stored_files().is_empty(),
        "{:?}",
        fresh.stored_files()
    );
}

#[test]
fn a_running_server_replicates_from_its_configured_mirror_source() {
    let src = server_dir();
    let acme = signing_key("acme-2026");
    src.add_publisher(&acme, &[VENDOR]);
    let srv = Server::start(&src.config());
    let r1 = make_release(&acme, VENDOR, 1, &image(10_000, 1));
    rt().block_on(publish(&srv, &src, &r1));

    let m = server_dir();
    m.add_publisher(&acme, &[VENDOR]);
    let ca = src.dir.path().join("tls/ca.pem");
    m.edit(|t| {
        format!(
            "{t}\n[[mirrors]]\nfrom = \"{}\"\nca_file = \"{}\"\ninterval_secs = 1\n",
            srv.url,
            s(&ca)
        )
    });
    let mirror_srv = Server::start(&m.config());
    let r2 = make_release(&acme, VENDOR, 2, &image(10_000, 2));
    rt().block_on(async {
        publish(&srv, &src, &r2).await;
        let c = mirror_srv.client(&m, None);
        let mut ids = Vec::new();
        for _ in 0..300 {
            ids = c
                .list("")
                .await
                .unwrap()
                .releases
                .into_iter()
                .map(|r| r.release.release_id)
                .collect();
            if ids.len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(ids, vec![r1.release_id.clone(), r2.release_id.clone()]);
        let p = c
            .payload(&r2.release_id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(p, r2.blob);
    });
    assert!(mirror_srv.stop());
}
