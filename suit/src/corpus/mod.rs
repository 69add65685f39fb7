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

mod cases;

use ciborium::Value;
use uuid::Uuid;

use crate::cbor;
use crate::cose::SigningKey;
use crate::encryption::ReleaseKey;
use crate::envelope::{Envelope, build_envelope, encode_envelope, manifest_digest};
use crate::ics::{IcsMetadata, UpdateType};
use crate::manifest::{Command, CommandSequence, Param, SuitDigest};
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

impl Corpus {
    /// Builds the corpus with fresh keys from `rng`, its key validity set around `now` (the
    /// expired key ended an hour before, the future key starts a day after).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R, now: UnixTime) -> Corpus {
        let keys = Keys::new(rng);
        let trust_toml = keys.trust_file(now).to_toml();
        let (base, good_key) = draft(&params(7, UpdateType::T2), &keys.maker, rng);
        let good_env = base.sign(&[&keys.maker]);
        let t3 = draft(&params(9, UpdateType::T3), &keys.maker, rng).0;
        let t3_signed = t3.edit(|m| set_author(m, &author_sign(IMAGE, &keys.author)));
        let mut g = Gen {
            keys: &keys,
            base,
            good_env,
            t3,
            t3_signed,
            other_digest: Param::Digest(SuitDigest::sha256(OTHER_IMAGE)),
            cases: Vec::new(),
        };
        let good = g.case("genuine", "ok", g.good_env.clone(), true);
        let good_t3 = Case {
            blob: g.t3.blob.clone(),
            ..g.case("genuine-t3", "ok", g.t3_signed.sign(&[&keys.maker]), true)
        };
        for section in [
            cases::wrapper_cases::<R>,
            cases::signer_cases::<R>,
            cases::role_cases::<R>,
            cases::t3_cases::<R>,
            cases::parameter_cases::<R>,
            cases::profile_cases::<R>,
            cases::smuggling_cases::<R>,
            cases::encoding_cases::<R>,
        ] {
            section(&mut g, rng);
        }
        let cases = g.cases;
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

/// What every case is built from.
struct Gen<'k> {
    keys: &'k Keys,
    /// A genuine T2 release.
    base: Draft,
    /// It signed by the manufacturer.
    good_env: Vec<u8>,
    /// A T3 release without, and with, a valid author signature.
    t3: Draft,
    t3_signed: Draft,
    /// The digest of an image nobody vouched for.
    other_digest: Param,
    cases: Vec<Case>,
}

impl Gen<'_> {
    fn case(
        &self,
        name: &'static str,
        expect: &'static str,
        envelope: Vec<u8>,
        device: bool,
    ) -> Case {
        Case {
            name,
            expect,
            for_device: if device {
                approved(&envelope, &self.keys.approver)
            } else {
                envelope.clone()
            },
            envelope,
            blob: self.base.blob.clone(),
        }
    }

    fn push(&mut self, name: &'static str, expect: &'static str, envelope: Vec<u8>, device: bool) {
        let c = self.case(name, expect, envelope, device);
        self.cases.push(c);
    }
}

fn set_author(m: &mut [(Value, Value)], sig: &[u8]) {
    let ics_key = Value::Integer(crate::consts::manifest::ICS_METADATA.into());
    let (_, ics) = m.iter_mut().find(|(key, _)| *key == ics_key).unwrap();
    let Value::Map(fields) = ics else { panic!() };
    fields.retain(|(key, _)| *key != Value::Integer(8.into()));
    fields.push((Value::Integer(8.into()), Value::Bytes(sig.to_vec())));
}
