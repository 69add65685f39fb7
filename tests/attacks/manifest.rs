//! RFC 9124's manifest threats against the real update server and dispatcher (shared chain
//! of services): THREAT.MFST.MODIFICATION (a manifest changed after signing, with or
//! without its digest recomputed), severed-member substitution (a severable element
//! replaced by another, the manifest keeping the digest of the original), and a signer
//! outside its vendor scope.

use ics_suit::chain::{CLASS_HMI, CLASS_PLC, VENDOR, image, params};
use suit::UpdateType;

use crate::common::*;

/// Attack (RFC 9124 THREAT.MFST.MODIFICATION; A1 on the publisher's path, A2): one byte of
/// a signed manifest changed (the class-id: the release would target other devices), the
/// authentication wrapper kept as signed.
///
/// Check: the manifest digest over the bstr as received (`suit::accept` step 3).
/// Asserts: 422 `manifest-digest-mismatch` at the update server and on the dispatcher's
/// direct upload; nothing stored at either.
#[test]
fn manifest_changed_after_signing_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let p = params(CLASS_HMI, UpdateType::T1, 910, vec![1, 9, 1]).unwrap();
        let b = build(&c.third_party.key, &p, &image(4096, 20), "mod-1");
        let changed = manifest_byte_flipped(&b.envelope, CLASS_HMI);
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, changed.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "manifest-digest-mismatch");
        assert_not_at_update_server(c, 0, &release_id(&changed), &b.blob).await;
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;

        let i = build(&c.internal, &p, &image(2048, 21), "mod-2");
        let changed = manifest_byte_flipped(&i.envelope, CLASS_HMI);
        let got = direct_upload(c, &changed, &i.blob, &i.key).await;
        assert_refused(&got, 422, "manifest-digest-mismatch");
        assert_not_at_dispatcher(c, &release_id(&changed)).await;
        assert_not_at_dispatcher(c, &i.id).await;
    });
}

/// Attack (RFC 9124 THREAT.MFST.MODIFICATION; A1/A2): the manifest is changed and the
/// digest in the authentication wrapper recomputed to match, the publisher's signature kept.
///
/// Check: the signature is over the digest as received (`suit::accept` step 4).
/// Asserts: 422 `signature-invalid` at the update server and on the direct upload; nothing
/// stored.
#[test]
fn manifest_changed_with_digest_recomputed_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let p = params(CLASS_HMI, UpdateType::T1, 911, vec![1, 9, 2]).unwrap();
        let redigest = |env: &[u8]| {
            let mut content = manifest_content(env);
            let class = uuid::Uuid::parse_str(CLASS_HMI).unwrap();
            let at = content
                .windows(16)
                .position(|w| w == class.as_bytes())
                .unwrap();
            content[at] ^= 0x01;
            let blocks = auth_blocks(env);
            let refs: Vec<&[u8]> = blocks.iter().map(Vec::as_slice).collect();
            suit::envelope::build_envelope(&content, &refs, &[])
        };
        let b = build(&c.third_party.key, &p, &image(4096, 22), "redigest-1");
        let changed = redigest(&b.envelope);
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, changed.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "signature-invalid");
        assert_not_at_update_server(c, 0, &release_id(&changed), &b.blob).await;

        let i = build(&c.internal, &p, &image(2048, 23), "redigest-2");
        let changed = redigest(&i.envelope);
        let got = direct_upload(c, &changed, &i.blob, &i.key).await;
        assert_refused(&got, 422, "signature-invalid");
        assert_not_at_dispatcher(c, &release_id(&changed)).await;
    });
}

/// A release whose install sequence is severed (draft-ietf-suit-manifest §8.4.6): the
/// manifest holds only its digest, the envelope carries the sequence as member 20.
/// Returns the envelope and the severed sequence's bytes.
fn severed_release(signer: &suit::SigningKey, b: &Built) -> (Vec<u8>, Vec<u8>) {
    use ciborium::Value as V;
    let content = manifest_content(&b.envelope);
    let mut m: V = ciborium::from_reader(&content[..]).unwrap();
    let entries = match &mut m {
        V::Map(e) => e,
        _ => panic!("manifest is not a map"),
    };
    let slot = entries
        .iter_mut()
        .find(|(k, _)| k.as_integer() == Some(20.into()))
        .map(|(_, v)| v)
        .unwrap();
    let install = slot.as_bytes().unwrap().clone();
    let digest = hex::decode(sha256_hex(&suit::cbor::bstr_wrap(&install))).unwrap();
    *slot = V::Array(vec![V::Integer((-16).into()), V::Bytes(digest)]);
    let mut severed_content = Vec::new();
    ciborium::into_writer(&m, &mut severed_content).unwrap();
    let block = signer.sign1_detached(&suit::envelope::manifest_digest(&severed_content));
    let env = suit::envelope::build_envelope(&severed_content, &[&block], &[(20, install.clone())]);
    (env, install)
}

