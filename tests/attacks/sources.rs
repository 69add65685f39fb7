//! A hostile source of releases (A2: a compromised update server, mirror or CDN, or A1
//! redirecting the dispatcher to one — RFC 9124 THREAT.NET.REDIRECT): TUF's mix-and-match,
//! endless-data and slow-retrieval attacks, and a mirror that swaps blobs in its storage.
//!
//! The hostile sources are update-server look-alikes in this process (TLS on loopback),
//! configured in the dispatcher as update servers of their own beside the chain's genuine
//! one; what they serve is chosen by each test. Every release they serve is genuinely
//! signed by a publisher the plant trusts, with its key at the key repository: the source
//! can only mix, withhold, stretch or slow down what it holds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ics_suit::chain::{CLASS_HMI, Chain, VENDOR, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

use crate::common::*;

/// What a hostile source sends for a blob.
#[derive(Debug, Clone)]
enum Blob {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Bytes for ever, as fast as they are taken; counts what it produced.
    Endless(Arc<AtomicU64>),
    /// One byte a second, for ever; 1 while dripping, 2 once the client hung up.
    Drip(Arc<AtomicU64>),
}

#[derive(Debug, Clone)]
struct Item {
    record: Value,
    envelope: Vec<u8>,
    blob: Blob,
}

/// A running hostile source and the releases it lists.
#[derive(Debug, Clone)]
struct Source {
    url: String,
    ca_file: PathBuf,
    menu: Arc<Mutex<Vec<Item>>>,
}

impl Source {
    /// Lists `b` (as the genuine update server would: its id, size and digest) and serves
    /// its envelope with `blob`.
    fn offer(&self, b: &Built, seq: u64, blob: Blob) {
        self.offer_as(&b.id, b, seq, blob);
    }

    /// As [`Source::offer`], listing `b` under the id `listed`.
    fn offer_as(&self, listed: &str, b: &Built, seq: u64, blob: Blob) {
        let mut menu = self.menu.lock().unwrap();
        let order = menu.len() as u64 + 1;
        menu.push(Item {
            record: json!({
                "release_id": listed, "vendor_id": VENDOR, "class_id": CLASS_HMI,
                "sequence": seq, "version": null, "ics": null, "signer_kids": [],
                "release_kid": null, "envelope_size": b.envelope.len(),
                "payload": {"size": b.blob.len(), "sha256": sha256_hex(&b.blob)},
                "published_at": 0, "published_by": "hostile", "order": order,
                "envelope_url": format!("/v1/releases/{listed}/envelope"),
                "payload_url": format!("/v1/releases/{listed}/payload"),
            }),
            envelope: b.envelope.clone(),
            blob,
        });
    }

    fn update_server(&self) -> dispatcher::config::UpdateServerConfig {
        dispatcher::config::UpdateServerConfig {
            urls: vec![self.url.clone()],
            ca_file: Some(self.ca_file.clone()),
            token_file: None,
        }
    }
}

type Menu = Arc<Mutex<Vec<Item>>>;

async fn list(
    State(menu): State<Menu>,
    q: Query<std::collections::HashMap<String, String>>,
) -> Response {
    if q.contains_key("after") {
        return axum::Json(json!({"releases": [], "next_after": null})).into_response();
    }
    let menu = menu.lock().unwrap();
    let records: Vec<Value> = menu.iter().map(|i| i.record.clone()).collect();
    let next = records.last().map(|r| r["order"].clone());
    axum::Json(json!({"releases": records, "next_after": next})).into_response()
}

fn item(menu: &Menu, id: &str) -> Option<Item> {
    menu.lock()
        .unwrap()
        .iter()
        .find(|i| i.record["release_id"] == id)
        .cloned()
}

