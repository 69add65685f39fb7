//! End-to-end tests against the real binary over TLS.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use common::*;
use key_repo::client::{ClientConfig, ClientError, KeyRepoClient};

fn typed(srv: &Server, repo: &Repo, c: &Creds) -> KeyRepoClient {
    KeyRepoClient::new(ClientConfig {
        base_url: srv.url.clone(),
        client_id: c.id.clone(),
        client_secret: c.secret.clone(),
        ca_pem: Some(repo.ca_pem()),
        scopes: vec![],
    })
    .unwrap()
}

fn status(e: ClientError) -> u16 {
    e.status()
        .unwrap_or_else(|| panic!("not a problem response: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_with_typed_client_and_audit() {
    let repo = Repo::init();
    let p = repo.add_client("publisher", "publisher", &[PRODUCT_A]);
    let d = repo.add_client("dispatcher", "dispatcher", &[PRODUCT_A]);
    let a = repo.add_client("auditor", "auditor", &[]);
    let srv = repo.start();
    let publ = typed(&srv, &repo, &p);
    let disp = typed(&srv, &repo, &d);
    let auditor = typed(&srv, &repo, &a);

    let material = random_key();
    let key = cose_key(b"rel-1", &material);
    let meta = publ.put_key("rel-1", PRODUCT_A, &key).await.unwrap();
    assert_eq!(meta.state, "active");
    assert_eq!(meta.created_by, p.id);
    // Idempotent retry, then a conflicting write.
    publ.put_key("rel-1", PRODUCT_A, &key).await.unwrap();
    let other = cose_key(b"rel-1", &random_key());
    assert_eq!(
        status(publ.put_key("rel-1", PRODUCT_A, &other).await.unwrap_err()),
        409
    );
    // Not a symmetric COSE_Key.
    assert_eq!(
        status(
            publ.put_key("rel-bad", PRODUCT_A, b"\xa1\x01\x02")
                .await
                .unwrap_err()
        ),
        400
    );

    for _ in 0..3 {
        let got = disp.get_key("rel-1").await.unwrap();
        assert_eq!(got.cose_key, key);
        assert_eq!(got.product, PRODUCT_A);
    }
    // Tokens are cached: one token request per client so far.
    assert_eq!(disp.token_fetches(), 1);
    assert_eq!(publ.token_fetches(), 1);
    assert_eq!(status(disp.get_key("nope").await.unwrap_err()), 404);
    let m = disp.key_meta("rel-1").await.unwrap();
    assert_eq!(m.product, PRODUCT_A);

    let r = publ.revoke("rel-1").await.unwrap();
    assert_eq!(r.state, "revoked");
    assert_eq!(status(disp.get_key("rel-1").await.unwrap_err()), 410);
    assert_eq!(
        status(publ.put_key("rel-1", PRODUCT_A, &key).await.unwrap_err()),
        410
    );

    // The admin (from init) may revoke any product's key; a dispatcher may not revoke.
    let admin = typed(&srv, &repo, &repo.admin);
    publ.put_key("rel-2", PRODUCT_A, &key).await.unwrap();
    assert_eq!(status(disp.revoke("rel-2").await.unwrap_err()), 403);
    assert_eq!(
        admin.revoke("rel-2").await.unwrap().revoked_by.as_deref(),
        Some(repo.admin.id.as_str())
    );

    let page = auditor.audit(0, 1000).await.unwrap();
    let recs = page["records"].as_array().unwrap();
    let count = |action: &str, result: &str| {
        recs.iter()
            .filter(|r| r["action"] == action && r["result"] == result && r["kid"] == "rel-1")
            .count()
    };
    assert_eq!(count("key.create", "created"), 1);
    assert_eq!(count("key.create", "unchanged"), 1);
    assert_eq!(count("key.create", "conflict"), 1);
    assert_eq!(count("key.read", "ok"), 3);
    assert_eq!(count("key.revoke", "ok"), 1);
    assert_eq!(count("key.read", "gone"), 1);
    assert!(
        recs.iter()
            .all(|r| r["time"].as_u64().unwrap() > 1_600_000_000)
    );

    assert!(srv.stop().success(), "graceful shutdown exit status");
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit chain OK"), "{out}");

    // At rest: no database file contains the key material.
    let mut files = 0;
    for e in walk(&repo.path().join("data")) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == material),
            "{} holds the key",
            e.display()
        );
        files += 1;
    }
    assert!(files > 0);

    // Tamper with one audit record: verify must fail with exit code 3.
    {
        let db = sled::open(repo.path().join("data")).unwrap();
        let t = db.open_tree("audit").unwrap();
        let (k, v) = t.iter().nth(3).unwrap().unwrap();
        let mut v = v.to_vec();
        let pos = v.iter().rposition(|&b| b == b'o').unwrap();
        v[pos] = b'0';
        t.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let (code, out) = repo.audit_verify_after_local_open();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("BROKEN"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_audit_record_is_detected() {
    let repo = Repo::init();
    let p = repo.add_client("publisher", "publisher", &[PRODUCT_A]);
    let srv = repo.start();
    let publ = typed(&srv, &repo, &p);
    for i in 0..4 {
        publ.put_key(&format!("k{i}"), PRODUCT_A, &cose_key(b"k", &random_key()))
            .await
            .unwrap();
    }
    assert!(srv.stop().success());
    assert_eq!(repo.audit_verify().0, 0);
    {
        let db = sled::open(repo.path().join("data")).unwrap();
        let t = db.open_tree("audit").unwrap();
        t.remove(2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (code, out) = repo.audit_verify_after_local_open();
    assert_eq!(code, 3, "{out}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_metadata_and_limits() {
    let repo = Repo::init();
    let d = repo.add_client("dispatcher", "dispatcher", &[PRODUCT_A]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = &srv.url;

    // RFC 8414 metadata and JWKS agree with the signing key.
    let md: serde_json::Value = http
        .get(format!("{url}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["issuer"], repo.cfg().issuer.as_str());
    assert_eq!(md["grant_types_supported"][0], "client_credentials");
    let jwks: serde_json::Value = http
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"][0]["kid"],
        repo.signer().jwk().kid.clone().unwrap().as_str()
    );
    let api: serde_json::Value = http
        .get(format!("{url}/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/oauth/token",
        "/v1/keys/{kid}",
        "/v1/keys/{kid}/meta",
        "/v1/keys/{kid}/revoke",
        "/v1/audit",
    ] {
        assert!(
            api["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }

    // Token claims (RFC 9068).
    let tok = token(&http, url, &d).await;
    let payload = foundations::b64url_decode(tok.split('.').nth(1).unwrap()).unwrap();
    let c: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(c["client_id"], d.id.as_str());
    assert_eq!(c["scope"], "keys:read releases:read");
    assert_eq!(c["products"][0], PRODUCT_A);
    assert!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap() <= 300);
    assert!(c["jti"].is_string());

    // Wrong secret: 401 invalid_client, problem body.
    let (s, ct, b) = send(
        http.post(format!("{url}/oauth/token"))
            .basic_auth(&d.id, Some("wrong"))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!((s, ct.as_str()), (401, "application/problem+json"), "{b}");
    assert!(b.contains("invalid_client"));
    // Scope beyond the role.
    let (s, _, b) = send(
        http.post(format!("{url}/oauth/token"))
            .basic_auth(&d.id, Some(&d.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "keys:write"),
            ]),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("invalid_scope"));
    let (s, _, b) = send(
        http.post(format!("{url}/oauth/token"))
            .basic_auth(&d.id, Some(&d.secret))
            .form(&[("grant_type", "password")]),
    )
    .await;
    assert_eq!(s, 400);
    assert!(b.contains("unsupported_grant_type"));

    // Per-client rate limit (burst 10, 1/s) on successful authentications. Loop until it
    // applies (bounded), so a slow machine refilling the bucket cannot make this flaky.
    let mut ok = 0;
    let limited = loop {
        let (s, _, _) = send(
            http.post(format!("{url}/oauth/token"))
                .basic_auth(&d.id, Some(&d.secret))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
        assert!(s == 200 || s == 429, "{s}");
        if s == 429 {
            break true;
        }
        ok += 1;
        if ok > 60 {
            break false;
        }
    };
    assert!(limited, "per-client limit never applied");
    assert!(ok >= 8, "limited too early: after {ok}");

    // Body limit.
    let big = "x".repeat(200 * 1024);
    // Own connection: the server may close it after refusing the body unread.
    let (s, ct, _) = send(
        srv.http(&repo.ca_pem())
            .put(format!("{url}/v1/keys/big"))
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    assert!(s == 413 || s == 401 || s == 403, "{s}");
    assert_eq!(ct, "application/problem+json");

    // Per-address rate limit on the token endpoint (burst 30, 5/s), whatever the client.
    let mut limited = false;
    for _ in 0..300 {
        let (s, _, _) = send(
            http.post(format!("{url}/oauth/token"))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
        assert!(s == 401 || s == 429, "{s}");
        if s == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "per-address limit never applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_client_gets_no_token_and_foreign_ca_is_refused() {
    let repo = Repo::init();
    let d = repo.add_client("dispatcher", "dispatcher", &[PRODUCT_A]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    token(&http, &srv.url, &d).await;
    run_ok(&[
        "clients",
        "remove",
        "--config",
        repo.config().to_str().unwrap(),
        "dispatcher",
    ]);
    let (s, _, _) = send(
        http.post(format!("{}/oauth/token", srv.url))
            .basic_auth(&d.id, Some(&d.secret))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(s, 401);
    let removed = typed(&srv, &repo, &d);
    let e = removed.get_key("x").await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Token { reason, .. } if reason.contains("invalid_client")),
        "{e}"
    );

    // A client that trusts another repository's CA must not connect.
    let other = Repo::init();
    let c = KeyRepoClient::new(ClientConfig {
        base_url: srv.url.clone(),
        client_id: d.id.clone(),
        client_secret: d.secret.clone(),
        ca_pem: Some(other.ca_pem()),
        scopes: vec![],
    })
    .unwrap();
    let e = c.get_key("x").await.unwrap_err();
    assert!(matches!(e, ClientError::Token { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_refreshes_token_before_expiry() {
    let repo = Repo::init();
    let cfg = std::fs::read_to_string(repo.config()).unwrap();
    assert!(cfg.contains("lifetime_secs = 300"));
    std::fs::write(
        repo.config(),
        cfg.replace("lifetime_secs = 300", "lifetime_secs = 1"),
    )
    .unwrap();
    let p = repo.add_client("publisher", "publisher", &[PRODUCT_A]);
    let srv = repo.start();
    let publ = typed(&srv, &repo, &p);
    let first = publ.access_token().await.unwrap();
    assert_eq!(
        publ.access_token().await.unwrap(),
        first,
        "cached while fresh"
    );
    assert_eq!(publ.token_fetches(), 1);
    // The 1 s token is refreshed 20 % before it expires, i.e. after 0.8 s.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = publ.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(publ.token_fetches(), 2);
    publ.put_key("k", PRODUCT_A, &cose_key(b"k", &random_key()))
        .await
        .unwrap();
}

/// A client assertion (RFC 7523) signed by `key` for the built-in token endpoint.
fn assertion(
    repo: &Repo,
    key: &foundations::token::TokenSigner,
    sub: &str,
    jti: &str,
    typ: &str,
) -> String {
    let cfg = repo.cfg();
    let now = foundations::now_unix();
    let claims = foundations::token::Claims {
        iss: sub.into(),
        sub: Some(sub.into()),
        aud: foundations::token::Audience::One(format!("{}/oauth/token", cfg.issuer)),
        exp: now + 60,
        iat: now,
        nbf: None,
        jti: Some(jti.into()),
        client_id: None,
        scope: None,
        extra: Default::default(),
    };
    key.sign_typed(typ, &claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_client_authentication() {
    let repo = Repo::init();
    let key = foundations::token::TokenSigner::generate().unwrap();
    let jwk_path = repo.dir.path().join("client-jwk.json");
    std::fs::write(&jwk_path, serde_json::to_vec(key.jwk()).unwrap()).unwrap();
    let cfg = repo.config();
    let out = run_ok(&[
        "clients",
        "add",
        "--config",
        cfg.to_str().unwrap(),
        "--name",
        "jwt-disp",
        "--role",
        "dispatcher",
        "--product",
        PRODUCT_A,
        "--jwk-file",
        jwk_path.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["client_id"].as_str().unwrap().to_string();
    assert!(v.get("client_secret").is_none(), "{out}");
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let post = |a: String| {
        http.post(format!("{}/oauth/token", srv.url)).form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", a.as_str()),
        ])
    };
    let a1 = assertion(&repo, &key, &id, "jti-1", "JWT");
    let (s, _, b) = send(post(a1.clone())).await;
    assert_eq!(s, 200, "{b}");
    let tok: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(tok["scope"], "keys:read releases:read");
    // Replay of the same assertion.
    let (s, _, b) = send(post(a1)).await;
    assert_eq!(s, 401, "{b}");
    // Signed by another key.
    let other = foundations::token::TokenSigner::generate().unwrap();
    let (s, _, _) = send(post(assertion(&repo, &other, &id, "jti-2", "JWT"))).await;
    assert_eq!(s, 401);
    // An access-token-typed JWT is not a client assertion.
    let (s, _, _) = send(post(assertion(&repo, &key, &id, "jti-3", "at+jwt"))).await;
    assert_eq!(s, 401);
    // And a secret cannot be used for this client.
    let (s, _, _) = send(
        http.post(format!("{}/oauth/token", srv.url))
            .basic_auth(&id, Some(""))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(s, 401);
}
