//! Published vectors (../shared/vectors) are the ground truth. Expected digests are read
//! from the vectors' own SOURCES.md tables, not copied into this file.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use suit::consts::{alg, param};
use suit::manifest::Param;
use suit::release::component_params;
use suit::{
    Accepted, EncryptionInfo, Error, Limits, PublicKey, ReleaseKey, Role, Rules, TrustAnchor,
    TrustStore,
};

/// The vectors are generic SUIT envelopes, not releases of this project's profile.
fn verify_generic(bytes: &[u8], t: &TrustStore, limits: &Limits) -> Result<Accepted, Error> {
    suit::accept(bytes, t, &Rules::generic().with_limits(limits.clone()), 0)
}

fn vectors() -> PathBuf {
    if let Ok(p) = std::env::var("SUIT_VECTORS") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn read(rel: &str) -> Vec<u8> {
    let p = vectors().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", p.display()))
}

fn spec_trust() -> TrustStore {
    let pem = String::from_utf8(read(
        "suit-manifest/keys/spec-example-signing-key.p256.pub.pem",
    ))
    .unwrap();
    let mut t = TrustStore::new();
    // The spec examples carry no kid in their signatures.
    t.add(
        TrustAnchor::new(PublicKey::from_pem(&pem).unwrap(), Role::Manufacturer).matching_any_kid(),
    );
    t
}

/// Rows of a markdown table in a SOURCES.md: the cells of lines starting with `| name`.
fn table_rows(sources: &str, name_prefix: &str) -> Vec<Vec<String>> {
    String::from_utf8(read(sources))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("| {name_prefix}")))
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect()
}

#[test]
fn manifest_spec_examples_verify_and_reproduce_digests() {
    let rows = table_rows("suit-manifest/SOURCES.md", "example");
    assert_eq!(
        rows.len(),
        8,
        "expected 4 signed + 4 unsigned examples in SOURCES.md"
    );
    let mut digests = std::collections::HashMap::new();
    for row in &rows {
        let (file, size, seq, digest) = (&row[0], &row[1], &row[2], &row[3]);
        let bytes = read(&format!("suit-manifest/manifest-spec/{file}"));
        assert_eq!(bytes.len().to_string(), *size, "{file}: size");
        if file.contains(".signed.") {
            digests.insert(file.replace(".signed.cbor", ""), digest.clone());
            let v = verify_generic(&bytes, &spec_trust(), &Limits::default())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(v.release_id(), *digest, "{file}: manifest digest");
            assert_eq!(v.manifest().sequence_number.to_string(), *seq);
            assert_eq!(v.envelope().auth_blocks()[0].block.alg(), alg::ES256);
        }
    }
    for row in rows.iter().filter(|r| r[0].contains(".unsigned.")) {
        let file = &row[0];
        let bytes = read(&format!("suit-manifest/manifest-spec/{file}"));
        // It decodes (so it can be inspected) and carries the same manifest...
        let env = suit::Envelope::decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(
            env.release_id(),
            digests[&file.replace(".unsigned.cbor", "")]
        );
        // ...but it must be rejected: no authentication block.
        assert_eq!(
            verify_generic(&bytes, &spec_trust(), &Limits::default()).unwrap_err(),
            Error::Unauthenticated,
            "{file}"
        );
    }
}

