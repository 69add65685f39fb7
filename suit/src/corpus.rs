//! A corpus of hostile envelopes, each named after the attack it represents, with the
//! refusal code every call site must give (`docs/acceptance.md`). Built only with the
//! `test-corpus` feature: `suit`'s own tests and the workspace's cross-site test
//! (`tests/acceptance_corpus.rs`) feed the same cases through `publisher verify`, the update
//! server, the dispatcher's intake and a device, and require the same code at each.
//!
//! Every case starts from a genuine release and changes one thing an attacker (or a
//! limited or revoked signer) controls. The trust file ([`Corpus::trust_toml`]) is the one
//! all sites load; sites run with their own rules, the author signature required.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use ciborium::Value;
use uuid::Uuid;

use crate::cbor;
use crate::consts::{cmd, param};
use crate::cose::SigningKey;
use crate::encryption::ReleaseKey;
use crate::envelope::{Envelope, build_envelope, encode_envelope, manifest_digest};
use crate::ics::{IcsMetadata, UpdateType};
use crate::manifest::{Command, CommandSequence, ComponentIndex, Param, SuitDigest, VendorId};
use crate::release::{ReleaseParams, author_sign, build_release};
use crate::trust::{KeyEntry, Role, Timestamp, TrustFile, UnixTime};

pub const VENDOR: Uuid = Uuid::from_u128(0xfa6b4a53_d5ad_5fdf_be9d_e663e4d41ffe);
pub const CLASS: Uuid = Uuid::from_u128(0x1492af14_2569_5e48_bf42_9b2d51f2ab45);
pub const OTHER: Uuid = Uuid::from_u128(0x11111111_2222_3333_4444_555555555555);
/// A fixed time to judge the corpus at, for tests that inject time (2027-01-15).
pub const NOW: UnixTime = 1_800_000_000;

/// One hostile envelope.
#[derive(Debug, Clone)]
pub struct Case {
    /// Named after the attack.
    pub name: &'static str,
    /// `suit::Error::code` every site must refuse it with.
    pub expect: &'static str,
    /// What reaches the publisher, the update server and the dispatcher's intake.
    pub envelope: Vec<u8>,
    /// The same hostile content as a device receives it: with its domain's valid approval
    /// appended where that leaves the attack unchanged.
    pub for_device: Vec<u8>,
    /// The blob the release was built with.
    pub blob: Vec<u8>,
}

/// The corpus and what the sites need to judge it.
#[derive(Debug)]
pub struct Corpus {
    /// The trust file every site loads.
    pub trust_toml: String,
    /// The domain's approval key (its public part is in the trust file).
    pub approver: SigningKey,
    /// A genuine T2 release every site accepts, with its blob and release key.
    pub good: Case,
    /// The release key of the genuine release.
    pub good_key: ReleaseKey,
    /// A genuine T3 release with a valid author signature.
    pub good_t3: Case,
    /// The hostile cases (at least 30).
    pub cases: Vec<Case>,
}

struct Keys {
    maker: SigningKey,
    maker_t2_only: SigningKey,
    maker_other: SigningKey,
    third: SigningKey,
    internal: SigningKey,
    revoked: SigningKey,
    expired: SigningKey,
    future: SigningKey,
    approver: SigningKey,
    author: SigningKey,
    author_revoked: SigningKey,
}

fn k<R: rand_core::CryptoRng + ?Sized>(rng: &mut R, kid: &str) -> SigningKey {
    SigningKey::generate(rng).with_kid(kid.as_bytes().to_vec())
}

