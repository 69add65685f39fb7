//! Attacks on the wire against the real `key-repo` binary, one test per attack (issue 13).
//! Item 3: the body of a request is never read, nor validated, before its token is; HSTS on
//! every response. Item 5: a key is revoked only by the client that stored it (or an
//! administrator); a refusal never tells whether another product's kid exists; the tokens
//! of a removed or disabled client stop working at once. Item 4: anonymous refusals are
//! audited at a bounded rate; a key read is on disk in the audit log before the key leaves.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{
    Creds, PRODUCT_A, PRODUCT_B, Repo, audit_records, b64, cose_key, random_key, run_ok, send,
};
use foundations::Problem;

/// A body of `total` bytes that counts what the client actually pulled from it.
fn counted_body(total: u64, pulled: Arc<AtomicU64>) -> reqwest::Body {
    const CHUNK: u64 = 256 << 10;
    let chunk = vec![b'{'; CHUNK as usize];
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (chunk, pulled) = (chunk.clone(), pulled.clone());
        async move {
            (sent < total).then(|| {
                pulled.fetch_add(CHUNK, Ordering::Relaxed);
                (Ok::<_, std::io::Error>(chunk), sent + CHUNK)
            })
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Resident memory of a process (Linux `/proc`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn client(ca: &[u8], http1: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap());
    if http1 { b.http1_only() } else { b }.build().unwrap()
}

#[tokio::test]
async fn unauthenticated_large_upload_refused_before_body_read() {
    let repo = Repo::init();
    let srv = repo.start();
    let before = rss(srv.child.id());
    for http1 in [false, true] {
        let pulled = Arc::new(AtomicU64::new(0));
        let r = client(&repo.ca_pem(), http1)
            .put(format!("{}/v1/keys/k1", srv.url))
            .header("content-type", "application/json")
            .body(counted_body(1 << 30, pulled.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "invalid-token");
        if !http1 {
            // HTTP/2 flow control: the client could push only what the server read.
            let sent = pulled.load(Ordering::Relaxed);
            assert!(sent < 64 << 20, "{sent} bytes taken");
        }
    }
    // HTTP/1.1 has no flow control: the refused body is read and discarded (for a bounded
    // time) so the client sees the answer; the memory never holds it.
    let grown = rss(srv.child.id()).saturating_sub(before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");
}

#[tokio::test]
async fn anonymous_invalid_body_gets_401_not_422() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    for token in [None, Some("not.a.token")] {
        let mut rb = http
            .put(format!("{}/v1/keys/k1", srv.url))
            .header("content-type", "application/json")
            .body("{\"product\": 42}");
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "invalid-token");
    }
    // Nothing was stored: a publisher of the product finds no key.
    let t = repo.forge(|_| {});
    let r = http
        .get(format!("{}/v1/keys/k1/meta", srv.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn oversized_upload_gets_problem_413() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let t = repo.forge(|_| {});
    for http1 in [false, true] {
        let c = client(&repo.ca_pem(), http1);
        let body = format!(
            "{{\"product\":\"{PRODUCT_A}\",\"cose_key\":\"{}\"}}",
            "A".repeat(64 << 10)
        );
        let r = c
            .put(format!("{}/v1/keys/k1", srv.url))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "http1={http1}");
        let p: Problem = r.json().await.unwrap();
        assert_eq!(p.slug(), "payload-too-large");
    }
    let r = http
        .get(format!("{}/v1/keys/k1/meta", srv.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "something was stored");
}

#[tokio::test]
async fn hsts_header_present() {
    let repo = Repo::init();
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    for path in ["/healthz", "/.well-known/jwks.json", "/v1/keys/k1", "/nope"] {
        let r = http.get(format!("{}{path}", srv.url)).send().await.unwrap();
        assert_eq!(
            r.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Issue 13 items 4 and 5: authorisation by owner, withdrawn clients, no disclosure of other
// products' kids, bounded audit of anonymous refusals, durable key-read records.

/// Tokens of the built-in server for each client, in order.
async fn tokens(http: &reqwest::Client, url: &str, clients: &[&Creds]) -> Vec<String> {
    let mut out = Vec::new();
    for c in clients {
        out.push(common::token(http, url, c).await);
    }
    out
}

async fn put(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    kid: &str,
    product: &str,
    key: &[u8],
) -> (u16, String, String) {
    send(
        http.put(format!("{url}/v1/keys/{kid}"))
            .bearer_auth(token)
            .json(&serde_json::json!({"product": product, "cose_key": b64(key)})),
    )
    .await
}

/// Status, content type, `WWW-Authenticate` and body: everything a client can compare.
async fn answer(req: reqwest::RequestBuilder) -> (u16, String, String, String) {
    let r = req.send().await.unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (status, ct, www) = (
        r.status().as_u16(),
        h("content-type"),
        h("www-authenticate"),
    );
    (status, ct, www, r.text().await.unwrap())
}

fn slug(body: &str) -> String {
    serde_json::from_str::<Problem>(body)
        .map(|p| p.slug().to_string())
        .unwrap_or_default()
}

/// Records of `action` on `kid`.
fn of<'a>(
    recs: &'a [serde_json::Value],
    action: &'a str,
    kid: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    recs.iter()
        .filter(move |r| r["action"] == action && r["kid"] == kid)
}

fn clients_cmd(repo: &Repo, verb: &str, who: &str) {
    run_ok(&[
        "clients",
        verb,
        "--config",
        repo.config().to_str().unwrap(),
        who,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_cannot_revoke_another_publishers_key() {
    let repo = Repo::init();
    let owner = repo.add_client("owner", "publisher", &[PRODUCT_A]);
    let rival = repo.add_client("rival", "publisher", &[PRODUCT_A]);
    let disp = repo.add_client("disp", "dispatcher", &[PRODUCT_A]);
    let aud = repo.add_client("aud", "auditor", &[]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = srv.url.as_str();
    let t = tokens(&http, url, &[&owner, &rival, &disp, &aud, &repo.admin]).await;
    let (t_owner, t_rival, t_disp, t_aud, t_admin) = (&t[0], &t[1], &t[2], &t[3], &t[4]);
    let key = cose_key(b"rel-1", &random_key());
    assert_eq!(
        put(&http, url, t_owner, "rel-1", PRODUCT_A, &key).await.0,
        201
    );

    // The attack: another publisher of the same product revokes the key.
    let (s, _, b) = send(
        http.post(format!("{url}/v1/keys/rel-1/revoke"))
            .bearer_auth(t_rival),
    )
    .await;
    assert_eq!((s, slug(&b).as_str()), (403, "not-owner"), "{b}");
    // Nor does it pass for the owner by storing the same key again.
    assert_eq!(
        put(&http, url, t_rival, "rel-1", PRODUCT_A, &key).await.0,
        409
    );

    // Nothing changed: the key is active, still the owner's, and the dispatcher gets it.
    let (s, _, b) = send(
        http.get(format!("{url}/v1/keys/rel-1/meta"))
            .bearer_auth(t_owner),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let meta: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(meta["state"], "active");
    assert_eq!(meta["created_by"], owner.id.as_str());
    assert!(meta.get("revoked_by").is_none());
    let (s, _, b) = send(http.get(format!("{url}/v1/keys/rel-1")).bearer_auth(t_disp)).await;
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["cose_key"], b64(&key).as_str());

    let recs = audit_records(&http, url, t_aud).await;
    let refused: Vec<_> = of(&recs, "key.revoke", "rel-1").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["result"], "denied:not_owner");
    assert_eq!(refused[0]["actor"], rival.id.as_str());

    // Whom revocation is for: the owner, and an administrator for any key.
    let key2 = cose_key(b"rel-2", &random_key());
    assert_eq!(
        put(&http, url, t_owner, "rel-2", PRODUCT_A, &key2).await.0,
        201
    );
    let (s, _, b) = send(
        http.post(format!("{url}/v1/keys/rel-2/revoke"))
            .bearer_auth(t_admin),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = send(
        http.post(format!("{url}/v1/keys/rel-1/revoke"))
            .bearer_auth(t_owner),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["revoked_by"], owner.id.as_str());
}

/// A dispatcher reads a key, its client is withdrawn with `verb` (`remove` or `disable`),
/// and its token — verified and cached by the server a moment ago — is refused at once.
async fn withdrawn_client_token_stops_at_once(verb: &str) {
    let repo = Repo::init();
    let publ = repo.add_client("publ", "publisher", &[PRODUCT_A]);
    let disp = repo.add_client("disp", "dispatcher", &[PRODUCT_A]);
    let aud = repo.add_client("aud", "auditor", &[]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = srv.url.as_str();
    let t = tokens(&http, url, &[&publ, &disp, &aud]).await;
    let (t_pub, t_disp, t_aud) = (&t[0], &t[1], &t[2]);
    let key = cose_key(b"k1", &random_key());
    assert_eq!(put(&http, url, t_pub, "k1", PRODUCT_A, &key).await.0, 201);
    let (s, _, _) = send(http.get(format!("{url}/v1/keys/k1")).bearer_auth(t_disp)).await;
    assert_eq!(s, 200);

    clients_cmd(&repo, verb, "disp");

    // The very next request with the same token: refused, no key material.
    for path in ["/v1/keys/k1", "/v1/keys/k1/meta"] {
        let (s, _, b) = send(http.get(format!("{url}{path}")).bearer_auth(t_disp)).await;
        assert_eq!(
            (s, slug(&b).as_str()),
            (401, "invalid-token"),
            "{verb} {path}"
        );
        assert!(!b.contains(&b64(&key)), "{b}");
    }
    // And no new token.
    let (s, _, _) = send(
        http.post(format!("{url}/oauth/token"))
            .basic_auth(&disp.id, Some(&disp.secret))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(s, 401, "{verb}");

    let recs = audit_records(&http, url, t_aud).await;
    let reads: Vec<_> = of(&recs, "key.read", "k1").collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0]["result"], "ok");
    assert_eq!(reads[1]["result"], "denied:invalid_token");
    assert_eq!(reads[1]["actor"], disp.id.as_str());

    if verb == "disable" {
        // Enabled again: the old token stays refused, a new one works.
        clients_cmd(&repo, "enable", "disp");
        let (s, _, _) = send(http.get(format!("{url}/v1/keys/k1")).bearer_auth(t_disp)).await;
        assert_eq!(s, 401, "a token issued before the client was disabled");
        let fresh = common::token(&http, url, &disp).await;
        let (s, _, b) = send(http.get(format!("{url}/v1/keys/k1")).bearer_auth(&fresh)).await;
        assert_eq!(s, 200, "{b}");
    }
    assert!(srv.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_client_token_stops_at_once() {
    withdrawn_client_token_stops_at_once("remove").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_client_token_stops_at_once() {
    withdrawn_client_token_stops_at_once("disable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_name_of_another_product_is_not_disclosed() {
    let repo = Repo::init();
    let pub_a = repo.add_client("pub-a", "publisher", &[PRODUCT_A]);
    let pub_b = repo.add_client("pub-b", "publisher", &[PRODUCT_B]);
    let disp_a = repo.add_client("disp-a", "dispatcher", &[PRODUCT_A]);
    let aud = repo.add_client("aud", "auditor", &[]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = srv.url.as_str();
    let t = tokens(&http, url, &[&pub_a, &pub_b, &disp_a, &aud]).await;
    let (t_a, t_b, t_disp_a, t_aud) = (&t[0], &t[1], &t[2], &t[3]);
    // Product B holds one active and one revoked kid.
    let key_b = cose_key(b"b-next-release", &random_key());
    assert_eq!(
        put(&http, url, t_b, "b-next-release", PRODUCT_B, &key_b)
            .await
            .0,
        201
    );
    assert_eq!(
        put(&http, url, t_b, "b-old", PRODUCT_B, &key_b).await.0,
        201
    );
    let (s, _, _) = send(
        http.post(format!("{url}/v1/keys/b-old/revoke"))
            .bearer_auth(t_b),
    )
    .await;
    assert_eq!(s, 200);

    // Writes. The reference: a free name the caller may not use (a product not granted).
    let key_a = cose_key(b"x", &random_key());
    let put_req = |kid: &str, product: &str| {
        http.put(format!("{url}/v1/keys/{kid}"))
            .bearer_auth(t_a)
            .json(&serde_json::json!({"product": product, "cose_key": b64(&key_a)}))
    };
    let reference = answer(put_req("never-written", PRODUCT_B)).await;
    assert_eq!(
        (reference.0, slug(&reference.3).as_str()),
        (403, "product-not-granted")
    );
    for (kid, product) in [
        ("b-next-release", PRODUCT_A),
        ("b-next-release", PRODUCT_B),
        ("b-old", PRODUCT_A),
    ] {
        let got = answer(put_req(kid, product)).await;
        assert_eq!(got, reference, "PUT {kid} for {product}");
    }

    // Reads, inspection, revocation. The reference: a kid nobody holds.
    let reqs = |kid: &str, token: &str| {
        [
            http.get(format!("{url}/v1/keys/{kid}")).bearer_auth(token),
            http.get(format!("{url}/v1/keys/{kid}/meta"))
                .bearer_auth(token),
            http.post(format!("{url}/v1/keys/{kid}/revoke"))
                .bearer_auth(token),
        ]
    };
    for token in [t_a, t_disp_a] {
        for (held, free) in reqs("b-next-release", token)
            .into_iter()
            .zip(reqs("never-written", token))
        {
            let (held, free) = (answer(held).await, answer(free).await);
            assert_eq!(held, free);
            assert!(matches!(held.0, 403 | 404), "{held:?}");
        }
    }
    // For the caller with the read scope, that is 404 not-found.
    let (s, _, _, b) = answer(reqs("b-next-release", t_disp_a).into_iter().next().unwrap()).await;
    assert_eq!((s, slug(&b).as_str()), (404, "not-found"));

    // Nothing was changed or created; product B's key is intact.
    let (s, _, b) = send(
        http.get(format!("{url}/v1/keys/b-next-release/meta"))
            .bearer_auth(t_b),
    )
    .await;
    assert_eq!(s, 200);
    let meta: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (meta["product"].as_str(), meta["state"].as_str()),
        (Some(PRODUCT_B), Some("active"))
    );
    assert_eq!(meta["created_by"], pub_b.id.as_str());
    let (s, _, _) = send(
        http.get(format!("{url}/v1/keys/never-written/meta"))
            .bearer_auth(t_a),
    )
    .await;
    assert_eq!(s, 404);
    // The audit trail says what the answers do not.
    let recs = audit_records(&http, url, t_aud).await;
    let creates: Vec<_> = of(&recs, "key.create", "b-next-release")
        .filter(|r| r["actor"] == pub_a.id.as_str())
        .collect();
    assert_eq!(creates.len(), 2);
    assert!(
        creates
            .iter()
            .all(|r| r["result"] == "denied:product_not_granted")
    );
    let held: Vec<_> = creates
        .iter()
        .filter(|r| r["reason"] == "kid held by another product")
        .collect();
    assert_eq!(held.len(), 1, "{creates:?}");
    assert_eq!(held[0]["product"], PRODUCT_A);
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            // Allocated bytes: sled writes segments at fixed offsets (a file with holes).
            std::os::unix::fs::MetadataExt::blocks(&m) * 512
        };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_flood_does_not_grow_the_audit_log_unbounded() {
    const N: usize = 4000;
    let repo = Repo::init();
    let publ = repo.add_client("publ", "publisher", &[PRODUCT_A]);
    let aud = repo.add_client("aud", "auditor", &[]);
    let data = repo.path().join("data");
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let t = tokens(&http, &srv.url, &[&publ, &aud]).await;
    let key = cose_key(b"k1", &random_key());
    assert_eq!(
        put(&http, &srv.url, &t[0], "k1", PRODUCT_A, &key).await.0,
        201
    );
    let head = |recs: &[serde_json::Value]| recs.last().unwrap()["seq"].as_u64().unwrap();
    assert!(srv.stop().success());
    // Control: a run without the flood (sled grows by whole segments at a restart).
    let size_start = dir_size(&data);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let t_aud = common::token(&http, &srv.url, &aud).await;
    let before = head(&audit_records(&http, &srv.url, &t_aud).await);
    assert!(srv.stop().success());
    let size_before = dir_size(&data);
    let control = size_before.saturating_sub(size_start);

    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = srv.url.clone();
    let forged = {
        // Signed by a key of the attacker's: the signature does not verify.
        let other = foundations::token::TokenSigner::generate().unwrap();
        let mut c = serde_json::from_slice::<foundations::token::Claims>(
            &foundations::b64url_decode(t[0].split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        c.exp += 60;
        other.sign(&c).unwrap()
    };
    let expired = repo.forge(|c| {
        c.iat -= 7200;
        c.nbf = Some(c.iat);
        c.exp = c.iat + 300;
    });
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        let (forged, expired) = (forged.clone(), expired.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u64;
            for i in (worker..N).step_by(8) {
                let req = match i % 4 {
                    0 => http.get(format!("{url}/v1/keys/k1")),
                    1 => http.get(format!("{url}/v1/keys/k1")).bearer_auth(&forged),
                    2 => http
                        .get(format!("{url}/v1/keys/k{i}/meta"))
                        .bearer_auth(&expired),
                    _ => http
                        .put(format!("{url}/v1/keys/k{i}"))
                        .bearer_auth("not.a.token")
                        .body("{}"),
                };
                let s = req.send().await.unwrap().status().as_u16();
                assert_eq!(s, 401);
                refused += 1;
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert_eq!(refused, N as u64);

    // The audit trail grew by a bounded number of records that still count every refusal.
    let t_aud = common::token(&http, &url, &aud).await;
    let recs = audit_records(&http, &url, &t_aud).await;
    let flood: Vec<_> = recs
        .iter()
        .filter(|r| r["seq"].as_u64().unwrap() > before && r["actor"] == "anonymous")
        .collect();
    assert!(flood.len() <= 4, "{} records for {N} refusals", flood.len());
    let counted: u64 = flood.iter().map(|r| r["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(counted, N as u64, "{flood:?}");
    assert!(flood.iter().all(|r| r["result"] == "denied:invalid_token"));
    let grown = recs.len() as u64 - before - 1;
    assert!(grown <= 8, "{grown} records added in all");

    assert!(srv.stop().success());
    // One record per refusal took ~540 bytes of database each (issue 13: 20,000 → 11 MB):
    // the flood may not grow it by more than a run without it, give or take 1/8 of that.
    let size_after = dir_size(&data);
    let growth = size_after.saturating_sub(size_before);
    assert!(
        growth <= control + (N as u64 * 540) / 8,
        "database grew by {growth} bytes ({size_before} → {size_after}), {control} without the flood"
    );
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_read_is_audited_before_the_key_is_returned() {
    // The signal: the server is killed (SIGKILL) right after the key arrives; the record of
    // the read must survive, since it was on disk before the key left. Queued records
    // (flushed every 200 ms) do not survive this.
    const ROUNDS: usize = 3;
    let repo = Repo::init();
    let publ = repo.add_client("publ", "publisher", &[PRODUCT_A]);
    let disp = repo.add_client("disp", "dispatcher", &[PRODUCT_A]);
    let aud = repo.add_client("aud", "auditor", &[]);
    let key = cose_key(b"k1", &random_key());
    for round in 0..ROUNDS {
        let srv = repo.start();
        let http = srv.http(&repo.ca_pem());
        if round == 0 {
            let t_pub = common::token(&http, &srv.url, &publ).await;
            assert_eq!(
                put(&http, &srv.url, &t_pub, "k1", PRODUCT_A, &key).await.0,
                201
            );
        }
        let t_disp = common::token(&http, &srv.url, &disp).await;
        let (s, _, b) = send(
            http.get(format!("{}/v1/keys/k1", srv.url))
                .bearer_auth(&t_disp),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert!(b.contains(&b64(&key)));
        srv.kill9();
    }
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let t_aud = common::token(&http, &srv.url, &aud).await;
    let recs = audit_records(&http, &srv.url, &t_aud).await;
    let reads = of(&recs, "key.read", "k1")
        .filter(|r| r["result"] == "ok" && r["actor"] == disp.id.as_str())
        .count();
    assert_eq!(reads, ROUNDS, "key reads whose record was lost in a crash");
    assert!(srv.stop().success());
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");
}
