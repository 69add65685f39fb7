//! Every well-formed envelope can be inspected and its signatures verified, including parts
//! the profile does not produce (severed members, ECDH-ES recipients, several components,
//! try-each); what a device cannot act on is reported when processing reaches it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use ciborium::Value;
use common::*;
use suit::consts::{alg, envelope as ek, manifest as mk};
use suit::envelope::{build_envelope, manifest_digest};
use suit::{DecodeError, Error, Limits, Role};

fn vectors() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

#[test]
fn every_published_envelope_can_be_inspected() {
    let mut seen = 0;
    for dir in [
        "suit-manifest/manifest-spec",
        "suit-manifest/libcsuit-esp256",
        "suit-encryption/draft-examples",
    ] {
        for entry in std::fs::read_dir(vectors().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !(ext == "suit" || path.to_string_lossy().ends_with("signed.cbor")) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let env = suit::Envelope::decode(&bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let d = suit::inspect::describe(&env);
            assert!(d.manifest_digest_matches, "{}", path.display());
            let text = d.to_string();
            assert!(text.contains(&d.release_id));
            seen += 1;
        }
    }
    assert_eq!(seen, 4 + 4 + 4 + 3);
    // Specific content: the A/B example shows try-each, the AES-KW example its named
    // components and its encryption info.
    let ex3 =
        std::fs::read(vectors().join("suit-manifest/manifest-spec/example3.signed.cbor")).unwrap();
    let text = suit::inspect::describe(&suit::Envelope::decode(&ex3, &Limits::default()).unwrap())
        .to_string();
    assert!(
        text.contains("directive-try-each (2 alternatives)"),
        "{text}"
    );
    let kw =
        std::fs::read(vectors().join("suit-encryption/draft-examples/suit-manifest-aes-kw.suit"))
            .unwrap();
    let text = suit::inspect::describe(&suit::Envelope::decode(&kw, &Limits::default()).unwrap())
        .to_string();
    assert!(text.contains("['encrypted-firmware']"), "{text}");
    assert!(
        text.contains("A128GCM; recipients: A128KW kid=kid-1"),
        "{text}"
    );
    assert!(
        text.contains("authentication    COSE_Mac0 HMAC 256/256"),
        "{text}"
    );
}

/// The release's manifest with its install sequence severed: (manifest content, install).
fn severed_release() -> (Vec<u8>, Vec<u8>, suit::SigningKey) {
    let k = key("maker");
    let b = build(3, &k);
    let content = {
        let v: Value = ciborium::from_reader(&b.envelope[..]).unwrap();
        let Value::Tag(_, m) = v else { panic!() };
        let Value::Map(m) = *m else { panic!() };
        m.into_iter()
            .find(|(k, _)| *k == Value::Integer(3.into()))
            .unwrap()
            .1
            .into_bytes()
            .unwrap()
    };
    let Value::Map(mut map) = ciborium::from_reader::<Value, _>(&content[..]).unwrap() else {
        panic!()
    };
    let slot = map
        .iter_mut()
        .find(|(k, _)| *k == Value::Integer(mk::INSTALL.into()))
        .unwrap();
    let install = slot.1.as_bytes().unwrap().clone();
    // manifest §8.4.6: the manifest keeps the digest of the envelope's bstr.
    let digest = suit::SuitDigest::sha256(&suit::cbor::bstr_wrap(&install));
    slot.1 = Value::Array(vec![
        Value::Integer(digest.alg.into()),
        Value::Bytes(digest.bytes.clone()),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut out).unwrap();
    (out, install, k)
}

#[test]
fn severed_install_member() {
    let (manifest, install, k) = severed_release();
    let sig = k.sign1_detached(&manifest_digest(&manifest));
    let t = trust(&[(&k, Role::Manufacturer)]);

    let with = build_envelope(&manifest, &[&sig], &[(ek::INSTALL, install.clone())]);
    let v = verify_generic(&with, &t, &Limits::default()).unwrap();
    assert!(v.manifest().sequence(mk::INSTALL).is_some());
    let text = suit::inspect::describe(v.envelope()).to_string();
    assert!(
        text.contains("sequence install (severed, supplied)"),
        "{text}"
    );
    // The plan uses the supplied install sequence.
    let plan = suit::evaluate(
        &v,
        &suit::DeviceState::new(VENDOR, CLASS),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(plan.steps.len(), 2);

    // Severed and absent: still verifies (the signature covers the digest), shown as absent.
    let without = build_envelope(&manifest, &[&sig], &[]);
    let v = verify_generic(&without, &t, &Limits::default()).unwrap();
    assert!(v.manifest().sequence(mk::INSTALL).is_none());
    assert!(
        suit::inspect::describe(v.envelope())
            .to_string()
            .contains("(severed, absent)")
    );

    // A substituted install sequence does not match the signed digest.
    let mut other = install.clone();
    let last = other.len() - 1;
    other[last] ^= 0x01; // condition-image-match policy 15 -> 14
    assert_eq!(
        verify_generic(
            &build_envelope(&manifest, &[&sig], &[(ek::INSTALL, other)]),
            &t,
            &Limits::default()
        )
        .unwrap_err(),
        Error::Decode(DecodeError::SeveredDigestMismatch {
            member: ek::INSTALL
        })
    );
}

#[test]
fn ecdh_es_recipient_is_inspectable_and_reported_unsupported_on_use() {
    use coset::{
        CoseEncryptBuilder, CoseRecipientBuilder, HeaderBuilder, TaggedCborSerializable, iana,
    };
    // A COSE_Encrypt with an ECDH-ES+A128KW recipient (FE §6.2) and an ephemeral key.
    let recipient = CoseRecipientBuilder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ECDH_ES_A128KW)
                .build(),
        )
        .unprotected(
            HeaderBuilder::new()
                .key_id(b"kid-2".to_vec())
                .value(
                    -1,
                    Value::Map(vec![(Value::Integer(1.into()), Value::Integer(2.into()))]),
                )
                .build(),
        )
        .ciphertext(vec![0x42; 24])
        .build();
    let info = CoseEncryptBuilder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::A128GCM)
                .build(),
        )
        .unprotected(HeaderBuilder::new().iv(vec![7; 12]).build())
        .add_recipient(recipient)
        .build()
        .to_tagged_vec()
        .unwrap();
    let decoded = suit::EncryptionInfo::decode(&info).unwrap();
    assert_eq!(decoded.recipients[0].alg, alg::ECDH_ES_A128KW);
    assert_eq!(decoded.recipients[0].kid.as_deref(), Some(&b"kid-2"[..]));
    let kek = suit::ReleaseKey::from_parts(alg::A128KW, b"kid-2".to_vec(), &[1; 16]).unwrap();
    assert!(matches!(
        decoded.decrypt(&kek, &[0; 32]),
        Err(Error::UnsupportedAlgorithm {
            alg: alg::ECDH_ES_A128KW,
            ..
        })
    ));
}

