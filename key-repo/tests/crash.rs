//! Crash safety: kill -9 while publishers write; every acknowledged key must be readable
//! after restart and the audit chain must verify.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use key_repo::client::{ClientConfig, KeyRepoClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_key() {
    let repo = Repo::init();
    let p = repo.add_client("publisher", "publisher", &[PRODUCT_A]);
    let d = repo.add_client("dispatcher", "dispatcher", &[PRODUCT_A]);
    let srv = repo.start();
    let cfg = |c: &Creds, url: &str| ClientConfig {
        base_url: url.to_string(),
        client_id: c.id.clone(),
        client_secret: c.secret.clone(),
        ca_pem: Some(repo.ca_pem()),
        scopes: vec![],
    };
    let publ = Arc::new(KeyRepoClient::new(cfg(&p, &srv.url)).unwrap());
    publ.access_token().await.unwrap();
    type Acked = Vec<(String, Vec<u8>)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (publ, acked) = (publ.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let kid = format!("w{w}-{i}");
                let key = cose_key(kid.as_bytes(), &random_key());
                match publ.put_key(&kid, PRODUCT_A, &key).await {
                    Ok(_) => acked.lock().unwrap().push((kid, key)),
                    Err(_) => return i, // the server died
                }
            }
            unreachable!()
        }));
    }
    // Kill once a fair number of writes were acknowledged (no wall-clock threshold).
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    srv.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);

    // The chain verifies on the crashed database as is.
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");

    let srv = repo.start();
    let disp = KeyRepoClient::new(cfg(&d, &srv.url)).unwrap();
    for (kid, key) in &acked {
        let got = disp
            .get_key(kid)
            .await
            .unwrap_or_else(|e| panic!("acknowledged {kid} lost: {e}"));
        assert_eq!(&got.cose_key, key, "{kid}");
    }
    assert!(srv.stop().success());
    let (code, out) = repo.audit_verify();
    assert_eq!(code, 0, "{out}");
}
