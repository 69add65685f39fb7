//! Upload, verify-before-store and download against a real `update-server` process.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use update_server::client::{ClientError, UpdateServerClient, Uploaded};

async fn upload(c: &UpdateServerClient, env: &[u8], blob: &[u8]) -> Result<Uploaded, ClientError> {
    let body = Bytes::copy_from_slice(blob);
    let len = body.len() as u64;
    c.upload_stream(
        env.to_vec(),
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) }),
        len,
    )
    .await
}

fn refused(r: Result<Uploaded, ClientError>, status: u16, check: &str) {
    match r {
        Err(ClientError::Problem {
            status: s,
            check: c,
            ..
        }) => {
            assert_eq!((s, c.as_str()), (status, check));
        }
        other => panic!("expected {status} {check}, got {other:?}"),
    }
}

/// Blobs and envelopes under objects/ (staging must stay empty).
fn objects(sd: &ServerDir) -> Vec<String> {
    sd.stored_files()
}

#[test]
fn upload_verify_before_store_and_every_rejection() {
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    // Registered, but only for another vendor.
    let other = signing_key("other-vendor-key");
    sd.add_publisher(&other, &[OTHER_VENDOR]);
    // Small blob limit for the oversized test.
    sd.edit(|t| t.replace("max_blob_bytes = 4294967296", "max_blob_bytes = 1048576"));
    let srv = Server::start(&sd.config());
    let rt = rt();
    let good = sd.publisher_token();
    let c = srv.client(&sd, Some(good.clone()));

    rt.block_on(async {
        let rel = make_release(&acme, VENDOR, 5, &image(100_000, 1));

        // No token, a token from an unknown signer, a token without the scope, a token for
        // another product.
        refused(
            upload(&srv.client(&sd, None), &rel.envelope, &rel.blob).await,
            401,
            "invalid-token",
        );
        let stranger = common::server_dir();
        let forged = stranger.publisher_token();
        refused(
            upload(&srv.client(&sd, Some(forged)), &rel.envelope, &rel.blob).await,
            401,
            "invalid-token",
        );
        refused(
            upload(
                &srv.client(
                    &sd,
                    Some(sd.token("releases:read", &[&format!("{VENDOR}/{CLASS}")])),
                ),
                &rel.envelope,
                &rel.blob,
            )
            .await,
            403,
            "insufficient-scope",
        );
        refused(
            upload(
                &srv.client(
                    &sd,
                    Some(sd.token("releases:write", &[&format!("{OTHER_VENDOR}/{CLASS}")])),
                ),
                &rel.envelope,
                &rel.blob,
            )
            .await,
            403,
            "product-not-granted",
        );

        // Impostor: signed with another key under the registered kid.
        let impostor = signing_key("acme-2026");
        let bad = make_release(&impostor, VENDOR, 5, &image(1000, 2));
        refused(
            upload(&c, &bad.envelope, &bad.blob).await,
            422,
            "signature-invalid",
        );
        // Unregistered key.
        let unknown = signing_key("nobody");
        let bad = make_release(&unknown, VENDOR, 5, &image(1000, 3));
        refused(
            upload(&c, &bad.envelope, &bad.blob).await,
            422,
            "untrusted-signer",
        );
        // Registered key, vendor it may not publish for (token allows every product).
        let wildcard = srv.client(&sd, Some(sd.token("releases:write", &["*"])));
        let bad = make_release(&other, VENDOR, 5, &image(1000, 4));
        refused(
            upload(&wildcard, &bad.envelope, &bad.blob).await,
            422,
            "signer-not-authorized",
        );
        // Not an envelope.
        refused(
            upload(&c, b"\x01\x02", &rel.blob).await,
            400,
            "malformed-envelope",
        );
        // Blob that does not match: one flipped bit, one byte short, one byte long.
        let mut flipped = rel.blob.clone();
        flipped[500] ^= 1;
        refused(
            upload(&c, &rel.envelope, &flipped).await,
            422,
            "ciphertext-digest-mismatch",
        );
        refused(
            upload(&c, &rel.envelope, &rel.blob[..rel.blob.len() - 1]).await,
            422,
            "ciphertext-digest-mismatch",
        );
        let mut longer = rel.blob.clone();
        longer.push(0);
        refused(
            upload(&c, &rel.envelope, &longer).await,
            422,
            "ciphertext-digest-mismatch",
        );
        // Oversized: the signed size is above max_blob_bytes.
        let big = make_release(&acme, VENDOR, 6, &image(1_200_000, 5));
        refused(
            upload(&c, &big.envelope, &big.blob).await,
            413,
            "payload-too-large",
        );
        assert!(
            objects(&sd).is_empty(),
            "rejections left {:?}",
            objects(&sd)
        );

        // Accepted; a retry is idempotent.
        let up = upload(&c, &rel.envelope, &rel.blob).await.unwrap();
        assert!(up.created);
        assert_eq!(up.release.release_id, rel.release_id);
        assert_eq!(up.release.sequence, 5);
        let again = upload(&c, &rel.envelope, &rel.blob).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.release, up.release);
        // A retry with a tampered blob is still refused.
        refused(
            upload(&c, &rel.envelope, &flipped).await,
            422,
            "ciphertext-digest-mismatch",
        );

        // Same vendor/class/sequence, different content.
        let twin = make_release(&acme, VENDOR, 5, &image(1000, 9));
        refused(
            upload(&c, &twin.envelope, &twin.blob).await,
            409,
            "sequence-conflict",
        );
        // A newer release is fine; then replaying an older sequence is refused.
        let newer = make_release(&acme, VENDOR, 7, &image(2000, 7));
        assert!(
            upload(&c, &newer.envelope, &newer.blob)
                .await
                .unwrap()
                .created
        );
        let older = make_release(&acme, VENDOR, 6, &image(2000, 6));
        refused(
            upload(&c, &older.envelope, &older.blob).await,
            409,
            "rollback",
        );

        let mut files = objects(&sd);
        files.retain(|f| !f.starts_with("blobs/") && !f.starts_with("envelopes/"));
        assert!(files.is_empty(), "unexpected objects {files:?}");
        assert_eq!(objects(&sd).len(), 4, "{:?}", objects(&sd));

        // Listing with filters and ICS metadata.
        let all = c.list("").await.unwrap().releases;
        assert_eq!(all.len(), 2);
        let l = c
            .list(&format!(
                "vendor-id={VENDOR}&class-id={CLASS}&min-sequence=6"
            ))
            .await
            .unwrap()
            .releases;
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].release.release_id, newer.release_id);
        let ics = l[0].release.ics.clone().unwrap();
        assert_eq!(ics.update_type, "T2");
        assert_eq!(ics.categories, vec!["security".to_string()]);
        assert_eq!(ics.cves, vec!["CVE-2026-0001".to_string()]);
        assert_eq!(l[0].release.version.as_deref(), Some("1.0.7"));
        assert!(
            c.list(&format!("vendor-id={OTHER_VENDOR}"))
                .await
                .unwrap()
                .releases
                .is_empty()
        );

        // Envelope comes back byte for byte.
        assert_eq!(
            c.envelope(&rel.release_id, 1 << 20).await.unwrap(),
            rel.envelope
        );

        // Revoking the key while the server runs stops its next upload.
        run_ok(&[
            "publishers",
            "revoke",
            "--config",
            s(&sd.config()),
            "--kid",
            "acme-2026",
        ]);
        let listed: serde_json::Value = serde_json::from_str(&run_ok(&[
            "publishers",
            "list",
            "--config",
            s(&sd.config()),
            "--json",
        ]))
        .unwrap();
        let acme_entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kid"] == "acme-2026")
            .unwrap();
        assert!(acme_entry["revoked_at"].is_u64(), "{listed}");
        let after = make_release(&acme, VENDOR, 8, &image(2000, 8));
        refused(
            upload(&c, &after.envelope, &after.blob).await,
            422,
            "signer-revoked",
        );
    });
    assert!(srv.stop(), "server did not stop cleanly");
}