#[test]
fn unsupported_command_fails_when_reached_not_when_parsed() {
    use suit::manifest::{Command, CommandSequence};
    let k = key("maker");
    let b = build(3, &k);
    let v = verify_generic(
        &b.envelope,
        &trust(&[(&k, Role::Manufacturer)]),
        &Limits::default(),
    )
    .unwrap();
    let mut m = v.manifest().clone();
    // directive-wait (29, update-management) with an opaque argument: parses fine...
    let seq = CommandSequence(vec![Command::Other {
        id: suit::consts::cmd::WAIT,
        arg: Value::Map(vec![]),
    }]);
    let parsed = CommandSequence::decode_bstr(&seq.encode(), &Limits::default()).unwrap();
    assert_eq!(parsed, seq);
    // ...and a manifest carrying it decodes and verifies; processing reports it.
    m.sequences
        .insert(mk::INSTALL, suit::manifest::Severable::Present(seq));
    let content = {
        // Re-encode the manifest map with the new install sequence.
        let v: Value = ciborium::from_reader(&b.envelope[..]).unwrap();
        let Value::Tag(_, env) = v else { panic!() };
        let Value::Map(env) = *env else { panic!() };
        let bytes = env
            .into_iter()
            .find(|(k, _)| *k == Value::Integer(3.into()))
            .unwrap()
            .1;
        let Value::Map(mut map) =
            ciborium::from_reader::<Value, _>(&bytes.into_bytes().unwrap()[..]).unwrap()
        else {
            panic!()
        };
        for (key, val) in map.iter_mut() {
            if *key == Value::Integer(mk::INSTALL.into()) {
                *val = Value::Bytes(m.sequence(mk::INSTALL).unwrap().encode());
            }
        }
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Map(map), &mut out).unwrap();
        out
    };
    let sig = k.sign1_detached(&manifest_digest(&content));
    let env = build_envelope(&content, &[&sig], &[]);
    let v = verify_generic(
        &env,
        &trust(&[(&k, Role::Manufacturer)]),
        &Limits::default(),
    )
    .unwrap();
    assert!(
        suit::inspect::describe(v.envelope())
            .to_string()
            .contains("directive-wait (opaque)")
    );
    assert_eq!(
        suit::evaluate(
            &v,
            &suit::DeviceState::new(VENDOR, CLASS),
            &Limits::default()
        )
        .unwrap_err()
        .code(),
        "unsupported"
    );
}
