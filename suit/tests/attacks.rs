//! Adversarial tests, one per attack. Each builds a genuine release and changes one thing
//! an attacker controls, then requires the precise rejection.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use ciborium::Value;
use common::*;
use suit::manifest::{VersionMatch, parse_version};
use suit::release::{author_sign, check_ciphertext, decrypt_payload};
use suit::{
    ConditionError, DecodeError, DeviceState, Error, Limits, ReleaseKey, Role, TrustAnchor,
    UpdateType, evaluate,
};

fn lim() -> Limits {
    Limits::default()
}

/// Splits an envelope into (manifest content, authentication blocks) with plain ciborium.
fn parts(envelope: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let v: Value = ciborium::from_reader(envelope).unwrap();
    let Value::Tag(107, m) = v else { panic!() };
    let Value::Map(m) = *m else { panic!() };
    let get = |k: i64| {
        m.iter()
            .find(|(key, _)| key == &Value::Integer(k.into()))
            .map(|(_, v)| v.as_bytes().unwrap().clone())
            .unwrap()
    };
    let auth: Value = ciborium::from_reader(&get(2)[..]).unwrap();
    let blocks = auth.as_array().unwrap()[1..]
        .iter()
        .map(|b| b.as_bytes().unwrap().clone())
        .collect();
    (get(3), blocks)
}

