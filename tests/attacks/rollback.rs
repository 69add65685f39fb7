//! TUF's *rollback* attack at the update server, and equivocation on a published sequence
//! number (shared chain of services). The rollback of a device through the real push path
//! is `devices::older_approved_release_pushed_to_device_refused`.

use ics_suit::chain::{CLASS_HMI, image, params};
use suit::UpdateType;

use crate::common::*;

/// Attack (TUF rollback; A3 with a publisher's token and an old signed release, or a
/// mirror replaying one): once sequence N+1 of a product is published, the genuinely
/// signed release N is uploaded.
///
/// Check: the update server's `reject_older` policy (a release older than the newest of its
/// product is refused).
/// Asserts: 409 `rollback`; the older release is neither listed nor stored.
#[test]
fn older_sequence_refused_at_update_server() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let (lo, _order) = s.reserve(2).await;
        let newer = params(CLASS_HMI, UpdateType::T1, lo + 1, vec![1, 20, 1]).unwrap();
        c.publish(&c.untrusted, &newer, &image(4096, 30), "rb-new", 0)
            .await
            .unwrap();
        let older = params(CLASS_HMI, UpdateType::T1, lo, vec![1, 20, 0]).unwrap();
        let b = build(&c.untrusted.key, &older, &image(4096, 31), "rb-old");
        let token = token_of(c, &c.untrusted).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 409, "rollback");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
    });
}

/// Attack (equivocation; A4: another publisher registered for the vendor at the update
/// server, or A3 with a second signed build): a different release under a sequence number
/// already published for the product, so that dispatchers would see two releases claiming
/// one place in the product's history.
///
/// Check: one release per vendor/class/sequence at the update server.
/// Asserts: 409 `sequence-conflict`; the second release is neither listed nor stored, the
/// first still is.
#[test]
fn second_release_under_a_published_sequence_refused() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let (seq, _order) = s.reserve(1).await;
        let p = params(CLASS_HMI, UpdateType::T1, seq, vec![1, 21, 0]).unwrap();
        let first = c
            .publish(&c.untrusted, &p, &image(4096, 32), "eq-1", 0)
            .await
            .unwrap();
        let b = build(&c.third_party.key, &p, &image(4096, 33), "eq-2");
        let token = token_of(c, &c.third_party).await;
        let r = us_upload(c, 0, &token, b.envelope.clone(), b.blob.clone()).await;
        assert_us_refused(&r, 409, "sequence-conflict");
        assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
        assert!(us_listed(c, 0).await.contains(&first));
    });
}