impl Keys {
    fn new<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Keys {
            maker: k(rng, "maker"),
            maker_t2_only: k(rng, "maker-t2-only"),
            maker_other: k(rng, "maker-other-vendor"),
            third: k(rng, "third-party"),
            internal: k(rng, "internal"),
            revoked: k(rng, "maker-revoked"),
            expired: k(rng, "maker-expired"),
            future: k(rng, "maker-future"),
            approver: k(rng, "dispatcher"),
            author: k(rng, "author"),
            author_revoked: k(rng, "author-revoked"),
        }
    }

    fn trust_file(&self, now: UnixTime) -> TrustFile {
        let v = || Some(vec![VENDOR.to_string()]);
        let entry = |key: &SigningKey, role: Role| {
            let kid = String::from_utf8_lossy(key.kid()).into_owned();
            KeyEntry::new(&kid, role, &key.public_key().to_pem())
        };
        let publisher = |key: &SigningKey, role: Role| KeyEntry {
            vendors: v(),
            ..entry(key, role)
        };
        TrustFile {
            keys: vec![
                publisher(&self.maker, Role::Manufacturer),
                KeyEntry {
                    update_types: Some(vec!["T2".into()]),
                    ..publisher(&self.maker_t2_only, Role::Manufacturer)
                },
                KeyEntry {
                    vendors: Some(vec![OTHER.to_string()]),
                    ..entry(&self.maker_other, Role::Manufacturer)
                },
                publisher(&self.third, Role::ThirdParty),
                publisher(&self.internal, Role::Internal),
                KeyEntry {
                    revoked_at: Some(Timestamp(now - 86_400)),
                    ..publisher(&self.revoked, Role::Manufacturer)
                },
                KeyEntry {
                    valid_until: Some(Timestamp(now - 3_600)),
                    ..publisher(&self.expired, Role::Manufacturer)
                },
                KeyEntry {
                    valid_from: Some(Timestamp(now + 86_400)),
                    ..publisher(&self.future, Role::Manufacturer)
                },
                entry(&self.approver, Role::Approver),
                entry(&self.author, Role::Author),
                KeyEntry {
                    revoked: true,
                    ..entry(&self.author_revoked, Role::Author)
                },
            ],
        }
    }
}

const IMAGE: &[u8] = b"firmware image 2.0.0 for the hostile corpus";
const OTHER_IMAGE: &[u8] = b"an image nobody vouched for";

fn params(sequence: u64, t: UpdateType) -> ReleaseParams {
    ReleaseParams {
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: None,
        sequence,
        version: vec![2, 0, 0],
        requires: None,
        uri: Some("coaps://update.example/blob".into()),
        ics: IcsMetadata::new(t),
    }
}

/// A release's manifest content and blob, re-signable.
#[derive(Clone)]
struct Draft {
    content: Vec<u8>,
    blob: Vec<u8>,
}

impl Draft {
    fn sign(&self, signers: &[&SigningKey]) -> Vec<u8> {
        let d = manifest_digest(&self.content);
        let blocks: Vec<Vec<u8>> = signers.iter().map(|s| s.sign1_detached(&d)).collect();
        let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
        build_envelope(&self.content, &refs, &[])
    }

    /// Edits the manifest map.
    fn edit(&self, f: impl FnOnce(&mut Vec<(Value, Value)>)) -> Draft {
        let Value::Map(mut m) = ciborium::from_reader(&self.content[..]).unwrap() else {
            panic!("manifest is a map")
        };
        f(&mut m);
        Draft {
            content: cbor::encode(&Value::Map(m)),
            blob: self.blob.clone(),
        }
    }

    /// Edits a command sequence of the manifest (`None`: the shared sequence).
    fn edit_seq(&self, key: Option<i64>, f: impl FnOnce(&mut Vec<Command>)) -> Draft {
        self.edit(|m| {
            let slot = |m: &mut Vec<(Value, Value)>, k: i64| -> usize {
                m.iter()
                    .position(|(mk, _)| *mk == Value::Integer(k.into()))
                    .expect("member present")
            };
            match key {
                Some(k) => {
                    let i = slot(m, k);
                    let Value::Bytes(b) = &m[i].1 else { panic!() };
                    let mut seq = CommandSequence::decode_bstr(b, &Default::default()).unwrap();
                    f(&mut seq.0);
                    m[i].1 = Value::Bytes(seq.encode());
                }
                None => {
                    let i = slot(m, crate::consts::manifest::COMMON);
                    let Value::Bytes(b) = &m[i].1 else { panic!() };
                    let Value::Map(mut common) = ciborium::from_reader(&b[..]).unwrap() else {
                        panic!()
                    };
                    let j = common
                        .iter()
                        .position(|(ck, _)| {
                            *ck == Value::Integer(crate::consts::common::SHARED_SEQUENCE.into())
                        })
                        .unwrap();
                    let Value::Bytes(sb) = &common[j].1 else {
                        panic!()
                    };
                    let mut seq = CommandSequence::decode_bstr(sb, &Default::default()).unwrap();
                    f(&mut seq.0);
                    common[j].1 = Value::Bytes(seq.encode());
                    m[i].1 = Value::Bytes(cbor::encode(&Value::Map(common)));
                }
            }
        })
    }
}