/// Re-assembles an envelope the way an attacker would, with a correct digest.
fn assemble(manifest: &[u8], blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut bstr = Vec::new();
    ciborium::into_writer(&Value::Bytes(manifest.to_vec()), &mut bstr).unwrap();
    let digest = suit::SuitDigest::sha256(&bstr).encode();
    let mut auth = vec![Value::Bytes(digest)];
    auth.extend(blocks.iter().map(|b| Value::Bytes(b.clone())));
    let mut auth_bytes = Vec::new();
    ciborium::into_writer(&Value::Array(auth), &mut auth_bytes).unwrap();
    let env = Value::Tag(
        107,
        Box::new(Value::Map(vec![
            (Value::Integer(2.into()), Value::Bytes(auth_bytes)),
            (Value::Integer(3.into()), Value::Bytes(manifest.to_vec())),
        ])),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&env, &mut out).unwrap();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn genuine_release_verifies_and_decrypts() {
    let k = key("maker");
    let b = build(5, &k);
    let v = verify(&b.envelope, &trust(&[(&k, Role::Manufacturer)]), &lim()).unwrap();
    assert_eq!(decrypt_payload(&v, &b.payload, &b.kek).unwrap(), b.image);
    // The reassembly helper reproduces the envelope byte for byte, so the attacks below
    // differ from a genuine release only in what they change.
    let (m, blocks) = parts(&b.envelope);
    assert_eq!(assemble(&m, &blocks), b.envelope);
}

#[test]
fn tampered_ciphertext() {
    let k = key("maker");
    let b = build(5, &k);
    let v = verify(&b.envelope, &trust(&[(&k, Role::Manufacturer)]), &lim()).unwrap();
    for at in [0, b.payload.len() / 2, b.payload.len() - 1] {
        let mut p = b.payload.clone();
        p[at] ^= 0x01;
        assert_eq!(
            check_ciphertext(&v, &p),
            Err(Error::CiphertextDigestMismatch)
        );
        assert_eq!(
            decrypt_payload(&v, &p, &b.kek),
            Err(Error::CiphertextDigestMismatch)
        );
    }
    let short = &b.payload[..b.payload.len() - 1];
    assert!(matches!(
        check_ciphertext(&v, short),
        Err(Error::CiphertextSizeMismatch { .. })
    ));
}

#[test]
fn tampered_manifest() {
    let k = key("maker");
    let b = build(5, &k);
    let t = trust(&[(&k, Role::Manufacturer)]);
    // Change the class-id inside the signed manifest, keeping the old digest.
    let mut e = b.envelope.clone();
    let at = find(&e, CLASS.as_bytes());
    e[at] ^= 0xff;
    assert_eq!(
        verify(&e, &t, &lim()).unwrap_err(),
        Error::ManifestDigestMismatch
    );

    // The same change with the digest recomputed: the signature no longer matches.
    let (mut m, blocks) = parts(&b.envelope);
    let at = find(&m, CLASS.as_bytes());
    m[at] ^= 0xff;
    assert_eq!(
        verify(&assemble(&m, &blocks), &t, &lim()).unwrap_err(),
        Error::SignatureInvalid {
            kid: "maker".into()
        }
    );
}

#[test]
fn swapped_signature() {
    let k = key("maker");
    let a = build(5, &k);
    let b = build(6, &k);
    let (m_b, _) = parts(&b.envelope);
    let (_, sig_a) = parts(&a.envelope);
    assert_eq!(
        verify(
            &assemble(&m_b, &sig_a),
            &trust(&[(&k, Role::Manufacturer)]),
            &lim()
        )
        .unwrap_err(),
        Error::SignatureInvalid {
            kid: "maker".into()
        }
    );
}

#[test]
fn signature_by_untrusted_key() {
    let trusted = key("maker");
    let attacker = key("attacker");
    let b = build(5, &attacker);
    assert!(matches!(
        verify(&b.envelope, &trust(&[(&trusted, Role::Manufacturer)]), &lim()).unwrap_err(),
        Error::NoTrustedSignature { kids } if kids.contains("attacker")
    ));
    // An attacker reusing the trusted kid with its own key is a forged signature.
    let impostor = key("maker");
    let b = build(5, &impostor);
    assert_eq!(
        verify(
            &b.envelope,
            &trust(&[(&trusted, Role::Manufacturer)]),
            &lim()
        )
        .unwrap_err(),
        Error::SignatureInvalid {
            kid: "maker".into()
        }
    );
}

#[test]
fn unsigned_envelope() {
    let k = key("maker");
    let b = build(5, &k);
    let (m, _) = parts(&b.envelope);
    assert_eq!(
        verify(
            &assemble(&m, &[]),
            &trust(&[(&k, Role::Manufacturer)]),
            &lim()
        )
        .unwrap_err(),
        Error::Unauthenticated
    );
}

fn device() -> DeviceState {
    DeviceState::new(VENDOR, CLASS)
}

fn verified(b: &Built, k: &suit::SigningKey) -> suit::Accepted {
    verify(&b.envelope, &trust(&[(k, Role::Manufacturer)]), &lim()).unwrap()
}

#[test]
fn wrong_vendor_and_wrong_class() {
    let k = key("maker");
    let v = verified(&build(5, &k), &k);
    let mut d = device();
    d.class_id = OTHER;
    assert!(matches!(
        evaluate(&v, &d, &lim()).unwrap_err(),
        Error::Condition(ConditionError::ClassMismatch { .. })
    ));
    let mut d = device();
    d.vendor_id = OTHER;
    assert!(matches!(
        evaluate(&v, &d, &lim()).unwrap_err(),
        Error::Condition(ConditionError::VendorMismatch { .. })
    ));
    // The right device gets a plan: fetch the blob, copy (decrypt) into the image.
    let plan = evaluate(&v, &device(), &lim()).unwrap();
    let directives: Vec<i64> = plan.steps.iter().map(|s| s.directive).collect();
    assert_eq!(
        directives,
        vec![suit::consts::cmd::FETCH, suit::consts::cmd::COPY]
    );
    assert_eq!(plan.new_version, Some(vec![1, 2, 3]));
}

#[test]
fn wrong_device_id() {
    let k = key("maker");
    let mut p = params(5, UpdateType::T2);
    p.device_id = Some(OTHER);
    let v = verified(&build_with(&p, &k, b"img"), &k);
    let mut d = device();
    d.device_id = Some(CLASS);
    assert!(matches!(
        evaluate(&v, &d, &lim()).unwrap_err(),
        Error::Condition(ConditionError::DeviceMismatch { .. })
    ));
    d.device_id = Some(OTHER);
    assert!(evaluate(&v, &d, &lim()).is_ok());
}

#[test]
fn rollback_lower_or_equal_sequence() {
    let k = key("maker");
    let v = verified(&build(5, &k), &k);
    for installed in [5, 6, 100] {
        let mut d = device();
        d.installed_sequence = Some(installed);
        assert_eq!(
            evaluate(&v, &d, &lim()).unwrap_err(),
            Error::Condition(ConditionError::RollbackRejected {
                installed,
                offered: 5
            })
        );
    }
    let mut d = device();
    d.installed_sequence = Some(4);
    assert!(evaluate(&v, &d, &lim()).is_ok());
}

#[test]
fn unmet_version_precondition() {
    let k = key("maker");
    let mut p = params(5, UpdateType::T2);
    p.requires = Some(VersionMatch {
        comparison: suit::consts::version_cmp::GREATER_EQUAL,
        version: vec![1, 2],
    });
    let v = verified(&build_with(&p, &k, b"img"), &k);
    let mut d = device();
    d.versions.insert(0, parse_version("1.1.9").unwrap());
    assert!(matches!(
        evaluate(&v, &d, &lim()).unwrap_err(),
        Error::Condition(ConditionError::VersionPrecondition { .. })
    ));
    d.versions.insert(0, parse_version("1.2.0").unwrap());
    assert!(evaluate(&v, &d, &lim()).is_ok());
    // No installed version at all does not satisfy a precondition.
    assert!(evaluate(&v, &device(), &lim()).is_err());
}

#[test]
fn wrong_kek_or_kid() {
    let k = key("maker");
    let b = build(5, &k);
    let v = verified(&b, &k);
    let same_kid =
        ReleaseKey::generate(suit::consts::alg::A128KW, b"rk-test".to_vec(), &mut rng()).unwrap();
    assert_eq!(
        decrypt_payload(&v, &b.payload, &same_kid),
        Err(Error::KeyUnwrapFailed)
    );
    let other_kid =
        ReleaseKey::generate(suit::consts::alg::A128KW, b"rk-other".to_vec(), &mut rng()).unwrap();
    assert!(matches!(
        decrypt_payload(&v, &b.payload, &other_kid),
        Err(Error::WrongKeyId { .. })
    ));
}

#[test]
fn truncated_envelope() {
    let k = key("maker");
    let b = build(5, &k);
    let t = trust(&[(&k, Role::Manufacturer)]);
    for len in 0..b.envelope.len() {
        let e = verify(&b.envelope[..len], &t, &lim()).unwrap_err();
        assert!(matches!(e, Error::Decode(_)), "prefix {len}: {e}");
    }
}

#[test]
fn oversized_fields() {
    let k = key("maker");
    let b = build(5, &k);
    let t = trust(&[(&k, Role::Manufacturer)]);
    let mut small = Limits::default();
    small.max_envelope_len = b.envelope.len() - 1;
    assert!(matches!(
        verify(&b.envelope, &t, &small).unwrap_err(),
        Error::Decode(DecodeError::LimitExceeded {
            what: "envelope size",
            ..
        })
    ));
    // A manifest bstr that claims 2^32 bytes: refused by the bstr limit before allocating.
    let mut huge = vec![0xd8, 0x6b, 0xa1, 0x03, 0x5a, 0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0; 16]);
    assert!(matches!(
        verify(&huge, &t, &lim()).unwrap_err(),
        Error::Decode(DecodeError::LimitExceeded { .. })
    ));
    // Absurd numbers of items are bounded too.
    let mut strict = Limits::default();
    strict.max_items = 10;
    assert!(matches!(
        verify(&b.envelope, &t, &strict).unwrap_err(),
        Error::Decode(DecodeError::LimitExceeded { .. })
    ));
}

