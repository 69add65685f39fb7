//! Intake: the dispatcher's trust store with roles, vendors, rotation and revocation.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use chrono::{DateTime, TimeZone, Utc};
use dispatcher::intake::{accept, intake_rules};
use suit::release::{ReleaseParams, build_release};
use suit::trust::{KeyEntry, Timestamp, TrustFile};
use suit::{Category, IcsMetadata, Role, SigningKey, UpdateType};
use uuid::Uuid;

const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(&mut rand_core::UnwrapErr(getrandom::SysRng))
        .with_kid(kid.as_bytes().to_vec())
}

fn release(signer: &SigningKey, t: UpdateType) -> Vec<u8> {
    let mut ics = IcsMetadata::new(t);
    ics.categories = vec![Category::Security];
    ics.cves = vec!["CVE-2026-4242".into()];
    let p = ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence: 3,
        version: vec![1, 1, 0],
        requires: None,
        uri: None,
        ics,
    };
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    build_release(&p, b"image", b"rk", signer, &mut rng)
        .unwrap()
        .envelope
}

fn entry(k: &SigningKey, role: Role) -> KeyEntry {
    KeyEntry {
        vendors: Some(vec![VENDOR.to_string()]),
        ..KeyEntry::new(
            std::str::from_utf8(k.kid()).unwrap(),
            role,
            &k.public_key().to_pem(),
        )
    }
}

/// Accepts at intake under the trust file as it stands.
fn at_intake(
    envelope: &[u8],
    trust: &TrustFile,
) -> Result<dispatcher::intake::Accepted, suit::Error> {
    let store = trust.to_store(&mut suit::trust::no_key_files).unwrap();
    accept(envelope, &store, &intake_rules(true), now())
}

fn code(r: Result<dispatcher::intake::Accepted, suit::Error>) -> String {
    r.map(|_| "accepted".to_owned())
        .unwrap_or_else(|e| e.code().to_owned())
}

#[test]
fn manufacturer_release_is_accepted_with_its_facts() {
    let maker = key("acme");
    let trust = TrustFile {
        keys: vec![entry(&maker, Role::Manufacturer)],
    };
    let a = at_intake(&release(&maker, UpdateType::T2), &trust).unwrap();
    assert_eq!(a.publisher_kid, "acme");
    assert_eq!(a.facts.update_type, UpdateType::T2);
    assert_eq!(a.facts.publisher_role, Role::Manufacturer);
    assert_eq!((a.facts.vendor, a.facts.class), (Some(VENDOR), Some(CLASS)));
    assert_eq!(a.facts.cves, vec!["CVE-2026-4242".to_owned()]);
}

#[test]
fn roles_vendors_rotation_and_revocation() {
    let maker = key("acme");
    let lib = key("libco");
    let rogue = key("rogue");
    let mut trust = TrustFile {
        keys: vec![
            entry(&maker, Role::Manufacturer),
            entry(&lib, Role::ThirdParty),
        ],
    };

    assert_eq!(
        code(at_intake(&release(&rogue, UpdateType::T2), &trust)),
        "untrusted-signer"
    );
    assert_eq!(
        code(at_intake(&release(&lib, UpdateType::T2), &trust)),
        "signer-not-authorized"
    );
    let t1 = at_intake(&release(&lib, UpdateType::T1), &trust).unwrap();
    assert_eq!(t1.facts.publisher_role, Role::ThirdParty);

    // Scoped to another vendor.
    trust.keys[0].vendors = Some(vec![Uuid::from_u128(1).to_string()]);
    assert_eq!(
        code(at_intake(&release(&maker, UpdateType::T2), &trust)),
        "signer-not-authorized"
    );
    trust.keys[0].vendors = Some(vec![VENDOR.to_string()]);

    // Rotation: outside the validity period the key is not trusted.
    let secs = |t: DateTime<Utc>| Timestamp(t.timestamp() as u64);
    trust.keys[0].valid_until = Some(secs(now() - chrono::Duration::days(1)));
    assert_eq!(
        code(at_intake(&release(&maker, UpdateType::T2), &trust)),
        "signer-expired"
    );
    trust.keys[0].valid_until = None;
    trust.keys[0].valid_from = Some(secs(now() + chrono::Duration::days(1)));
    assert_eq!(
        code(at_intake(&release(&maker, UpdateType::T2), &trust)),
        "signer-not-yet-valid"
    );
    trust.keys[0].valid_from = None;

    // Revocation.
    trust.keys[0].revoked = true;
    assert_eq!(
        code(at_intake(&release(&maker, UpdateType::T2), &trust)),
        "signer-revoked"
    );
}

#[test]
fn release_without_ics_metadata_is_refused() {
    // The IETF example manifest (no ICS metadata), signed by a trusted key with a kid.
    let v = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/suit-manifest/manifest-spec/example0.signed.cbor");
    let example = std::fs::read(v).unwrap();
    let value: ciborium::Value = ciborium::from_reader(&example[..]).unwrap();
    let ciborium::Value::Tag(107, map) = value else {
        panic!()
    };
    let manifest = map
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| *k == ciborium::Value::Integer(3.into()))
        .unwrap()
        .1
        .as_bytes()
        .unwrap()
        .clone();
    let maker = key("acme");
    let sig = maker.sign1_detached(&suit::envelope::manifest_digest(&manifest));
    let env = suit::envelope::build_envelope(&manifest, &[&sig], &[]);
    let mut trust = TrustFile {
        keys: vec![entry(&maker, Role::Manufacturer)],
    };
    // The example's vendor is not ours; scope is not the point here.
    trust.keys[0].vendors = Some(vec!["*".into()]);
    assert_eq!(code(at_intake(&env, &trust)), "profile-violation");
}

#[test]
fn trust_file_with_key_files_and_the_approval_kid() {
    let dir = tempfile::tempdir().unwrap();
    let maker = key("acme");
    let approver = key("dispatcher-1");
    std::fs::write(dir.path().join("acme.pem"), maker.public_key().to_pem()).unwrap();
    let text = format!(
        "[[key]]\nkid = \"acme\"\nrole = \"manufacturer\"\npublic_key_file = \"acme.pem\"\n\
         vendors = [\"{VENDOR}\"]\n"
    );
    let path = dir.path().join("trust.toml");
    std::fs::write(&path, &text).unwrap();
    let t = dispatcher::intake::load_trust(&path, &approver.public_key()).unwrap();
    // The key file is inlined for bundles; the approval key is in the store.
    assert!(t.file.keys[0].public_key.is_some());
    assert_eq!(
        t.store.by_kid(b"dispatcher-1").map(|a| a.role()),
        Some(Role::Approver)
    );
    // The dispatcher's own kid cannot be claimed by the file.
    let clash = text.replace("kid = \"acme\"", "kid = \"dispatcher-1\"");
    std::fs::write(&path, clash).unwrap();
    let e = dispatcher::intake::load_trust(&path, &approver.public_key()).unwrap_err();
    assert!(e.to_string().contains("approval kid"), "{e}");
}