#[test]
fn libcsuit_esp256_examples_verify() {
    let rows = table_rows("suit-manifest/SOURCES.md", "suit_manifest_exp");
    assert_eq!(rows.len(), 4);
    for row in rows {
        let (file, prefix) = (&row[0], row[2].trim_end_matches('…'));
        let bytes = read(&format!("suit-manifest/libcsuit-esp256/{file}"));
        let v = verify_generic(&bytes, &spec_trust(), &Limits::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(v.release_id().starts_with(prefix), "{file}: digest");
        assert_eq!(
            v.envelope().auth_blocks()[0].block.alg(),
            alg::ESP256,
            "{file}"
        );
    }
}

#[test]
fn spec_examples_evaluate_for_the_example_device() {
    // Content facts from SOURCES.md: every example targets this vendor and class.
    let vendor = uuid::Uuid::parse_str("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").unwrap();
    let class = uuid::Uuid::parse_str("1492af14-2569-5e48-bf42-9b2d51f2ab45").unwrap();
    let bytes = read("suit-manifest/manifest-spec/example3.signed.cbor");
    let v = verify_generic(&bytes, &spec_trust(), &Limits::default()).unwrap();
    let mut dev = suit::DeviceState::new(vendor, class);
    dev.target_slots.insert(0, 1);
    let plan = suit::evaluate(&v, &dev, &Limits::default()).unwrap();
    // try-each picked slot 1, whose URI is file2.bin.
    let fetch = plan
        .steps
        .iter()
        .find(|s| s.directive == suit::consts::cmd::FETCH)
        .unwrap();
    assert_eq!(
        fetch.params.get(&param::URI),
        Some(&Param::Text("http://example.com/file2.bin".into()))
    );
    let mut other = suit::DeviceState::new(vendor, uuid::Uuid::nil());
    other.target_slots.insert(0, 0);
    assert_eq!(
        suit::evaluate(&v, &other, &Limits::default())
            .unwrap_err()
            .code(),
        "wrong-class"
    );
}

fn example_kek() -> ReleaseKey {
    let keys: serde_json::Value =
        serde_json::from_slice(&read("suit-encryption/keys/keys-and-expected-values.json"))
            .unwrap();
    let k = hex::decode(keys["a128kw_kek"]["k_hex"].as_str().unwrap()).unwrap();
    let kid = hex::decode(keys["a128kw_kek"]["kid_hex"].as_str().unwrap()).unwrap();
    ReleaseKey::from_parts(alg::A128KW, kid, &k).unwrap()
}

fn plaintext() -> Vec<u8> {
    read("suit-encryption/draft-examples/plaintext-payload.bin")
}

#[test]
fn aes_kw_gcm_encryption_info_decrypts_to_published_plaintext() {
    let info = EncryptionInfo::decode(&read(
        "suit-encryption/draft-examples/suit-encryption-info-aes-kw-aes-gcm.cbor",
    ))
    .unwrap();
    assert_eq!(info.content_alg, alg::A128GCM);
    let payload = read("suit-encryption/draft-examples/encrypted-payload-aes-kw-aes-gcm.bin");
    assert_eq!(info.decrypt(&example_kek(), &payload).unwrap(), plaintext());
    // The COSE_Key file carries the same KEK.
    let from_file =
        ReleaseKey::from_cose_key(&read("suit-encryption/keys/a128kw-kek-kid-1.cose_key.cbor"))
            .unwrap();
    assert_eq!(info.decrypt(&from_file, &payload).unwrap(), plaintext());
    // Flipping one byte of the payload breaks the GCM tag.
    let mut bad = payload.clone();
    bad[5] ^= 1;
    assert_eq!(
        info.decrypt(&example_kek(), &bad),
        Err(Error::DecryptionFailed)
    );
}

#[test]
fn aes_ctr_encryption_info_is_reported_unsupported() {
    let info = EncryptionInfo::decode(&read(
        "suit-encryption/draft-examples/suit-encryption-info-aes-kw-aes-ctr.cbor",
    ))
    .unwrap();
    let payload = read("suit-encryption/draft-examples/encrypted-payload-aes-kw-aes-ctr.bin");
    assert!(matches!(
        info.decrypt(&example_kek(), &payload),
        Err(Error::UnsupportedAlgorithm {
            alg: alg::A128CTR,
            ..
        })
    ));
}

fn mac_trust() -> TrustStore {
    let keys: serde_json::Value =
        serde_json::from_slice(&read("suit-encryption/keys/keys-and-expected-values.json"))
            .unwrap();
    let k = hex::decode(keys["hmac256_manifest_mac_key"]["k_hex"].as_str().unwrap()).unwrap();
    let mut t = TrustStore::new();
    t.add_mac_key(&k);
    t
}

/// Expected digest prefix and suffix ("037a5c32…4e2c") from suit-encryption/SOURCES.md.
fn mac_envelope_digest(file_stem: &str) -> (String, String) {
    let sources = String::from_utf8(read("suit-encryption/SOURCES.md")).unwrap();
    let line = sources
        .lines()
        .find(|l| l.starts_with(&format!("| {file_stem}.")))
        .unwrap_or_else(|| panic!("{file_stem} not in SOURCES.md"));
    let d = line.split("digest ").nth(1).unwrap();
    let d = d
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches([';', '|']);
    let (a, b) = d.split_once('…').unwrap();
    (a.to_owned(), b.to_owned())
}

#[test]
fn maced_envelopes_verify_and_decrypt() {
    for stem in [
        "suit-manifest-aes-kw-content",
        "suit-manifest-aes-kw",
        "suit-manifest-aes-kw-slot",
    ] {
        let bytes = read(&format!("suit-encryption/draft-examples/{stem}.suit"));
        let v = verify_generic(&bytes, &mac_trust(), &Limits::default())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let (head, tail) = mac_envelope_digest(stem);
        let id = v.release_id();
        assert!(
            id.starts_with(&head) && id.ends_with(&tail),
            "{stem}: digest {id}"
        );

        let info = suit::release::encryption_info(&v).unwrap();
        let m = &v.manifest();
        let ciphertext = match component_params(m, 0).get(&param::CONTENT) {
            // Integrated in parameter 18 (content).
            Some(Param::Bytes(c)) => c.clone(),
            // Fetched into component 1: the published encrypted payload, with the signed size.
            _ => {
                let fetched =
                    read("suit-encryption/draft-examples/encrypted-payload-aes-kw-aes-gcm.bin");
                assert_eq!(
                    component_params(m, 1).get(&param::IMAGE_SIZE),
                    Some(&Param::Uint(fetched.len() as u64)),
                    "{stem}"
                );
                fetched
            }
        };
        assert_eq!(
            info.decrypt(&example_kek(), &ciphertext).unwrap(),
            plaintext(),
            "{stem}"
        );

        // A wrong MAC key is a MAC failure, not a pass.
        let mut wrong = TrustStore::new();
        wrong.add_mac_key(&[0x62; 32]);
        assert_eq!(
            verify_generic(&bytes, &wrong, &Limits::default()).unwrap_err(),
            Error::MacInvalid
        );
    }
}
