use super::*;

fn ev(actor: &str) -> AuditEvent {
    AuditEvent {
        actor: actor.into(),
        action: "key.create".into(),
        ..Default::default()
    }
}

const PUB: Owner<'static> = Owner {
    issuer: "https://kr",
    client_id: "pub",
};

fn only(p: &'static str) -> impl Fn(&str) -> bool + Sync {
    move |x| x == p
}

#[tokio::test]
async fn lifecycle_and_no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let key_material = b"\xa3\x01\x04\x02\x45kid-1\x20\x50SIXTEEN-BYTE-KEY";
    {
        let store = Store::open(dir.path(), MasterKey::from_bytes([3; 32])).unwrap();
        let put = |kid: &'static str, product: &'static str, key: &'static [u8], who| {
            let store = &store;
            async move {
                let grants = |x: &str| x == "p" || x == "q";
                store
                    .put_key(kid, product, key, who, &grants, ev("pub"))
                    .await
                    .unwrap()
            }
        };
        let out = put("k1", "p", key_material, PUB).await;
        assert!(matches!(out, PutOutcome::Created(_)));
        let again = put("k1", "p", key_material, PUB).await;
        assert!(matches!(again, PutOutcome::Unchanged(_)));
        assert_eq!(put("k1", "p", b"other", PUB).await, PutOutcome::Conflict);
        // A product the writer is granted too: a conflict it may see.
        assert_eq!(
            put("k1", "q", key_material, PUB).await,
            PutOutcome::Conflict
        );
        // Another owner of the same product, even with the same material.
        let other_owner = Owner {
            issuer: "https://kr",
            client_id: "pub-2",
        };
        assert_eq!(
            put("k1", "p", key_material, other_owner).await,
            PutOutcome::Conflict
        );
        // A writer not granted the key's product learns nothing about it.
        let foreign = store
            .put_key("k1", "q", key_material, other_owner, &only("q"), ev("x"))
            .await
            .unwrap();
        assert_eq!(foreign, PutOutcome::Foreign);
        let loaded = store.load("k1").unwrap().unwrap();
        assert!(loaded.owned_by(PUB, "https://kr"));
        assert!(!loaded.owned_by(other_owner, "https://kr"));
        let (m, k) = store.read_key("k1").unwrap().unwrap();
        assert_eq!(&k[..], key_material);
        assert_eq!(m.state, "active");
    }
    // Raw database files never contain the key.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(!bytes.windows(16).any(|w| w == b"SIXTEEN-BYTE-KEY"));
        }
    }
    // Wrong master key: the record is there, the key cannot be opened.
    // sled's flusher thread (flush_every_ms) can hold the file lock for up to one
    // interval after the store is dropped: wait for it instead of racing it.
    let db = (0..100)
        .find_map(|_| {
            sled::open(dir.path())
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                .ok()
        })
        .expect("the database lock is released after the store is dropped");
    let raw = db.open_tree("keys").unwrap().get(b"k1").unwrap().unwrap();
    let rec = decode_record("k1", &raw).unwrap();
    let sealed = foundations::b64_decode(&rec.sealed).unwrap();
    assert!(
        MasterKey::from_bytes([4; 32])
            .open("k1", "p", &sealed)
            .is_err()
    );
    assert!(
        MasterKey::from_bytes([3; 32])
            .open("k1", "p", &sealed)
            .is_ok()
    );
}

#[tokio::test]
async fn revoke_is_final() {
    let store = Store::with_db(
        sled::Config::new().temporary(true).open().unwrap(),
        MasterKey::from_bytes([1; 32]),
    )
    .unwrap();
    store
        .put_key("k", "p", b"x", PUB, &only("p"), ev("pub"))
        .await
        .unwrap();
    assert!(matches!(
        store.revoke("k", ev("pub")).await.unwrap(),
        RevokeOutcome::Revoked(_)
    ));
    assert_eq!(
        store.revoke("k", ev("pub")).await.unwrap(),
        RevokeOutcome::AlreadyRevoked
    );
    assert_eq!(
        store.revoke("nope", ev("pub")).await.unwrap(),
        RevokeOutcome::NotFound
    );
    assert!(store.read_key("k").unwrap().is_none());
    assert_eq!(store.meta("k").unwrap().unwrap().state, "revoked");
    assert_eq!(
        store
            .put_key("k", "p", b"x", PUB, &only("p"), ev("pub"))
            .await
            .unwrap(),
        PutOutcome::Revoked
    );
    // A revoked kid of another product is not told apart from any other foreign kid.
    assert_eq!(
        store
            .put_key("k", "q", b"x", PUB, &only("q"), ev("pub"))
            .await
            .unwrap(),
        PutOutcome::Foreign
    );
    let key = MasterKey::from_bytes([1; 32]).audit_mac_key();
    assert_eq!(
        foundations::audit::verify(store.audit().tree(), &key)
            .unwrap()
            .records,
        6
    );
}
