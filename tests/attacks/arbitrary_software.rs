//! TUF's *arbitrary software* attack: make a dispatcher or a device take software its
//! publisher did not sign — unsigned, signed by an unknown key, by an impostor under a
//! trusted kid, by a key the plant does not trust, by a key outside its role — or smuggle
//! bytes nobody authenticated in beside a genuine signature. Every call site runs the one
//! acceptance path (`suit::accept`, `docs/acceptance.md`); these attacks hit the update
//! server's upload and the dispatcher's intake (from the update server, and the direct
//! upload of internal publishers) on the shared chain of services.

use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Publisher, image, params};
use suit::UpdateType;

use crate::common::*;

fn app(seq: u64) -> suit::ReleaseParams {
    params(CLASS_HMI, UpdateType::T1, seq, vec![1, 9, 0]).unwrap()
}

/// Attack (TUF arbitrary software; A1 on the publisher's upload path, A2 at an update
/// server or mirror, A3 with a stolen publisher token): a release with every signature
/// stripped, uploaded to the update server and directly to the dispatcher.
///
/// Check: at least one authentication block (`suit::accept` step 2).
/// Asserts: 422 `unauthenticated` at both; the update server lists and stores nothing of
/// it, the dispatcher holds no release, file or rollout of it.
#[test]
fn unsigned_release_refused_everywhere() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let b = build(&c.third_party.key, &app(900), &image(4096, 1), "unsigned-1");
        let bare = unsigned(&b.envelope);
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, bare.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "unauthenticated");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;

        let i = build(&c.internal, &app(900), &image(4096, 2), "unsigned-2");
        let got = direct_upload(c, &unsigned(&i.envelope), &i.blob, &i.key).await;
        assert_refused(&got, 422, "unauthenticated");
        assert_not_at_dispatcher(c, &i.id).await;
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (TUF arbitrary software; A3: a publisher's OAuth credentials without its
/// signing key): a release signed by a key the update server never registered, uploaded
/// with a valid publisher token.
///
/// Check: every authentication block verifies under a registered key (`suit::accept`
/// step 4).
/// Asserts: 422 `untrusted-signer`; nothing listed or stored at the update server.
#[test]
fn release_signed_by_unknown_key_refused_at_update_server() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let stranger = suit::SigningKey::generate(&mut rng()).with_kid(b"stranger-2026".to_vec());
        let b = build(&stranger, &app(900), &image(4096, 3), "stranger-1");
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "untrusted-signer");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (TUF arbitrary software; A2/A3): an impostor signs with its own key under the
/// manufacturer's kid (`acme-fw-2026`) at the update server, and under the internal
/// publisher's kid (`plant-eng-2026`) on the dispatcher's direct upload.
///
/// Check: the signature is verified with the key registered for the kid, never with a key
/// the envelope brings.
/// Asserts: 422 `signature-invalid` at both; nothing stored at either.
#[test]
fn impostor_key_under_trusted_kid_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let fw = params(CLASS_PLC, UpdateType::T2, 900, vec![9, 0, 0]).unwrap();
        let impostor = suit::SigningKey::generate(&mut rng()).with_kid(b"acme-fw-2026".to_vec());
        let b = build(&impostor, &fw, &image(4096, 4), "impostor-1");
        let token = token_of(c, &c.manufacturer).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 422, "signature-invalid");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;

        let eng = suit::SigningKey::generate(&mut rng()).with_kid(b"plant-eng-2026".to_vec());
        let i = build(&eng, &app(900), &image(4096, 5), "impostor-2");
        let got = direct_upload(c, &i.envelope, &i.blob, &i.key).await;
        assert_refused(&got, 422, "signature-invalid");
        assert_not_at_dispatcher(c, &i.id).await;
        assert_not_at_dispatcher(c, &b.id).await;
    });
}

/// Attack (TUF arbitrary software; A2, or a publisher the update server serves but this
/// plant does not trust): a release signed by a key registered at the update server (so it
/// is stored and announced there) that is not in the dispatcher's trust store. Moved from
/// `tests/e2e.rs::untrusted_key_and_third_party_firmware_are_refused_at_intake`.
///
/// Check: the dispatcher's own trust store at intake (`suit::accept` step 4).
/// Asserts: the refusal is audited `refused:untrusted-signer` and counted in
/// `dispatcher_releases_refused_total{check="untrusted-signer"}`; the dispatcher holds no
/// release, file or rollout of it.
#[test]
fn release_signed_by_key_the_plant_does_not_trust_refused_at_intake() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let (id, _) = s
            .stored(
                &c.untrusted,
                CLASS_HMI,
                UpdateType::T1,
                &image(4096, 6),
                "rogue-1",
            )
            .await;
        let _: serde_json::Value = c.op.post("/v1/sync", &serde_json::json!({})).await.unwrap();
        assert_eq!(refusal_of(c, &id).await, "refused:untrusted-signer");
        assert_not_at_dispatcher(c, &id).await;
        let metrics = c.op.get_text("/metrics").await.unwrap();
        assert!(
            metrics.contains("dispatcher_releases_refused_total{check=\"untrusted-signer\"}"),
            "{metrics}"
        );
    });
}