fn draft<R: rand_core::CryptoRng + ?Sized>(
    p: &ReleaseParams,
    signer: &SigningKey,
    rng: &mut R,
) -> (Draft, ReleaseKey) {
    let r = build_release(p, IMAGE, b"rk-corpus", signer, rng).unwrap();
    let env = Envelope::decode(&r.envelope, &Default::default()).unwrap();
    let content = cbor::decode(&env.manifest_bstr, &Default::default())
        .unwrap()
        .as_bytes()
        .unwrap()
        .to_vec();
    (
        Draft {
            content,
            blob: r.blob,
        },
        r.release_key,
    )
}

/// Appends a valid approval by `approver` to an envelope that decodes; else unchanged.
fn approved(envelope: &[u8], approver: &SigningKey) -> Vec<u8> {
    match Envelope::decode(envelope, &Default::default()) {
        Ok(env) => env.encode_with_extra_block(&approver.sign1_detached(env.signed_payload())),
        Err(_) => envelope.to_vec(),
    }
}

/// Raw (key, value) envelope members.
type Members = Vec<(Vec<u8>, Vec<u8>)>;

/// The envelope's encoded digest, its blocks, and its members other than the wrapper.
fn parts(envelope: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>, Members) {
    let env = Envelope::decode(envelope, &Default::default()).unwrap();
    let blocks = env.auth_blocks.iter().map(|b| b.bytes.clone()).collect();
    (env.digest_bytes.clone(), blocks, env.members_raw().to_vec())
}

fn reassemble(digest: &[u8], blocks: &[Vec<u8>], members: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<&[u8]> = blocks.iter().map(|b| &b[..]).collect();
    encode_envelope(digest, &refs, members)
}

fn with_blocks(envelope: &[u8], f: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    let (d, mut blocks, members) = parts(envelope);
    f(&mut blocks);
    reassemble(&d, &blocks, &members)
}

fn with_members(envelope: &[u8], f: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>)) -> Vec<u8> {
    let (d, blocks, mut members) = parts(envelope);
    f(&mut members);
    reassemble(&d, &blocks, &members)
}

fn override_of(c: &mut Command) -> Option<&mut Vec<(i64, Param)>> {
    match c {
        Command::OverrideParameters(p) => Some(p),
        _ => None,
    }
}

impl Corpus {
    /// Builds the corpus with fresh keys from `rng`, its key validity set around `now` (the
    /// expired key ended an hour before, the future key starts a day after).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R, now: UnixTime) -> Corpus {
        let keys = Keys::new(rng);
        let trust_toml = keys.trust_file(now).to_toml();
        let mut cases = Vec::new();
        let (base, good_key) = draft(&params(7, UpdateType::T2), &keys.maker, rng);
        let good_env = base.sign(&[&keys.maker]);
        let case = |name, expect, envelope: Vec<u8>, blob: &[u8], device: bool| Case {
            name,
            expect,
            for_device: if device {
                approved(&envelope, &keys.approver)
            } else {
                envelope.clone()
            },
            envelope,
            blob: blob.to_vec(),
        };
        let good = case("genuine", "ok", good_env.clone(), &base.blob, true);
        let b = &base.blob;