#[test]
fn range_etag_and_caching() {
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    let srv = Server::start(&sd.config());
    let rt = rt();
    let c = srv.client(&sd, Some(sd.publisher_token()));
    rt.block_on(async {
        let rel = make_release(&acme, VENDOR, 1, &image(300_000, 11));
        upload(&c, &rel.envelope, &rel.blob).await.unwrap();
        let sha = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(&rel.blob))
        };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&sd.ca()).unwrap())
            .build()
            .unwrap();
        let url = format!("{}/v1/releases/{}/payload", srv.url, rel.release_id);
        let n = rel.blob.len();

        let full = http.get(&url).send().await.unwrap();
        assert_eq!(full.status(), 200);
        let h = full.headers().clone();
        assert_eq!(h["etag"], format!("\"{sha}\""));
        assert_eq!(h["accept-ranges"], "bytes");
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
        assert_eq!(full.bytes().await.unwrap(), rel.blob);

        for (range, a, b) in [
            ("bytes=10-19".to_string(), 10, 20),
            ("bytes=-100".to_string(), n - 100, n),
            (format!("bytes={}-", n - 5), n - 5, n),
            ("bytes=299990-400000".to_string(), 299_990, n),
        ] {
            let r = http.get(&url).header("range", &range).send().await.unwrap();
            assert_eq!(r.status(), 206, "{range}");
            assert_eq!(
                r.headers()["content-range"],
                format!("bytes {}-{}/{n}", a, b - 1),
                "{range}"
            );
            assert_eq!(r.bytes().await.unwrap(), &rel.blob[a..b], "{range}");
        }
        let r = http
            .get(&url)
            .header("range", format!("bytes={n}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["content-range"], format!("bytes */{n}"));
        // If-Range with another validator: the whole payload.
        let r = http
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Conditional GET.
        let r = http
            .get(&url)
            .header("if-none-match", format!("\"{sha}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        // The API description.
        let spec: serde_json::Value = http
            .get(format!("{}/v1/openapi.json", srv.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(spec["paths"]["/v1/releases/{id}/payload"].is_object());
        // Unknown release: problem details.
        let r = http
            .get(format!(
                "{}/v1/releases/{}/payload",
                srv.url,
                "0".repeat(64)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    });
}

#[test]
fn downloads_need_a_token_when_configured() {
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    sd.edit(|t| t.replace("download = \"public\"", "download = \"token\""));
    let srv = Server::start(&sd.config());
    rt().block_on(async {
        let rel = make_release(&acme, VENDOR, 1, &image(1000, 1));
        upload(
            &srv.client(&sd, Some(sd.publisher_token())),
            &rel.envelope,
            &rel.blob,
        )
        .await
        .unwrap();
        let anon = srv.client(&sd, None);
        match anon.list("").await {
            Err(e) => assert_eq!(e.check(), Some("invalid-token")),
            Ok(_) => panic!("anonymous list allowed"),
        }
        let reader = srv.client(&sd, Some(sd.token("releases:read", &[])));
        assert_eq!(reader.list("").await.unwrap().releases.len(), 1);
    });
}

#[test]
fn interrupted_upload_leaves_nothing_behind() {
    let sd = server_dir();
    let acme = signing_key("acme-2026");
    sd.add_publisher(&acme, &[VENDOR]);
    let srv = Server::start(&sd.config());
    let token = sd.publisher_token();
    rt().block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let rel = make_release(&acme, VENDOR, 1, &image(2_000_000, 3));
        let boundary = "XtestboundaryX";
        let mut head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"envelope\"\r\nContent-Type: application/suit-envelope+cose\r\n\r\n"
        )
        .into_bytes();
        head.extend_from_slice(&rel.envelope);
        head.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let total = head.len() + rel.blob.len() + tail.len();

        let mut roots = rustls::RootCertStore::empty();
        for c in <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&sd.ca()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let addr = srv.url.trim_start_matches("https://").to_string();
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let req = format!(
            "POST /v1/releases HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.write_all(&head).await.unwrap();
        // Half of the payload, then the client goes away.
        tls.write_all(&rel.blob[..rel.blob.len() / 2]).await.unwrap();
        tls.flush().await.unwrap();
        tls.shutdown().await.unwrap();
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), tls.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        // The connection may be gone before the answer; if an answer came, it names the check.
        if !text.is_empty() {
            assert!(text.contains("incomplete-upload"), "{text}");
        }
        // Nothing stored, and the server still accepts the complete upload.
        let c = srv.client(&sd, Some(token.clone()));
        for _ in 0..100 {
            if sd.stored_files().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(sd.stored_files().is_empty(), "{:?}", sd.stored_files());
        assert!(c.list("").await.unwrap().releases.is_empty());
        assert!(upload(&c, &rel.envelope, &rel.blob).await.unwrap().created);
    });
}