/// Attack (A4: a legitimate third party, trusted for T1 applications): firmware (T2)
/// signed with the third party's key, which the update server stores (its registration
/// there is by vendor) and the dispatcher must refuse. Moved from
/// `tests/e2e.rs::untrusted_key_and_third_party_firmware_are_refused_at_intake`.
///
/// Check: role rules at intake (`suit::accept` step 6: a third-party key signs T1 only).
/// Asserts: audited `refused:signer-not-authorized`; no release, file or rollout.
#[test]
fn third_party_key_signing_firmware_refused_at_intake() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let (id, _) = s
            .stored(
                &c.third_party,
                CLASS_PLC,
                UpdateType::T2,
                &image(4096, 7),
                "tp-fw-1",
            )
            .await;
        let _: serde_json::Value = c.op.post("/v1/sync", &serde_json::json!({})).await.unwrap();
        assert_eq!(refusal_of(c, &id).await, "refused:signer-not-authorized");
        assert_not_at_dispatcher(c, &id).await;
    });
}

/// Attack (issue 12; A2/A3): an authentication wrapper padded with seven copies of the
/// publisher's valid signature (with the approval added, it would overflow the devices'
/// block limit, so every device would refuse and halt the rollouts). Moved from
/// `tests/e2e.rs::padded_and_junk_authentication_blocks_never_travel`.
///
/// Check: every block must verify and each key signs at most once (`suit::accept` step 4).
/// Asserts: 422 `duplicate-signature` at the update server and on the dispatcher's direct
/// upload; nothing stored at either.
#[test]
fn authentication_wrapper_padded_with_copies_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let b = build(&c.third_party.key, &app(901), &image(4096, 8), "pad-1");
        let first = auth_blocks(&b.envelope)[0].clone();
        let padded = with_blocks(&b.envelope, &vec![first; 7]);
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, padded, b.blob.clone()).await;
        assert_us_refused(&r, 422, "duplicate-signature");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;

        let i = build(&c.internal, &app(901), &image(2048, 9), "pad-2");
        let first = auth_blocks(&i.envelope)[0].clone();
        let got = direct_upload(c, &with_blocks(&i.envelope, &[first]), &i.blob, &i.key).await;
        assert_refused(&got, 422, "duplicate-signature");
        assert_not_at_dispatcher(c, &i.id).await;
    });
}

/// Attack (issue 12; A2/A3): a forged authentication block under the dispatcher's own
/// approval kid, appended to a genuinely signed release, so that it would travel to devices
/// as if approved. Moved from
/// `tests/e2e.rs::padded_and_junk_authentication_blocks_never_travel`.
///
/// Check: a block that does not verify under a trusted key is refused, not skipped; the
/// update server does not know the approval kid, the dispatcher verifies it with its own
/// approval key.
/// Asserts: 422 `untrusted-signer` at the update server, 422 `signature-invalid` on the
/// dispatcher's direct upload; nothing stored, no rollout.
#[test]
fn forged_block_under_the_approval_kid_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let cfg =
            dispatcher::config::Config::load(&c.dispatcher_dir().join("dispatcher.toml")).unwrap();
        let kid = cfg.approval_kid;
        let b = build(&c.third_party.key, &app(902), &image(4096, 10), "junk-1");
        let junk = with_blocks(&b.envelope, &[forged_block(&b.envelope, &kid)]);
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, junk, b.blob.clone()).await;
        assert_us_refused(&r, 422, "untrusted-signer");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;

        let i = build(&c.internal, &app(902), &image(2048, 11), "junk-2");
        let forged = with_blocks(&i.envelope, &[forged_block(&i.envelope, &kid)]);
        let got = direct_upload(c, &forged, &i.blob, &i.key).await;
        assert_refused(&got, 422, "signature-invalid");
        assert_not_at_dispatcher(c, &i.id).await;
        assert!(
            !rollouts(c)
                .await
                .iter()
                .any(|r| r["release_id"] == i.id.as_str()),
            "rolled out"
        );
    });
}

/// Attack (A4: the third party, trusted for T1 at this plant, takes the internal
/// publishers' direct path to the dispatcher, skipping the update server and its
/// key-repository check).
///
/// Check: direct uploads are for internal publishers' T1 releases only.
/// Asserts: 422 `direct-upload-not-allowed`; no release, file or rollout.
#[test]
fn third_party_release_on_the_internal_upload_path_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let tp: &Publisher = &c.third_party;
        let b = build(&tp.key, &app(903), &image(2048, 12), "tp-direct-1");
        let got = direct_upload(c, &b.envelope, &b.blob, &b.key).await;
        assert_refused(&got, 422, "direct-upload-not-allowed");
        assert_not_at_dispatcher(c, &b.id).await;
    });
}