        // --- Authentication wrapper: padding and junk (unauthenticated bytes).
        let sig = parts(&good_env).1[0].clone();
        let mut junk = |kid: &str| {
            let mut s = k(rng, kid).sign1_detached(b"not this manifest");
            // Keep the structure, break nothing but the signature's meaning.
            let n = s.len();
            s[n - 1] ^= 0x55;
            s
        };
        cases.push(case(
            "padded-wrapper-copies-of-the-signature",
            "duplicate-signature",
            with_blocks(&good_env, |bl| {
                bl.extend(std::iter::repeat_n(sig.clone(), 3))
            }),
            b,
            true,
        ));
        let junk_blocks: Vec<Vec<u8>> = (0..3).map(|i| junk(&format!("junk-{i}"))).collect();
        cases.push(case(
            "padded-wrapper-junk-blocks",
            "untrusted-signer",
            with_blocks(&good_env, |bl| bl.extend(junk_blocks)),
            b,
            true,
        ));
        let junk_approval = junk("dispatcher");
        cases.push(case(
            "junk-block-under-approval-kid",
            "signature-invalid",
            with_blocks(&good_env, |bl| bl.push(junk_approval)),
            b,
            true,
        ));
        let junk_maker = junk("maker");
        cases.push(case(
            "junk-block-under-publisher-kid",
            "signature-invalid",
            with_blocks(&good_env, |bl| bl.push(junk_maker)),
            b,
            true,
        ));
        // COSE_Sign (tag 98) [h'', {}, nil, []]: decodable, never verified here.
        cases.push(case(
            "unsupported-cose-sign-block",
            "untrusted-signer",
            with_blocks(&good_env, |bl| {
                bl.push(vec![0xd8, 0x62, 0x84, 0x40, 0xa0, 0xf6, 0x80])
            }),
            b,
            true,
        ));
        let mac = crate::cose::mac0_detached(&[7u8; 32], &manifest_digest(&base.content)).unwrap();
        cases.push(case(
            "mac-block-without-mac-trust",
            "untrusted-signer",
            with_blocks(&good_env, |bl| bl.push(mac)),
            b,
            true,
        ));
        let nine: Vec<Vec<u8>> = (0..8).map(|i| junk(&format!("pad-{i}"))).collect();
        cases.push(case(
            "wrapper-over-the-block-limit",
            "malformed-envelope",
            with_blocks(&good_env, |bl| bl.extend(nine)),
            b,
            false,
        ));

        // --- Signers: unknown, impostor, revoked, out of validity.
        let attacker = k(rng, "attacker");
        cases.push(case(
            "unknown-signer",
            "untrusted-signer",
            base.sign(&[&attacker]),
            b,
            true,
        ));
        let impostor = k(rng, "maker");
        cases.push(case(
            "impostor-reusing-kid",
            "signature-invalid",
            base.sign(&[&impostor]),
            b,
            true,
        ));
        cases.push(case(
            "revoked-signer",
            "signer-revoked",
            base.sign(&[&keys.revoked]),
            b,
            true,
        ));
        cases.push(case(
            "expired-signer",
            "signer-expired",
            base.sign(&[&keys.expired]),
            b,
            true,
        ));
        cases.push(case(
            "signer-not-yet-valid",
            "signer-not-yet-valid",
            base.sign(&[&keys.future]),
            b,
            true,
        ));
        cases.push(case(
            "good-and-revoked-signers",
            "signer-revoked",
            base.sign(&[&keys.maker, &keys.revoked]),
            b,
            true,
        ));
        let other = draft(&params(8, UpdateType::T2), &keys.maker, rng).0;
        let other_sig = parts(&other.sign(&[&keys.maker])).1[0].clone();
        cases.push(case(
            "signature-lifted-from-another-release",
            "signature-invalid",
            with_blocks(&good_env, |bl| bl[0] = other_sig),
            b,
            true,
        ));
        cases.push(case(
            "unauthenticated-no-blocks",
            "unauthenticated",
            with_blocks(&good_env, Vec::clear),
            b,
            false,
        ));

        // --- Roles, update types, vendors.
        cases.push(case(
            "third-party-signs-t2",
            "signer-not-authorized",
            base.sign(&[&keys.third]),
            b,
            true,
        ));
        let t3 = draft(&params(9, UpdateType::T3), &keys.maker, rng).0;
        let t3_signed = t3.edit(|m| set_author(m, &author_sign(IMAGE, &keys.author)));
        cases.push(case(
            "third-party-signs-t3",
            "signer-not-authorized",
            t3_signed.sign(&[&keys.third]),
            b,
            true,
        ));
        cases.push(case(
            "internal-signs-t2",
            "signer-not-authorized",
            base.sign(&[&keys.internal]),
            b,
            true,
        ));
        cases.push(case(
            "manufacturer-of-another-vendor",
            "signer-not-authorized",
            base.sign(&[&keys.maker_other]),
            b,
            true,
        ));
        cases.push(case(
            "key-narrowed-to-t2-signs-t3",
            "signer-not-authorized",
            t3_signed.sign(&[&keys.maker_t2_only]),
            b,
            true,
        ));
        cases.push(case(
            "author-key-signs-envelope",
            "signer-not-authorized",
            base.sign(&[&keys.author]),
            b,
            true,
        ));

