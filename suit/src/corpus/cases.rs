//! The hostile cases, by attack family. Each family pushes its cases in a fixed order, and
//! [`super::Corpus::generate`] runs the families in a fixed order, so the corpus is the same
//! list for the same randomness.

use ciborium::Value;

use super::{
    CLASS, Draft, Gen, IMAGE, OTHER, OTHER_IMAGE, UpdateType, draft, k, params, parts, reassemble,
    set_author, with_blocks, with_members,
};
use crate::cbor;
use crate::consts::{cmd, param};
use crate::envelope::manifest_digest;
use crate::manifest::{Command, CommandSequence, ComponentIndex, Param, VendorId};
use crate::release::author_sign;

pub(super) fn wrapper_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, rng: &mut R) {
    // --- Authentication wrapper: padding and junk (unauthenticated bytes).
    let sig = parts(&g.good_env).1[0].clone();
    let mut junk = |kid: &str| {
        let mut s = k(rng, kid).sign1_detached(b"not this manifest");
        // Keep the structure, break nothing but the signature's meaning.
        let n = s.len();
        s[n - 1] ^= 0x55;
        s
    };
    g.push(
        "padded-wrapper-copies-of-the-signature",
        "duplicate-signature",
        with_blocks(&g.good_env, |bl| {
            bl.extend(std::iter::repeat_n(sig.clone(), 3))
        }),
        true,
    );
    let junk_blocks: Vec<Vec<u8>> = (0..3).map(|i| junk(&format!("junk-{i}"))).collect();
    g.push(
        "padded-wrapper-junk-blocks",
        "untrusted-signer",
        with_blocks(&g.good_env, |bl| bl.extend(junk_blocks)),
        true,
    );
    let junk_approval = junk("dispatcher");
    g.push(
        "junk-block-under-approval-kid",
        "signature-invalid",
        with_blocks(&g.good_env, |bl| bl.push(junk_approval)),
        true,
    );
    let junk_maker = junk("maker");
    g.push(
        "junk-block-under-publisher-kid",
        "signature-invalid",
        with_blocks(&g.good_env, |bl| bl.push(junk_maker)),
        true,
    );
    // COSE_Sign (tag 98) [h'', {}, nil, []]: decodable, never verified here.
    g.push(
        "unsupported-cose-sign-block",
        "untrusted-signer",
        with_blocks(&g.good_env, |bl| {
            bl.push(vec![0xd8, 0x62, 0x84, 0x40, 0xa0, 0xf6, 0x80])
        }),
        true,
    );
    let mac = crate::cose::mac0_detached(&[7u8; 32], &manifest_digest(&g.base.content)).unwrap();
    g.push(
        "mac-block-without-mac-trust",
        "untrusted-signer",
        with_blocks(&g.good_env, |bl| bl.push(mac)),
        true,
    );
    let nine: Vec<Vec<u8>> = (0..8).map(|i| junk(&format!("pad-{i}"))).collect();
    g.push(
        "wrapper-over-the-block-limit",
        "malformed-envelope",
        with_blocks(&g.good_env, |bl| bl.extend(nine)),
        false,
    );
}

pub(super) fn signer_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, rng: &mut R) {
    // --- Signers: unknown, impostor, revoked, out of validity.
    let attacker = k(rng, "attacker");
    g.push(
        "unknown-signer",
        "untrusted-signer",
        g.base.sign(&[&attacker]),
        true,
    );
    let impostor = k(rng, "maker");
    g.push(
        "impostor-reusing-kid",
        "signature-invalid",
        g.base.sign(&[&impostor]),
        true,
    );
    g.push(
        "revoked-signer",
        "signer-revoked",
        g.base.sign(&[&g.keys.revoked]),
        true,
    );
    g.push(
        "expired-signer",
        "signer-expired",
        g.base.sign(&[&g.keys.expired]),
        true,
    );
    g.push(
        "signer-not-yet-valid",
        "signer-not-yet-valid",
        g.base.sign(&[&g.keys.future]),
        true,
    );
    g.push(
        "good-and-revoked-signers",
        "signer-revoked",
        g.base.sign(&[&g.keys.maker, &g.keys.revoked]),
        true,
    );
    let other = draft(&params(8, UpdateType::T2), &g.keys.maker, rng).0;
    let other_sig = parts(&other.sign(&[&g.keys.maker])).1[0].clone();
    g.push(
        "signature-lifted-from-another-release",
        "signature-invalid",
        with_blocks(&g.good_env, |bl| bl[0] = other_sig),
        true,
    );
    g.push(
        "unauthenticated-no-blocks",
        "unauthenticated",
        with_blocks(&g.good_env, Vec::clear),
        false,
    );
}