#[test]
fn third_party_key_signing_t2() {
    let third = key("lib-author");
    let b = build(5, &third); // a T2 release
    assert!(matches!(
        verify(&b.envelope, &trust(&[(&third, Role::ThirdParty)]), &lim()).unwrap_err(),
        Error::SignerNotAuthorized { kid, .. } if kid == "lib-author"
    ));
    // The same key may sign T1.
    let t1 = build_with(&params(5, UpdateType::T1), &third, b"app");
    assert!(verify(&t1.envelope, &trust(&[(&third, Role::ThirdParty)]), &lim()).is_ok());
}

#[test]
fn key_not_allowed_for_vendor() {
    let k = key("maker");
    let b = build(5, &k);
    let mut t = suit::TrustStore::new();
    t.add(TrustAnchor::new(k.public_key(), Role::Manufacturer).for_vendors([OTHER]));
    assert!(matches!(
        verify(&b.envelope, &t, &lim()).unwrap_err(),
        Error::SignerNotAuthorized { .. }
    ));
}

#[test]
fn missing_or_forged_approval() {
    let maker = key("maker");
    let dispatcher = key("dispatcher");
    let b = build(5, &maker);
    let t = trust(&[(&maker, Role::Manufacturer), (&dispatcher, Role::Approver)]);
    let device = suit::Rules::device();
    assert_eq!(
        verify_with(&b.envelope, &t, &device).unwrap_err(),
        Error::ApprovalMissing
    );

    // The dispatcher approves: a second COSE_Sign1, manifest bytes unchanged.
    let intake = verified(&b, &maker);
    let approved = suit::approve(&intake, &dispatcher).unwrap();
    let v = verify_with(&approved, &t, &device).unwrap();
    assert!(v.approved());
    assert_eq!(v.release_id(), intake.release_id());
    // Approving twice with the same key adds nothing.
    assert!(matches!(
        suit::approve(&v, &dispatcher),
        Err(Error::DuplicateSignature { .. })
    ));

    // Approval by a key the device does not trust is an unauthenticated block: refused,
    // not ignored, so it can never travel on.
    let rogue = key("rogue");
    assert!(matches!(
        verify_with(&suit::approve(&intake, &rogue).unwrap(), &t, &device).unwrap_err(),
        Error::NoTrustedSignature { kids } if kids == "rogue"
    ));
    // An approval block lifted from another release is a forged signature.
    let other = build(6, &maker);
    let other_approved = suit::approve(&verified(&other, &maker), &dispatcher).unwrap();
    let (_, other_blocks) = parts(&other_approved);
    let (m, blocks) = parts(&b.envelope);
    let forged = assemble(&m, &[blocks[0].clone(), other_blocks[1].clone()]);
    assert_eq!(
        verify_with(&forged, &t, &device).unwrap_err(),
        Error::SignatureInvalid {
            kid: "dispatcher".into()
        }
    );
}

