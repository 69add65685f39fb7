//! Issue 8 item 8: every endpoint × every way a request can be unauthorised, against the
//! real binary. Each refusal must be a problem body with the right status, leak nothing, and
//! appear in the audit trail.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use common::*;
use foundations::token::Audience;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ep {
    Put,
    Get,
    Meta,
    Revoke,
    Audit,
}

impl Ep {
    fn action(self) -> &'static str {
        match self {
            Ep::Put => "key.create",
            Ep::Get => "key.read",
            Ep::Meta => "key.meta",
            Ep::Revoke => "key.revoke",
            Ep::Audit => "audit.read",
        }
    }
}

const ACTIVE: &str = "k-active";
const REVOKED: &str = "k-revoked";
const FRESH: &str = "k-never-written";

struct World {
    url: String,
    http: reqwest::Client,
    active_b64: String,
    auditor: String,
}

impl World {
    /// Sends `ep` with `token` (None: no Authorization header) against `kid`.
    async fn call(
        &self,
        ep: Ep,
        kid: &str,
        token: Option<&str>,
        product: &str,
    ) -> (u16, String, String) {
        let u = &self.url;
        let req = match ep {
            Ep::Put => self
                .http
                .put(format!("{u}/v1/keys/{kid}"))
                .json(&serde_json::json!({"product": product, "cose_key": b64(&cose_key(b"x", &random_key()))})),
            Ep::Get => self.http.get(format!("{u}/v1/keys/{kid}")),
            Ep::Meta => self.http.get(format!("{u}/v1/keys/{kid}/meta")),
            Ep::Revoke => self.http.post(format!("{u}/v1/keys/{kid}/revoke")),
            Ep::Audit => self.http.get(format!("{u}/v1/audit")),
        };
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        send(req).await
    }