/// `severed`'s envelope with its severed member 20 replaced by `other` (the manifest still
/// holds the digest of the original).
fn substituted(severed: &[u8], other: &[u8]) -> Vec<u8> {
    let content = manifest_content(severed);
    let block = auth_blocks(severed).remove(0);
    suit::envelope::build_envelope(&content, &[&block], &[(20, other.to_vec())])
}

/// Attack (RFC 9124 THREAT.MFST.MODIFICATION via a severable element; A1/A2): a release
/// whose install sequence is severed — the signed manifest holds its digest — has that
/// member replaced by the install sequence of another genuine release (which fetches and
/// decrypts another blob). The unaltered severed release passes `suit::accept` under the
/// update server's rules with the same key, so the substitution alone is what is refused.
///
/// Check: a severed member must match the digest the manifest holds for it
/// (`suit::Envelope::decode`, manifest §8.4.6).
/// Asserts: 400 `malformed-envelope` naming the severed member at the update server and on
/// the dispatcher's direct upload; nothing stored.
#[test]
fn severed_member_substitution_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let p = params(CLASS_PLC, UpdateType::T2, 912, vec![9, 1, 2]).unwrap();
        let genuine = build(&c.manufacturer.key, &p, &image(4096, 24), "sever-1");
        let other = build(&c.manufacturer.key, &p, &image(4096, 25), "sever-2");
        let (severed, _) = severed_release(&c.manufacturer.key, &genuine);
        let (_, other_install) = severed_release(&c.manufacturer.key, &other);

        // Control: the severed release itself is acceptable to the same checks.
        let pem = c.manufacturer.key.public_key().to_pem();
        let trust = suit::TrustFile {
            keys: vec![suit::trust::KeyEntry {
                vendors: Some(vec![VENDOR.to_owned()]),
                ..suit::trust::KeyEntry::new("acme-fw-2026", suit::Role::Manufacturer, &pem)
            }],
        };
        let store =
            suit::TrustStore::from_toml(&trust.to_toml(), &mut suit::trust::no_key_files).unwrap();
        let now = foundations::now_unix();
        suit::accept(&severed, &store, &suit::Rules::update_server(), now)
            .expect("the severed release is acceptable before the substitution");

        let attack = substituted(&severed, &other_install);
        let token = token_of(c, &c.manufacturer).await;
        let r = us_upload(c, 0, &token, attack.clone(), genuine.blob.clone()).await;
        assert_us_refused(&r, 400, "malformed-envelope");
        let detail = r.unwrap_err().to_string();
        assert!(detail.contains("severed member 20"), "{detail}");
        assert_not_at_update_server(c, 0, &release_id(&attack), &genuine.blob).await;

        let ip = params(CLASS_HMI, UpdateType::T1, 912, vec![1, 9, 3]).unwrap();
        let i = build(&c.internal, &ip, &image(2048, 26), "sever-3");
        let i2 = build(&c.internal, &ip, &image(2048, 27), "sever-4");
        let (isev, _) = severed_release(&c.internal, &i);
        let (_, i2_install) = severed_release(&c.internal, &i2);
        let attack = substituted(&isev, &i2_install);
        let got = direct_upload(c, &attack, &i.blob, &i.key).await;
        assert_refused(&got, 422, "malformed-envelope");
        assert!(
            got.1["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("severed member 20"),
            "{}",
            got.1
        );
        assert_not_at_dispatcher(c, &release_id(&attack)).await;
    });
}

/// Attack (A4: another vendor's manufacturer, or a manufacturer key used beyond its
/// scope): firmware for a vendor-id the signing key is not registered for, uploaded with a
/// valid publisher token.
///
/// Check: a key signs only for the vendors of its trust-store entry (`suit::accept`
/// step 6), before the token's products are even looked at.
/// Asserts: 422 `signer-not-authorized`; nothing stored.
#[test]
fn key_signing_for_another_vendor_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let mut p = params(CLASS_PLC, UpdateType::T2, 913, vec![9, 1, 3]).unwrap();
        p.vendor_id = uuid::Uuid::from_u128(0x0bad0bad_0bad_4bad_8bad_0bad0bad0bad);
        let b = build(&c.manufacturer.key, &p, &image(4096, 28), "vendor-1");
        let token = token_of(c, &c.manufacturer).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "signer-not-authorized");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
    });
}