#[test]
fn t3_author_signature_checked() {
    let maker = key("maker");
    let author = key("author");
    let image = b"third-party library v2".to_vec();
    let mut p = params(5, UpdateType::T3);
    p.ics.author_signature = Some(author_sign(&image, &author));
    let b = build_with(&p, &maker, &image);
    let mut t = trust(&[(&maker, Role::Manufacturer), (&author, Role::Author)]);
    let v = verify(&b.envelope, &t, &lim()).unwrap();
    assert!(v.author_verified());

    // An author signature over a different image fails.
    let mut p2 = params(6, UpdateType::T3);
    p2.ics.author_signature = Some(author_sign(b"some other image", &author));
    let b2 = build_with(&p2, &maker, &image);
    assert_eq!(
        verify(&b2.envelope, &t, &lim()).unwrap_err(),
        Error::AuthorSignatureInvalid
    );

    // No author signature on a T3 release: the caller's rule decides, never a silent skip.
    let require = suit::Rules::publisher_check().with_author(suit::AuthorRule::Require);
    let b3 = build_with(&params(7, UpdateType::T3), &maker, &image);
    assert_eq!(
        verify_with(&b3.envelope, &t, &require).unwrap_err(),
        Error::AuthorSignatureMissing
    );
    let v3 = verify(&b3.envelope, &t, &lim()).unwrap();
    assert_eq!(v3.author(), &suit::AuthorStatus::Missing);

    // A signature by an author nobody trusts.
    let mut p4 = params(8, UpdateType::T3);
    p4.ics.author_signature = Some(author_sign(&image, &key("someone")));
    let b4 = build_with(&p4, &maker, &image);
    assert_eq!(
        verify_with(&b4.envelope, &t, &require).unwrap_err(),
        Error::AuthorSignatureInvalid
    );
    let v4 = verify(&b4.envelope, &t, &lim()).unwrap();
    assert_eq!(
        v4.author(),
        &suit::AuthorStatus::UnknownKey {
            kid: "someone".into()
        }
    );
    t = trust(&[(&maker, Role::Manufacturer)]);
    assert!(!verify(&b.envelope, &t, &lim()).unwrap().author_verified());
}

#[test]
fn unknown_critical_manifest_member() {
    let k = key("maker");
    let b = build(5, &k);
    let (m, _) = parts(&b.envelope);
    let Value::Map(mut map) = ciborium::from_reader::<Value, _>(&m[..]).unwrap() else {
        panic!()
    };
    map.push((Value::Integer(99.into()), Value::Integer(1.into())));
    let mut m2 = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut m2).unwrap();
    // Re-signed by the legitimate key: still refused, the member is unknown.
    let mut bstr = Vec::new();
    ciborium::into_writer(&Value::Bytes(m2.clone()), &mut bstr).unwrap();
    let sig = k.sign1_detached(&suit::SuitDigest::sha256(&bstr).encode());
    assert_eq!(
        verify(
            &assemble(&m2, &[sig]),
            &trust(&[(&k, Role::Manufacturer)]),
            &lim()
        )
        .unwrap_err(),
        Error::Decode(DecodeError::UnknownMember {
            at: "manifest",
            key: 99
        })
    );
}
