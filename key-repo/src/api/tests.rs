//! The router without a socket (`tower::ServiceExt::oneshot`).

use super::*;
use crate::config::{Limits, TlsConfig, TokenConfig};
use axum::body::Body;

const PRODUCT: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45";

fn state(dir: &std::path::Path) -> (AppState, TokenSigner) {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        issuer: "https://kr.test".into(),
        audience: "https://kr.test/v1".into(),
        data_dir: dir.join("data"),
        clients_file: dir.join("clients.json"),
        master_key_file: dir.join("unused"),
        token_signing_key_file: dir.join("unused"),
        tls: TlsConfig {
            cert_file: dir.join("unused"),
            key_file: dir.join("unused"),
            ca_file: None,
        },
        tokens: TokenConfig::default(),
        limits: Limits::default(),
        serve: Default::default(),
        audit: Default::default(),
        external_issuers: vec![],
    };
    let signer = TokenSigner::generate().unwrap();
    let store = Store::open(&cfg.data_dir, crate::crypto::MasterKey::generate().unwrap()).unwrap();
    let reg = Registry::open(&cfg.clients_file).unwrap();
    let copy = TokenSigner::load(&{
        let p = dir.join("signer.pem");
        signer.save(&p).unwrap();
        p
    })
    .unwrap();
    (AppState::new(cfg, store, signer, reg).unwrap(), copy)
}

async fn call(app: &Router, req: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

use tower::ServiceExt as _;

#[tokio::test]
async fn router_without_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (st, signer) = state(dir.path());
    let app = router(st.clone());
    let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();

    let (s, v) = call(&app, get("/v1/keys/k1")).await;
    assert_eq!(
        (s, v["status"].as_u64()),
        (StatusCode::UNAUTHORIZED, Some(401))
    );
    let (s, v) = call(&app, get("/nope")).await;
    assert_eq!(
        (s, v["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (s, v) = call(&app, get("/v1/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");

    // A token from the built-in signer for a registered client: write then read.
    let client = crate::clients::add(
        &dir.path().join("clients.json"),
        "c",
        crate::model::Role::Publisher,
        &[PRODUCT.to_string()],
    )
    .unwrap();
    let now = now_unix();
    let claims = foundations::token::Claims {
        iss: "https://kr.test".into(),
        sub: None,
        aud: foundations::token::Audience::One("https://kr.test/v1".into()),
        exp: now + 60,
        iat: now,
        nbf: None,
        jti: None,
        client_id: Some(client.client_id.clone()),
        scope: Some("keys:write keys:read".into()),
        extra: serde_json::Map::from_iter([(
            "products".to_string(),
            serde_json::json!([
                "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45"
            ]),
        )]),
    };
    let tok = signer.sign(&claims).unwrap();
    let key = foundations::b64(b"\xa2\x01\x04\x20\x50aaaaaaaaaaaaaaaa");
    let body = serde_json::json!({
        "product": "FA6B4A53-D5AD-5FDF-BE9D-E663E4D41FFE/1492af14-2569-5e48-bf42-9b2d51f2ab45",
        "cose_key": key,
    });
    let put = axum::http::Request::put("/v1/keys/k1")
        .header("authorization", format!("Bearer {tok}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, v) = call(&app, put).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let req = axum::http::Request::get("/v1/keys/k1")
        .header("authorization", format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap();
    let audit = st.store().audit();
    let before = audit.tree().len();
    let (s, v) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["cose_key"], key.as_str());
    // The read's record was chained (and flushed) before the answer, not merely queued:
    // nothing else ran between the handler and here (one thread).
    assert_eq!(audit.tree().len(), before + 1);
    let last = audit.page(before as u64, 1).unwrap();
    assert_eq!(
        (last[0].event.action.as_str(), last[0].event.result.as_str()),
        ("key.read", "ok")
    );
    let bad = axum::http::Request::get("/v1/keys/a%2Fb")
        .header("authorization", format!("Bearer {tok}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, bad).await.0, StatusCode::BAD_REQUEST);
}