pub(super) fn role_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, _rng: &mut R) {
    // --- Roles, update types, vendors.
    g.push(
        "third-party-signs-t2",
        "signer-not-authorized",
        g.base.sign(&[&g.keys.third]),
        true,
    );
    g.push(
        "third-party-signs-t3",
        "signer-not-authorized",
        g.t3_signed.sign(&[&g.keys.third]),
        true,
    );
    g.push(
        "internal-signs-t2",
        "signer-not-authorized",
        g.base.sign(&[&g.keys.internal]),
        true,
    );
    g.push(
        "manufacturer-of-another-vendor",
        "signer-not-authorized",
        g.base.sign(&[&g.keys.maker_other]),
        true,
    );
    g.push(
        "key-narrowed-to-t2-signs-t3",
        "signer-not-authorized",
        g.t3_signed.sign(&[&g.keys.maker_t2_only]),
        true,
    );
    g.push(
        "author-key-signs-envelope",
        "signer-not-authorized",
        g.base.sign(&[&g.keys.author]),
        true,
    );
}

pub(super) fn t3_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, rng: &mut R) {
    // --- T3 author signature.
    g.push(
        "t3-author-signed-another-image",
        "author-signature-invalid",
        t3_signed_with(g, &author_sign(OTHER_IMAGE, &g.keys.author)),
        true,
    );
    g.push(
        "t3-unknown-author",
        "author-signature-invalid",
        t3_signed_with(g, &author_sign(IMAGE, &k(rng, "someone"))),
        true,
    );
    g.push(
        "t3-revoked-author",
        "author-signature-invalid",
        t3_signed_with(g, &author_sign(IMAGE, &g.keys.author_revoked)),
        true,
    );
    g.push(
        "t3-author-signature-garbage",
        "author-signature-invalid",
        t3_signed_with(g, &[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40]),
        true,
    );
    g.push(
        "t3-author-signature-missing",
        "author-signature-missing",
        g.t3.sign(&[&g.keys.maker]),
        true,
    );
    // The install sequence overrides the image digest the author vouched for (shared
    // sequence) with another image's: one resolver refuses the second value.
    g.push(
        "install-sequence-overrides-author-vouched-digest",
        "parameter-conflict",
        install_overrides(&g.t3_signed, param::IMAGE_DIGEST, g.other_digest.clone())
            .sign(&[&g.keys.maker]),
        true,
    );
}

pub(super) fn parameter_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, _rng: &mut R) {
    // --- Parameters: a later sequence contradicts what the shared sequence set.
    g.push(
        "install-sequence-overrides-image-digest",
        "parameter-conflict",
        install_overrides(&g.base, param::IMAGE_DIGEST, g.other_digest.clone())
            .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "install-sequence-overrides-vendor",
        "parameter-conflict",
        install_overrides(
            &g.base,
            param::VENDOR_IDENTIFIER,
            Param::Vendor(VendorId::Uuid(OTHER)),
        )
        .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "try-each-hides-another-digest",
        "parameter-conflict",
        g.base
            .edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                c.push(Command::TryEach {
                    alternatives: vec![CommandSequence(vec![
                        Command::SetComponentIndex(ComponentIndex::One(0)),
                        Command::OverrideParameters(vec![(
                            param::IMAGE_DIGEST,
                            g.other_digest.clone(),
                        )]),
                    ])],
                    allow_none: true,
                });
            })
            .sign(&[&g.keys.maker]),
        true,
    );
}

pub(super) fn profile_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, _rng: &mut R) {
    // --- The profile: what every release must state is missing or of the wrong kind.
    g.push(
        "sequence-without-component-index",
        "profile-violation",
        g.base
            .edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
                c.remove(0);
            })
            .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "vendor-condition-removed",
        "profile-violation",
        g.base
            .edit_seq(None, |c| {
                c.retain(|x| {
                !matches!(x, Command::Condition { id, .. } if *id == cmd::VENDOR_IDENTIFIER)
            })
            })
            .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "vendor-id-not-a-uuid",
        "profile-violation",
        g.base
            .edit_seq(None, |c| {
                let o = c.iter_mut().find_map(override_of).unwrap();
                for (key, v) in o.iter_mut() {
                    if *key == param::VENDOR_IDENTIFIER {
                        *v = Param::Vendor(VendorId::Pen(vec![0x1a, 0x2b]));
                    }
                }
            })
            .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "ciphertext-digest-removed",
        "profile-violation",
        g.base
            .edit_seq(None, |c| {
                let last = c
                    .iter()
                    .rposition(|x| matches!(x, Command::OverrideParameters(_)))
                    .unwrap();
                c.remove(last);
            })
            .sign(&[&g.keys.maker]),
        true,
    );
    g.push(
        "ics-metadata-removed",
        "profile-violation",
        g.base
            .edit(|m| {
                m.retain(|(key, _)| {
                    *key != Value::Integer(crate::consts::manifest::ICS_METADATA.into())
                })
            })
            .sign(&[&g.keys.maker]),
        true,
    );
}