        // --- T3 author signature.
        let good_t3 = case(
            "genuine-t3",
            "ok",
            t3_signed.sign(&[&keys.maker]),
            &t3.blob,
            true,
        );
        let t3_with = |sig: &[u8]| t3.edit(|m| set_author(m, sig)).sign(&[&keys.maker]);
        cases.push(case(
            "t3-author-signed-another-image",
            "author-signature-invalid",
            t3_with(&author_sign(OTHER_IMAGE, &keys.author)),
            b,
            true,
        ));
        cases.push(case(
            "t3-unknown-author",
            "author-signature-invalid",
            t3_with(&author_sign(IMAGE, &k(rng, "someone"))),
            b,
            true,
        ));
        cases.push(case(
            "t3-revoked-author",
            "author-signature-invalid",
            t3_with(&author_sign(IMAGE, &keys.author_revoked)),
            b,
            true,
        ));
        cases.push(case(
            "t3-author-signature-garbage",
            "author-signature-invalid",
            t3_with(&[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40]),
            b,
            true,
        ));
        cases.push(case(
            "t3-author-signature-missing",
            "author-signature-missing",
            t3.sign(&[&keys.maker]),
            b,
            true,
        ));
        // The install sequence overrides the image digest the author vouched for (shared
        // sequence) with another image's: one resolver refuses the second value.
        let other_digest = Param::Digest(SuitDigest::sha256(OTHER_IMAGE));
        cases.push(case(
            "install-sequence-overrides-author-vouched-digest",
            "parameter-conflict",
            t3_signed
                .edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                    let o = c.iter_mut().rev().find_map(override_of).unwrap();
                    o.push((param::IMAGE_DIGEST, other_digest.clone()));
                })
                .sign(&[&keys.maker]),
            b,
            true,
        ));

        // --- Parameters and the profile.
        cases.push(case(
            "install-sequence-overrides-image-digest",
            "parameter-conflict",
            base.edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                let o = c.iter_mut().rev().find_map(override_of).unwrap();
                o.push((param::IMAGE_DIGEST, other_digest.clone()));
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "install-sequence-overrides-vendor",
            "parameter-conflict",
            base.edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                let o = c.iter_mut().rev().find_map(override_of).unwrap();
                o.push((
                    param::VENDOR_IDENTIFIER,
                    Param::Vendor(VendorId::Uuid(OTHER)),
                ));
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "try-each-hides-another-digest",
            "parameter-conflict",
            base.edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                c.push(Command::TryEach {
                    alternatives: vec![CommandSequence(vec![
                        Command::SetComponentIndex(ComponentIndex::One(0)),
                        Command::OverrideParameters(vec![(
                            param::IMAGE_DIGEST,
                            other_digest.clone(),
                        )]),
                    ])],
                    allow_none: true,
                });
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "sequence-without-component-index",
            "profile-violation",
            base.edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                c.remove(0);
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "vendor-condition-removed",
            "profile-violation",
            base.edit_seq(None, |c| {
                c.retain(|x| {
                    !matches!(x, Command::Condition { id, .. } if *id == cmd::VENDOR_IDENTIFIER)
                })
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "vendor-id-not-a-uuid",
            "profile-violation",
            base.edit_seq(None, |c| {
                let o = c.iter_mut().find_map(override_of).unwrap();
                for (key, v) in o.iter_mut() {
                    if *key == param::VENDOR_IDENTIFIER {
                        *v = Param::Vendor(VendorId::Pen(vec![0x1a, 0x2b]));
                    }
                }
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "ciphertext-digest-removed",
            "profile-violation",
            base.edit_seq(None, |c| {
                let last = c
                    .iter()
                    .rposition(|x| matches!(x, Command::OverrideParameters(_)))
                    .unwrap();
                c.remove(last);
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "ics-metadata-removed",
            "profile-violation",
            base.edit(|m| {
                m.retain(|(key, _)| {
                    *key != Value::Integer(crate::consts::manifest::ICS_METADATA.into())
                })
            })
            .sign(&[&keys.maker]),
            b,
            true,
        ));
        cases.push(case(
            "integrated-payload-smuggled",
            "profile-violation",
            with_members(&good_env, |m| {
                m.push((
                    cbor::encode(&Value::Text("#blob".into())),
                    cbor::bstr_wrap(b"x"),
                ))
            }),
            b,
            true,
        ));
        cases.push(case(
            "delegation-chain-smuggled",
            "profile-violation",
            with_members(&good_env, |m| m.push((vec![0x01], cbor::bstr_wrap(b"cwt")))),
            b,
            true,
        ));

        // --- Encoding: non-canonical CBOR, truncation, tampering.
        let mut nonmin = good_env.clone();
        assert_eq!(&nonmin[..5], &[0xd8, 0x6b, 0xa2, 0x02, 0x58]);
        nonmin.splice(4..5, [0x59, 0x00]);
        cases.push(case(
            "non-minimal-cbor-head",
            "malformed-envelope",
            nonmin,
            b,
            false,
        ));
        let mut indef = good_env.clone();
        indef[2] = 0xbf;
        indef.push(0xff);
        cases.push(case(
            "indefinite-length-map",
            "malformed-envelope",
            indef,
            b,
            false,
        ));
        let mut trailing = good_env.clone();
        trailing.push(0x00);
        cases.push(case(
            "trailing-bytes",
            "malformed-envelope",
            trailing,
            b,
            false,
        ));
        cases.push(case(
            "truncated-envelope",
            "malformed-envelope",
            good_env[..good_env.len() - 1].to_vec(),
            b,
            false,
        ));
        cases.push(case(
            "duplicate-key-in-manifest",
            "malformed-envelope",
            base.edit(|m| m.push((Value::Integer(2.into()), Value::Integer(99.into()))))
                .sign(&[&keys.maker]),
            b,
            false,
        ));
        cases.push(case(
            "unknown-critical-manifest-member",
            "malformed-envelope",
            base.edit(|m| m.push((Value::Integer(99.into()), Value::Integer(1.into()))))
                .sign(&[&keys.maker]),
            b,
            false,
        ));
        cases.push(case(
            "severed-member-without-digest",
            "malformed-envelope",
            with_members(&good_env, |m| {
                m.push((vec![0x14], cbor::bstr_wrap(&[0x80])))
            }),
            b,
            false,
        ));
        let mut tampered = good_env.clone();
        let at = tampered
            .windows(16)
            .position(|w| w == CLASS.as_bytes())
            .unwrap();
        tampered[at] ^= 0xff;
        cases.push(case(
            "manifest-changed-after-signing",
            "manifest-digest-mismatch",
            tampered,
            b,
            true,
        ));
        let (_, blocks, members) = parts(&good_env);
        let sha384 = cbor::encode(&Value::Array(vec![
            Value::Integer((-43).into()),
            Value::Bytes(vec![0; 48]),
        ]));
        cases.push(case(
            "wrapper-digest-not-sha256",
            "unsupported-algorithm",
            reassemble(&sha384, &blocks, &members),
            b,
            false,
        ));
        Corpus {
            trust_toml,
            approver: keys.approver,
            good,
            good_key,
            good_t3,
            cases,
        }
    }
}

fn set_author(m: &mut [(Value, Value)], sig: &[u8]) {
    let ics_key = Value::Integer(crate::consts::manifest::ICS_METADATA.into());
    let (_, ics) = m.iter_mut().find(|(key, _)| *key == ics_key).unwrap();
    let Value::Map(fields) = ics else { panic!() };
    fields.retain(|(key, _)| *key != Value::Integer(8.into()));
    fields.push((Value::Integer(8.into()), Value::Bytes(sig.to_vec())));
}