async fn envelope(State(menu): State<Menu>, Path(id): Path<String>) -> Response {
    match item(&menu, &id) {
        Some(i) => i.envelope.into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// Marks a drip stopped when the client gives up on the response (the body is dropped).
struct Stopped(Arc<AtomicU64>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.store(2, Ordering::SeqCst);
    }
}

async fn payload(State(menu): State<Menu>, Path(id): Path<String>) -> Response {
    let Some(i) = item(&menu, &id) else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    match i.blob {
        Blob::Bytes(b) => b.into_response(),
        Blob::Endless(produced) => {
            static CHUNK: [u8; 64 << 10] = [0x5a; 64 << 10];
            let stream = futures_util::stream::unfold(produced, |p| async move {
                p.fetch_add(CHUNK.len() as u64, Ordering::Relaxed);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(&CHUNK)),
                    p,
                ))
            });
            Response::new(Body::from_stream(stream))
        }
        Blob::Drip(state) => {
            state.store(1, Ordering::SeqCst);
            let guard = Stopped(state);
            let stream = futures_util::stream::unfold(guard, |g| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"\x5a")),
                    g,
                ))
            });
            Response::new(Body::from_stream(stream))
        }
    }
}

/// Starts a hostile source on loopback TLS (its own CA) on the suite's runtime.
async fn hostile_source() -> Source {
    let dir = kept_dir("hostile-source");
    let files = foundations::tls::write_generated(&dir, "localhost", "hostile-source").unwrap();
    let tls = foundations::tls::load_server_config(&files.cert_file, &files.key_file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let menu: Menu = Arc::default();
    let app = Router::new()
        .route("/v1/releases", get(list))
        .route("/v1/releases/{id}/envelope", get(envelope))
        .route("/v1/releases/{id}/payload", get(payload))
        .with_state(menu.clone());
    tokio::spawn(async move {
        let limits = foundations::serve::ServeLimits::default();
        let _ =
            foundations::serve::serve(listener, tls, app, &limits, std::future::pending()).await;
    });
    reap_at_exit(&dir, &[]);
    Source {
        url: format!("https://localhost:{port}"),
        ca_file: files.ca_file,
        menu,
    }
}

/// A genuine T1 release of the third party (trusted by the plant), its release key stored
/// at the key repository: nothing but what the source does to it can get it refused.
async fn genuine(c: &Chain, seq: u64, seed: u8, kid: &str) -> Built {
    let p = params(CLASS_HMI, UpdateType::T1, seq, vec![1, 50, i64::from(seed)]).unwrap();
    let b = build(&c.third_party.key, &p, &image(4096, seed), kid);
    c.key_repo_client(&c.third_party)
        .unwrap()
        .put_key(kid, &format!("{VENDOR}/{CLASS_HMI}"), &b.key)
        .await
        .unwrap();
    b
}

/// Where the dispatcher reported a source unreachable in a sync report, and why.
fn unreachable(report: &Value, url: &str) -> Option<String> {
    report["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u[0] == url)
        .map(|u| u[1].as_str().unwrap_or_default().to_owned())
}

/// The blob limit of the dispatcher of the hostile-source chain.
const MAX_BLOB: u64 = 16 << 20;

/// The chain with two hostile sources (one for mix-and-match, one for endless data).
struct Hostile {
    s: Shared,
    mix: Source,
    endless: Source,
}

static HOSTILE: tokio::sync::OnceCell<Hostile> = tokio::sync::OnceCell::const_new();

async fn hostile() -> &'static Hostile {
    HOSTILE
        .get_or_init(|| async {
            let mix = hostile_source().await;
            let endless = hostile_source().await;
            let (m, e) = (mix.update_server(), endless.update_server());
            let s = Shared::start("sources", move |o| {
                o.extra_update_servers = vec![m, e];
                o.dispatcher_config = Some(|cfg: &mut dispatcher::config::Config| {
                    cfg.limits.max_blob_bytes = MAX_BLOB;
                });
            })
            .await;
            Hostile { s, mix, endless }
        })
        .await
}

/// Attack (TUF mix-and-match; A2: a compromised source or mirror, or A1 redirecting the
/// dispatcher to one): the source lists release A (its true id, size and digest) and
/// serves A's genuine envelope with the blob of release B — another genuine release of the
/// same publisher, product and size, whose key is also at the key repository.
///
/// Check: the blob must be the ciphertext A's signed manifest names (component #1, size and
/// SHA-256), checked before any key is asked for.
/// Asserts: the sync reports A refused with `ciphertext-digest-mismatch`, audited
/// `refused:ciphertext-digest-mismatch`; neither A nor B is stored, no rollout; the key
/// repository never served A's release key.
#[test]
fn mix_and_match_envelope_with_another_releases_blob_refused() {
    run(async {
        let h = hostile().await;
        let c = &h.s.c;
        let a = genuine(c, 1001, 60, "mix-a").await;
        let b = genuine(c, 1002, 61, "mix-b").await;
        assert_eq!(a.blob.len(), b.blob.len());
        h.mix.offer(&a, 1001, Blob::Bytes(b.blob.clone()));
        let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert!(
            report["refused"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r[0] == a.id.as_str() && r[1] == "ciphertext-digest-mismatch"),
            "{report}"
        );
        assert_eq!(
            refusal_of(c, &a.id).await,
            "refused:ciphertext-digest-mismatch"
        );
        assert_not_at_dispatcher(c, &a.id).await;
        assert_not_at_dispatcher(c, &b.id).await;
        let reads: Vec<Value> = key_repo_audit(c)
            .await
            .into_iter()
            .filter(|r| r["action"] == "key.read" && r["kid"] == "mix-a")
            .collect();
        assert!(reads.is_empty(), "the release key was read: {reads:?}");
    });
}

/// Attack (targeted freeze through the refusal cache; A2: one compromised source among
/// several): the hostile source lists a genuine release G first, with a wrong blob, so that
/// the dispatcher refuses G; then the genuine update server publishes the same G.
///
/// Check: a refusal is remembered per (source, release id), so one source's fault never
/// makes the dispatcher skip the release when another source serves it intact.
/// Asserts: G refused from the hostile source (`refused:ciphertext-digest-mismatch` in the
/// audit log), then taken in from the genuine update server on the next sync, with the
/// genuine blob; before the fix the sync skipped it silently until a restart.
#[test]
fn hostile_source_cannot_make_the_dispatcher_skip_a_genuine_release() {
    run(async {
        let h = hostile().await;
        let c = &h.s.c;
        let g = genuine(c, 1005, 67, "skip-g").await;
        let mut wrong = g.blob.clone();
        wrong.iter_mut().for_each(|b| *b ^= 0x5a);
        h.mix.offer(&g, 1005, Blob::Bytes(wrong));
        let _: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert_eq!(
            refusal_of(c, &g.id).await,
            "refused:ciphertext-digest-mismatch"
        );
        assert_not_at_dispatcher(c, &g.id).await;

        let token = token_of(c, &c.third_party).await;
        let up = us_upload(c, 0, &token, g.envelope.clone(), g.blob.clone())
            .await
            .unwrap();
        assert_eq!(up.release.release_id, g.id);
        let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert!(
            dispatcher_releases(c).await.contains(&g.id),
            "the genuine release was skipped after the hostile source's refusal: {report}"
        );
        let stored = c
            .dispatcher_dir()
            .join("data/releases")
            .join(&g.id)
            .join("blob.enc");
        assert_eq!(
            std::fs::read(&stored).unwrap_or_default(),
            g.blob,
            "{} is not the genuine blob",
            stored.display()
        );
    });
}

/// Attack (TUF endless data; A2): the source lists a genuine release with its true size
/// (4 KiB) and answers the blob download with bytes that never end; it also lists a second
/// genuine release after it, served intact.
///
/// Check: the blob read is capped at the size the accepted manifest signs (one byte more, to
/// tell a longer blob apart; `limits.max_blob_bytes`, here 16 MiB, bounds it too) and then
/// abandoned; the longer blob refuses that listing only, not the source.
/// Asserts: the sync refuses the release `ciphertext-digest-mismatch` ("manifest says 4096
/// bytes, the source sent more"), audited as such, and does not give the source up; the
/// second release from the same source is taken in by the same sync; the source produced a
/// bounded amount (what transport buffers took, < 64 MiB) and stops producing once the
/// dispatcher hangs up; nothing of the endless release stored, no rollout.
#[test]
fn endless_blob_is_cut_off_at_the_signed_size() {
    run(async {
        let h = hostile().await;
        let c = &h.s.c;
        let r = genuine(c, 1003, 62, "endless-1").await;
        let after = genuine(c, 1004, 68, "endless-after").await;
        let produced = Arc::new(AtomicU64::new(0));
        h.endless.offer(&r, 1003, Blob::Endless(produced.clone()));
        h.endless
            .offer(&after, 1004, Blob::Bytes(after.blob.clone()));
        // Other tests of this chain sync too: the refusal may be theirs, so it is read from
        // the audit log, not from this sync's report.
        let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert_eq!(unreachable(&report, &h.endless.url), None, "{report}");
        assert_eq!(
            refusal_of(c, &r.id).await,
            "refused:ciphertext-digest-mismatch"
        );
        let signed = format!("manifest says {} bytes, the source sent more", r.blob.len());
        let detail = audit(c)
            .await
            .iter()
            .find(|x| x["action"] == "release.refuse" && x["target"] == r.id.as_str())
            .map(|x| x["reason"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        assert!(detail.contains(&signed), "{detail}");
        assert!(
            dispatcher_releases(c).await.contains(&after.id),
            "the release listed after the endless one was not taken in: {report}"
        );
        // The source stops producing once the dispatcher hangs up: two samples a second
        // apart agree (waited for, not timed: the machine may be busy).
        let deadline = Instant::now() + PATIENCE;
        let mut settled = produced.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = produced.load(Ordering::Relaxed);
            if now == settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still reading the endless blob: {now} bytes"
            );
            settled = now;
        }
        assert!(settled < 64 << 20, "the source sent {settled} bytes");
        assert_not_at_dispatcher(c, &r.id).await;
    });
}

/// Attack (A2, a hostile source): it lists a genuine envelope under ids of its own choosing,
/// with a blob that never ends: one id that is no release id at all (300 characters, not
/// hex), and one that looks like a release id but is not this envelope's.
///
/// Check: a listing id must be a release id (64 lowercase hex digits, the manifest's
/// SHA-256) to be followed; a refusal is audited under the id of the envelope the source
/// served, never under the id it listed.
/// Asserts: the invalid id is reported `invalid-listing`, nothing of it is fetched (the
/// endless blob produced 0 bytes) and no audit record names it; the blob under the
/// look-alike id is refused `ciphertext-digest-mismatch`, audited under the envelope's own
/// release id and not under the look-alike; nothing stored.
#[test]
fn listing_under_a_forged_id_is_neither_followed_nor_audited_under_it() {
    run(async {
        let h = hostile().await;
        let c = &h.s.c;
        let r = genuine(c, 1007, 69, "forged-listing").await;
        let junk = "A".repeat(300);
        let unread = Arc::new(AtomicU64::new(0));
        h.endless
            .offer_as(&junk, &r, 1007, Blob::Endless(unread.clone()));
        let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        let listed = report["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x[1] == "invalid-listing")
            .unwrap_or_else(|| panic!("the invalid listing id was followed: {report}"));
        assert!(listed[0].as_str().unwrap().len() <= 80, "{report}");
        assert_eq!(unread.load(Ordering::Relaxed), 0, "its blob was fetched");

        let look_alike = "ab".repeat(32);
        let produced = Arc::new(AtomicU64::new(0));
        h.endless
            .offer_as(&look_alike, &r, 1007, Blob::Endless(produced.clone()));
        let _: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert_eq!(
            refusal_of(c, &r.id).await,
            "refused:ciphertext-digest-mismatch"
        );
        let records = audit(c).await;
        for forged in [junk.as_str(), look_alike.as_str()] {
            assert!(
                !records.iter().any(|x| x["target"] == forged),
                "an audit record names the id the source listed ({} chars)",
                forged.len()
            );
        }
        assert_not_at_dispatcher(c, &r.id).await;
    });
}

/// Attack (TUF slow retrieval; A2): the source answers a genuine release's blob one byte a
/// second, for ever, so that an update the plant needs never completes — meanwhile the
/// genuine update server publishes another release.
///
/// Check: each configured source is polled by its own task, and one poll of one source is
/// bounded by `limits.source_timeout_secs` (here 20 s).
/// Asserts: the genuine release is taken in while the slow source still drips; the sync
/// reports the slow source unreachable with no complete answer within 20 s and the drip is
/// abandoned (the connection dropped); the slow source's release is not stored.
#[test]
fn slow_blob_retrieval_neither_freezes_intake_nor_completes() {
    run(async {
        let slow = hostile_source().await;
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.poll_interval_secs = 3600;
        o.extra_update_servers = vec![slow.update_server()];
        o.dispatcher_config = Some(|cfg: &mut dispatcher::config::Config| {
            cfg.limits.source_timeout_secs = 20;
        });
        let c = Chain::start_services(o).await.unwrap();
        let r = genuine(&c, 2, 63, "slow-1").await;
        let drip = Arc::new(AtomicU64::new(0));
        slow.offer(&r, 2, Blob::Drip(drip.clone()));

        let op = c.op.clone();
        let sync = tokio::spawn(async move { op.post::<_, Value>("/v1/sync", &json!({})).await });
        let deadline = Instant::now() + PATIENCE;
        while drip.load(Ordering::SeqCst) != 1 {
            assert!(Instant::now() < deadline, "the blob was never asked for");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The genuine server announces a release; it must not wait for the slow source.
        let p = params(CLASS_HMI, UpdateType::T1, 3, vec![1, 51, 0]).unwrap();
        let other = c
            .publish(&c.third_party, &p, &image(4096, 64), "not-frozen", 0)
            .await
            .unwrap();
        loop {
            if dispatcher_releases(&c).await.contains(&other) {
                break;
            }
            assert_eq!(
                drip.load(Ordering::SeqCst),
                1,
                "the genuine release waited until the slow source was given up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = sync.await.unwrap().unwrap();
        let why = unreachable(&report, &slow.url)
            .unwrap_or_else(|| panic!("the slow source was not given up: {report}"));
        assert!(why.contains("no complete answer within 20 s"), "{why}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while drip.load(Ordering::SeqCst) != 2 {
            assert!(Instant::now() < deadline, "the drip was not abandoned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow.menu.lock().unwrap().clear();
        assert_not_at_dispatcher(&c, &r.id).await;
    });
}

/// Attack (TUF mix-and-match by a mirror; A2: whoever controls a mirror's storage): two
/// genuine releases of the same size are replicated to a mirror, and their blobs are
/// swapped in the mirror's object store; the primary update server goes down, so the
/// dispatcher fails over to the mirror.
///
/// Check: the blob must be the ciphertext the signed manifest names; the update server
/// does not vouch for what it stores.
/// Asserts: the sync used the mirror and refused both releases with
/// `ciphertext-digest-mismatch`; neither is stored, no rollout.
#[test]
fn mirror_swapping_blobs_refused() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.mirror = true;
        o.poll_interval_secs = 3600;
        let mut c = Chain::start_services(o).await.unwrap();
        let pa = params(CLASS_HMI, UpdateType::T1, 2, vec![1, 52, 0]).unwrap();
        let pb = params(CLASS_HMI, UpdateType::T1, 3, vec![1, 53, 0]).unwrap();
        let (ia, ib) = (image(8192, 65), image(8192, 66));
        let a = c
            .publish(&c.third_party, &pa, &ia, "swap-a", 1)
            .await
            .unwrap();
        let b = c
            .publish(&c.third_party, &pb, &ib, "swap-b", 1)
            .await
            .unwrap();
        let blobs = c.opts.root.join("update-mirror/objects/blobs");
        let listed = us_client(&c, 1, None).list_all().await.unwrap();
        let sha = |id: &str| {
            listed
                .iter()
                .find(|u| u.release.release_id == id)
                .map(|u| u.release.payload.sha256.clone())
                .unwrap()
        };
        let (sa, sb) = (sha(&a), sha(&b));
        let tmp = blobs.join("swap.tmp");
        std::fs::rename(blobs.join(&sa), &tmp).unwrap();
        std::fs::rename(blobs.join(&sb), blobs.join(&sa)).unwrap();
        std::fs::rename(&tmp, blobs.join(&sb)).unwrap();

        c.stop_update_server(0);
        let report: Value = c.op.post("/v1/sync", &json!({})).await.unwrap();
        assert_eq!(report["used"], json!([c.us_urls[1]]), "{report}");
        for id in [&a, &b] {
            assert!(
                report["refused"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r[0] == id.as_str() && r[1] == "ciphertext-digest-mismatch"),
                "{id}: {report}"
            );
            assert_not_at_dispatcher(&c, id).await;
        }
    });
}