pub(super) fn smuggling_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, _rng: &mut R) {
    // --- Envelope members the profile does not allow, added after signing.
    g.push(
        "integrated-payload-smuggled",
        "profile-violation",
        with_members(&g.good_env, |m| {
            m.push((
                cbor::encode(&Value::Text("#blob".into())),
                cbor::bstr_wrap(b"x"),
            ))
        }),
        true,
    );
    g.push(
        "delegation-chain-smuggled",
        "profile-violation",
        with_members(&g.good_env, |m| {
            m.push((vec![0x01], cbor::bstr_wrap(b"cwt")))
        }),
        true,
    );
}

pub(super) fn encoding_cases<R: rand_core::CryptoRng + ?Sized>(g: &mut Gen<'_>, _rng: &mut R) {
    // --- Encoding: non-canonical CBOR, truncation, tampering.
    let mut nonmin = g.good_env.clone();
    assert_eq!(&nonmin[..5], &[0xd8, 0x6b, 0xa2, 0x02, 0x58]);
    nonmin.splice(4..5, [0x59, 0x00]);
    g.push("non-minimal-cbor-head", "malformed-envelope", nonmin, false);
    let mut indef = g.good_env.clone();
    indef[2] = 0xbf;
    indef.push(0xff);
    g.push("indefinite-length-map", "malformed-envelope", indef, false);
    let mut trailing = g.good_env.clone();
    trailing.push(0x00);
    g.push("trailing-bytes", "malformed-envelope", trailing, false);
    g.push(
        "truncated-envelope",
        "malformed-envelope",
        g.good_env[..g.good_env.len() - 1].to_vec(),
        false,
    );
    g.push(
        "duplicate-key-in-manifest",
        "malformed-envelope",
        g.base
            .edit(|m| m.push((Value::Integer(2.into()), Value::Integer(99.into()))))
            .sign(&[&g.keys.maker]),
        false,
    );
    g.push(
        "unknown-critical-manifest-member",
        "malformed-envelope",
        g.base
            .edit(|m| m.push((Value::Integer(99.into()), Value::Integer(1.into()))))
            .sign(&[&g.keys.maker]),
        false,
    );
    g.push(
        "severed-member-without-digest",
        "malformed-envelope",
        with_members(&g.good_env, |m| {
            m.push((vec![0x14], cbor::bstr_wrap(&[0x80])))
        }),
        false,
    );
    let mut tampered = g.good_env.clone();
    let at = tampered
        .windows(16)
        .position(|w| w == CLASS.as_bytes())
        .unwrap();
    tampered[at] ^= 0xff;
    g.push(
        "manifest-changed-after-signing",
        "manifest-digest-mismatch",
        tampered,
        true,
    );
    let (_, blocks, members) = parts(&g.good_env);
    let sha384 = cbor::encode(&Value::Array(vec![
        Value::Integer((-43).into()),
        Value::Bytes(vec![0; 48]),
    ]));
    g.push(
        "wrapper-digest-not-sha256",
        "unsupported-algorithm",
        reassemble(&sha384, &blocks, &members),
        false,
    );
}

/// The T3 release with `sig` as its author signature, signed by the manufacturer.
fn t3_signed_with(g: &Gen<'_>, sig: &[u8]) -> Vec<u8> {
    g.t3.edit(|m| set_author(m, sig)).sign(&[&g.keys.maker])
}

fn override_of(c: &mut Command) -> Option<&mut Vec<(i64, Param)>> {
    match c {
        Command::OverrideParameters(p) => Some(p),
        _ => None,
    }
}

/// `draft` with `(key, value)` added to the last override-parameters of its install
/// sequence.
fn install_overrides(draft: &Draft, key: i64, value: Param) -> Draft {
    draft.edit_seq(Some(crate::consts::manifest::INSTALL), |c| {
        let o = c.iter_mut().rev().find_map(override_of).unwrap();
        o.push((key, value));
    })
}