    async fn head(&self) -> u64 {
        let v: serde_json::Value = self
            .http
            .get(format!(
                "{}/v1/audit?limit=1&from=18446744073709551615",
                self.url
            ))
            .bearer_auth(&self.auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["head"]["next_seq"].as_u64().unwrap()
    }

    /// Runs one case and checks status, body, and the audit record.
    async fn check(&self, case: &str, ep: Ep, token: Option<&str>, want: u16, want_result: &str) {
        let kid = match (ep, want) {
            (_, 410) => REVOKED,
            (Ep::Put, _) => FRESH,
            _ => ACTIVE,
        };
        let product = if case == "product not granted" && ep == Ep::Put {
            PRODUCT_B
        } else {
            PRODUCT_A
        };
        let before = self.head().await;
        let (status, ct, body) = self.call(ep, kid, token, product).await;
        assert_eq!(status, want, "{case} on {ep:?}: body {body}");
        assert_eq!(ct, "application/problem+json", "{case} on {ep:?}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["status", "title", "type"],
            "{case} on {ep:?}: extra members in {body}"
        );
        assert_eq!(v["status"], want);
        for secret in [
            &self.active_b64[..],
            PRODUCT_A,
            "forged",
            "signature",
            "kid",
        ] {
            assert!(
                !body.contains(secret),
                "{case} on {ep:?} leaks {secret:?}: {body}"
            );
        }
        if let Some(t) = token {
            assert!(!body.contains(&t[..20.min(t.len())]));
        }
        // Exactly the records after `before` (skipping the auditor's own reads).
        let recs = audit_records(&self.http, &self.url, &self.auditor).await;
        let found: Vec<_> = recs
            .iter()
            .filter(|r| r["seq"].as_u64().unwrap() >= before)
            .filter(|r| r["action"] == ep.action())
            // The auditor's own successful reads are not part of this case.
            .filter(|r| !(ep == Ep::Audit && r["result"] == "ok"))
            .collect();
        assert_eq!(found.len(), 1, "{case} on {ep:?}: audit records {found:?}");
        let r = found[0];
        assert_eq!(r["result"], want_result, "{case} on {ep:?}: {r}");
        if ep != Ep::Audit {
            assert_eq!(r["kid"], kid, "{case} on {ep:?}");
        }
    }
}

fn flip_signature(tok: &str) -> String {
    let (rest, sig) = tok.rsplit_once('.').unwrap();
    let mut s = foundations::b64url_decode(sig).unwrap();
    s[10] ^= 0x01;
    format!("{rest}.{}", foundations::b64url(&s))
}

/// Replaces the header and signature of a valid token.
fn resign(tok: &str, header: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let payload = tok.split('.').nth(1).unwrap();
    let input = format!("{}.{payload}", foundations::b64url(header.as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", foundations::b64url(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_rejects_every_bad_token() {
    let repo = Repo::init();
    let publ = repo.add_client("pub-a", "publisher", &[PRODUCT_A]);
    let publ_b = repo.add_client("pub-b", "publisher", &[PRODUCT_B]);
    let disp = repo.add_client("disp-a", "dispatcher", &[PRODUCT_A]);
    let disp_b = repo.add_client("disp-b", "dispatcher", &[PRODUCT_B]);
    let aud = repo.add_client("auditor", "auditor", &[]);
    let srv = repo.start();
    let http = srv.http(&repo.ca_pem());
    let url = srv.url.clone();

    let t_pub = token(&http, &url, &publ).await;
    let t_pub_b = token(&http, &url, &publ_b).await;
    let t_disp = token(&http, &url, &disp).await;
    let t_disp_b = token(&http, &url, &disp_b).await;
    let t_aud = token(&http, &url, &aud).await;

    let active = cose_key(b"k-active", &random_key());
    let active_b64 = b64(&active);
    for kid in [ACTIVE, REVOKED] {
        let (s, _, b) = send(
            http.put(format!("{url}/v1/keys/{kid}"))
                .bearer_auth(&t_pub)
                .json(&serde_json::json!({"product": PRODUCT_A, "cose_key": active_b64})),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, _, _) = send(
        http.post(format!("{url}/v1/keys/{REVOKED}/revoke"))
            .bearer_auth(&t_pub),
    )
    .await;
    assert_eq!(s, 200);

    let w = World {
        url: url.clone(),
        http: http.clone(),
        active_b64: active_b64.clone(),
        auditor: t_aud.clone(),
    };
    let now = foundations::now_unix();
    let expired = repo.forge(|c| {
        c.iat = now - 4000;
        c.nbf = Some(now - 4000);
        c.exp = now - 3600;
    });
    let not_yet = repo.forge(|c| {
        c.nbf = Some(now + 3600);
    });
    let wrong_iss = repo.forge(|c| c.iss = "https://evil.example".into());
    let wrong_aud = repo.forge(|c| c.aud = Audience::One("https://other.example/v1".into()));
    let good_forged = repo.forge(|_| {});
    let bad_sig = flip_signature(&good_forged);
    let other_key = foundations::token::TokenSigner::generate().unwrap();
    let foreign = {
        let cfg = repo.cfg();
        other_key
            .sign(&foundations::token::Claims {
                iss: cfg.issuer.clone(),
                sub: None,
                aud: Audience::One(cfg.audience.clone()),
                exp: now + 300,
                iat: now,
                nbf: None,
                jti: None,
                client_id: Some("forged".into()),
                scope: Some("keys:read keys:write keys:revoke audit:read".into()),
                extra: serde_json::Map::from_iter([(
                    "products".to_string(),
                    serde_json::json!([PRODUCT_A]),
                )]),
            })
            .unwrap()
    };
    let alg_none = {
        let t = resign(&good_forged, r#"{"alg":"none","typ":"at+jwt"}"#, |_| {
            Vec::new()
        });
        t.trim_end_matches('.').to_string() + "."
    };
    // The classic confusion: HMAC keyed with the server's public key (as published JWKS).
    let jwk = serde_json::to_string(repo.signer().jwk()).unwrap();
    let kid = repo.signer().jwk().kid.clone().unwrap();
    let hs_header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
    let hs256_jwk = resign(&good_forged, &hs_header, |m| {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(jwk.as_bytes()).unwrap();
        mac.update(m);
        mac.finalize().into_bytes().to_vec()
    });
    let x = repo.signer().jwk().x.clone().unwrap();
    let hs256_x = resign(&good_forged, &hs_header, |m| {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(x.as_bytes()).unwrap();
        mac.update(m);
        mac.finalize().into_bytes().to_vec()
    });

    // Sanity: the forged-but-valid token works, so the refusals below are for the reason named.
    let (s, _, _) = w.call(Ep::Get, ACTIVE, Some(&good_forged), PRODUCT_A).await;
    assert_eq!(s, 200);

    let unauth: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("garbage token", Some("not-a-jwt")),
        ("expired", Some(&expired)),
        ("not yet valid", Some(&not_yet)),
        ("wrong issuer", Some(&wrong_iss)),
        ("wrong audience", Some(&wrong_aud)),
        ("bad signature", Some(&bad_sig)),
        ("signed by another key", Some(&foreign)),
        ("alg none", Some(&alg_none)),
        ("HS256 with public JWK", Some(&hs256_jwk)),
        ("HS256 with public x", Some(&hs256_x)),
    ];
    let all = [Ep::Put, Ep::Get, Ep::Meta, Ep::Revoke, Ep::Audit];
    for ep in all {
        for (case, tok) in &unauth {
            w.check(case, ep, *tok, 401, "denied:invalid_token").await;
        }
    }
    // Valid tokens without the scope for the endpoint.
    for (ep, tok) in [
        (Ep::Put, &t_disp),
        (Ep::Get, &t_pub),
        (Ep::Meta, &t_aud),
        (Ep::Revoke, &t_disp),
        (Ep::Audit, &t_disp),
    ] {
        w.check(
            "missing scope",
            ep,
            Some(tok),
            403,
            "denied:insufficient_scope",
        )
        .await;
    }
    // Valid tokens with the scope but another product: a write is refused 403; a key of a
    // product not granted is answered like a kid never written (404), so a refusal does
    // not tell that it exists (issue 13 item 5). The audit record says why.
    for (ep, tok, want) in [
        (Ep::Put, &t_pub, 403),
        (Ep::Get, &t_disp_b, 404),
        (Ep::Meta, &t_disp_b, 404),
        (Ep::Revoke, &t_pub_b, 404),
    ] {
        w.check(
            "product not granted",
            ep,
            Some(tok),
            want,
            "denied:product_not_granted",
        )
        .await;
    }
    // Revoked key: never served again.
    for (ep, tok) in [
        (Ep::Put, &t_pub),
        (Ep::Get, &t_disp),
        (Ep::Meta, &t_disp),
        (Ep::Revoke, &t_pub),
    ] {
        w.check("revoked key", ep, Some(tok), 410, "gone").await;
    }

    // Nothing above changed state: the active key is intact, the fresh kid never written.
    let (s, _, b) = send(
        http.get(format!("{url}/v1/keys/{ACTIVE}"))
            .bearer_auth(&t_disp),
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["cose_key"], active_b64.as_str());
    let (s, _, _) = send(
        http.get(format!("{url}/v1/keys/{FRESH}"))
            .bearer_auth(&t_disp),
    )
    .await;
    assert_eq!(s, 404);

    assert!(srv.stop().success());
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");
}
