//! Forged and misused OAuth 2.0 access tokens (RFC 9068) against the real key repository
//! and update server of the shared chain of services. Both verify tokens with the same
//! foundations code (`foundations::token`: ES256 pinned, `typ`, `iss`, `aud`, `exp`, `nbf`,
//! lifetime, size), then scopes and products.
//!
//! Each attack presents one token three times: storing a new release key
//! (`PUT /v1/keys/{kid}`), reading an existing one (`GET /v1/keys/{kid}`) and uploading a
//! genuinely signed release to the update server. Each asserts the refusal at each, the
//! key repository's audit record of it, and that nothing happened: the new key does not
//! exist (asked with the dispatcher's genuine credentials), the existing key's material is
//! not in any answer, the release is neither listed nor stored. A control token, valid in
//! every respect but the one the attack changes, is accepted first, so each refusal is for
//! the reason named.

use hmac::Mac as _;
use ics_suit::chain::{CLASS_HMI, CLASS_PLC, Chain, VENDOR, image, params};
use serde_json::{Value, json};
use suit::UpdateType;

use crate::common::*;

fn hmi() -> String {
    format!("{VENDOR}/{CLASS_HMI}")
}

/// Every scope the three requests need.
const ALL: &str = "keys:read keys:write releases:write";

/// What the key repository and the update server made of one token.
struct Outcome {
    put: (u16, Value),
    get: (u16, Value),
    upload: Result<update_server::client::Uploaded, update_server::client::ClientError>,
    /// Refusals the key repository's audit trail counted while the attack ran (other tests
    /// running at once may add theirs).
    refusals_counted: u64,
}

/// Every refusal the key repository's audit trail counts: a record of its own counts one, a
/// summary of an aggregated window (anonymous refusals, `action: "refusals"`) its `count`.
async fn refusals_counted(c: &Chain) -> u64 {
    key_repo_audit(c)
        .await
        .iter()
        .filter(|r| {
            r["result"]
                .as_str()
                .is_some_and(|s| s.starts_with("denied:"))
        })
        .map(|r| r["count"].as_u64().unwrap_or(1))
        .sum()
}

/// A stored release key of the HMI product (its base64 material) under `kid`.
async fn existing_key(c: &Chain, kid: &str) -> String {
    let key = suit::ReleaseKey::generate(
        suit::consts::alg::A128KW,
        kid.as_bytes().to_vec(),
        &mut rng(),
    )
    .unwrap()
    .to_cose_key()
    .to_vec();
    c.key_repo_client(&c.third_party)
        .unwrap()
        .put_key(kid, &hmi(), &key)
        .await
        .unwrap();
    foundations::b64(&key)
}

fn kr_http(c: &Chain) -> reqwest::Client {
    https(
        &c.kr_url,
        &std::fs::read(c.opts.root.join("key-repo/tls/ca.pem")).unwrap(),
    )
}

async fn get_key(c: &Chain, token: &str, kid: &str) -> (u16, Value) {
    send(
        kr_http(c)
            .get(format!("{}/v1/keys/{kid}", c.kr_url))
            .bearer_auth(token),
    )
    .await
}

/// Presents `token` to the three requests of attack `name`, after checking that `control`
/// reads the existing key. Asserts that nothing was stored or disclosed.
async fn present(c: &Chain, name: &str, token: &str, control: Option<&str>) -> Outcome {
    let old = format!("tok-{name}-old");
    let new = format!("tok-{name}-new");
    let material = existing_key(c, &old).await;
    if let Some(ctl) = control {
        let (s, v) = get_key(c, ctl, &old).await;
        assert_eq!(s, 200, "control token refused: {v}");
        assert_eq!(v["cose_key"], material.as_str());
    }
    let cose = suit::ReleaseKey::generate(
        suit::consts::alg::A128KW,
        new.as_bytes().to_vec(),
        &mut rng(),
    )
    .unwrap()
    .to_cose_key()
    .to_vec();
    let counted_before = refusals_counted(c).await;
    let put = send(
        kr_http(c)
            .put(format!("{}/v1/keys/{new}", c.kr_url))
            .bearer_auth(token)
            .json(&json!({"product": hmi(), "cose_key": foundations::b64(&cose)})),
    )
    .await;
    let get = get_key(c, token, &old).await;
    let refusals_counted = refusals_counted(c).await - counted_before;
    let p = params(CLASS_HMI, UpdateType::T1, 930, vec![1, 93, 0]).unwrap();
    let b = build(
        &c.third_party.key,
        &p,
        &image(2048, 70),
        &format!("tok-{name}-rel"),
    );
    let upload = us_upload(c, 0, token, b.envelope.clone(), b.blob.clone()).await;

    // Nothing stored, nothing disclosed.
    let e = dispatcher_reader(c).get_key(&new).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "the key was stored: {e}");
    assert!(
        !put.1.to_string().contains(&foundations::b64(&cose)),
        "key material in the answer: {}",
        put.1
    );
    if get.0 != 200 {
        assert!(
            !get.1.to_string().contains(&material),
            "key material in a refusal: {}",
            get.1
        );
    }
    assert_not_at_update_server(c, 0, &b.id, &b.blob).await;
    Outcome {
        put,
        get,
        upload,
        refusals_counted,
    }
}

/// The key repository's audit result for the attempt to store attack `name`'s key, if it
/// has a record of its own.
async fn audit_result(c: &Chain, name: &str) -> Option<String> {
    let kid = format!("tok-{name}-new");
    let recs = key_repo_audit(c).await;
    recs.iter()
        .rev()
        .find(|r| r["action"] == "key.create" && r["kid"] == kid.as_str())
        .map(|r| r["result"].as_str().unwrap().to_owned())
}

/// The key repository's audit result for the attempt to store attack `name`'s key (an
/// authenticated caller's refusal: always a record of its own).
async fn audited(c: &Chain, name: &str) -> String {
    audit_result(c, name)
        .await
        .unwrap_or_else(|| panic!("no audit record for tok-{name}-new"))
}

/// Asserts a token refused as invalid everywhere, and both refusals at the key repository
/// counted in its audit trail. Refusals of invalid tokens are aggregated per source (the
/// first of a window recorded as it is, the rest counted in a summary record), so the
/// attempt's own record exists only when it opened a window.
async fn assert_invalid_everywhere(c: &Chain, name: &str, o: &Outcome) {
    assert_eq!(o.put.0, 401, "{}", o.put.1);
    assert_eq!(o.get.0, 401, "{}", o.get.1);
    assert_us_refused(&o.upload, 401, "invalid-token");
    assert!(
        o.refusals_counted >= 2,
        "{name}: the key repository's audit trail counted {} refusals for two",
        o.refusals_counted
    );
    if let Some(result) = audit_result(c, name).await {
        assert_eq!(result, "denied:invalid_token");
    }
}

/// `header.payload.signature` with the header replaced and the signature made by `sign`.
fn resign(token: &str, header: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let input = format!("{}.{payload}", foundations::b64url(header.as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", foundations::b64url(&sig))
}

/// Attack (forged token; anyone who can reach the services): a token whose header says
/// `alg: none`, with the claims of a fully privileged client and no signature (RFC 8725
/// §2.1).
///
/// Check: the algorithm is pinned to ES256 before any key is chosen.
/// Asserts: 401 at the key repository (counted in the key repository's audit trail) and 401
/// `invalid-token` at the update server; nothing stored or disclosed.
#[test]
fn forged_token_with_alg_none_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let none = resign(&good, r#"{"alg":"none","typ":"at+jwt"}"#, |_| Vec::new());
        let o = present(c, "alg-none", &none, Some(&good)).await;
        assert_invalid_everywhere(c, "alg-none", &o).await;
    });
}

/// Attack (algorithm confusion, RFC 8725 §2.1; anyone): a token "signed" with HS256 keyed
/// with the key repository's public key as published in its JWKS, under its kid.
///
/// Check: ES256 only; the public key is never used as an HMAC secret.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn forged_token_hs256_keyed_with_public_key_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let jwk = serde_json::to_string(iss.jwk()).unwrap();
        let kid = iss.jwk().kid.clone().unwrap();
        let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
        let hs = resign(&good, &header, |m| {
            let mut mac =
                <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(jwk.as_bytes())
                    .unwrap();
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        });
        let o = present(c, "hs256", &hs, Some(&good)).await;
        assert_invalid_everywhere(c, "hs256", &o).await;
    });
}

/// Attack (forged token; an authorization server neither service trusts, or a thief with
/// a key of its own): an ES256 token with the right issuer, audience, scopes and products,
/// signed by another key.
///
/// Check: only the configured issuers' keys (the key repository's own, its JWKS at the
/// update server) verify tokens.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_signed_by_an_untrusted_key_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let other = foundations::token::TokenSigner::generate().unwrap();
        let forged = other.sign(&iss.claims(ALL, &[hmi()])).unwrap();
        let o = present(c, "foreign-key", &forged, Some(&good)).await;
        assert_invalid_everywhere(c, "foreign-key", &o).await;
    });
}

/// Attack (token confusion; A5: a client of another authorization server): a token whose
/// `iss` names another issuer.
///
/// Check: `iss` must be a configured issuer.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_from_another_issuer_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let mut claims = iss.claims(ALL, &[hmi()]);
        claims.iss = "https://idp.evil.example".into();
        let o = present(c, "issuer", &iss.sign(&claims), Some(&good)).await;
        assert_invalid_everywhere(c, "issuer", &o).await;
    });
}

/// Attack (token forwarding; A5 or a malicious resource server): a token the issuer made
/// for another audience (another service), replayed here.
///
/// Check: `aud` must name this service.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_for_another_audience_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let mut claims = iss.claims(ALL, &[hmi()]);
        claims.aud = foundations::token::Audience::One("https://other-service.example/v1".into());
        let o = present(c, "audience", &iss.sign(&claims), Some(&good)).await;
        assert_invalid_everywhere(c, "audience", &o).await;
    });
}

/// Attack (token replay; A1 or A3 with a token captured earlier): a token that expired an
/// hour ago.
///
/// Check: `exp` with a small leeway.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn expired_token_replayed_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let now = foundations::now_unix();
        let mut claims = iss.claims(ALL, &[hmi()]);
        (claims.iat, claims.nbf, claims.exp) = (now - 4000, Some(now - 4000), now - 3600);
        let o = present(c, "expired", &iss.sign(&claims), Some(&good)).await;
        assert_invalid_everywhere(c, "expired", &o).await;
    });
}

/// Attack (pre-issued token; A3 holding a token minted for later, or a skewed issuer
/// clock): a token not valid before an hour from now.
///
/// Check: `nbf` with a small leeway.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_not_yet_valid_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let mut claims = iss.claims(ALL, &[hmi()]);
        claims.nbf = Some(foundations::now_unix() + 3600);
        let o = present(c, "not-yet", &iss.sign(&claims), Some(&good)).await;
        assert_invalid_everywhere(c, "not-yet", &o).await;
    });
}

/// Attack (long-lived token; an issuer misconfigured or abused to mint a token for a
/// month, which a thief then holds for that long): `exp - iat` of 30 days.
///
/// Check: the longest lifetime accepted (`tokens.max_lifetime_secs`), bounding the damage
/// of a leaked token.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_with_an_overlong_lifetime_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let mut claims = iss.claims(ALL, &[hmi()]);
        claims.exp = claims.iat + 30 * 86_400;
        let o = present(c, "lifetime", &iss.sign(&claims), Some(&good)).await;
        assert_invalid_everywhere(c, "lifetime", &o).await;
    });
}

/// Attack (token type confusion, RFC 8725 §3.11; A3 replaying a client assertion or an ID
/// token): a token signed by the right key with `typ: JWT` instead of `at+jwt`.
///
/// Check: explicit typing of access tokens.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn token_of_another_type_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let typed = iss.sign_typed("JWT", &iss.claims(ALL, &[hmi()]));
        let o = present(c, "typ", &typed, Some(&good)).await;
        assert_invalid_everywhere(c, "typ", &o).await;
    });
}

/// Attack (resource exhaustion through the token; anyone): a validly signed token padded
/// with a 10 KiB claim, above the 8 KiB the verifiers look at.
///
/// Check: `foundations::token::MAX_TOKEN_LEN`, before any parsing.
/// Asserts: 401 / 401 `invalid-token`, counted in the key repository's audit trail; nothing stored or
/// disclosed.
#[test]
fn oversized_token_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let mut claims = iss.claims(ALL, &[hmi()]);
        claims
            .extra
            .insert("pad".into(), json!("x".repeat(10 * 1024)));
        let big = iss.sign(&claims);
        assert!(big.len() > foundations::token::MAX_TOKEN_LEN);
        let o = present(c, "oversized", &big, Some(&good)).await;
        assert_invalid_everywhere(c, "oversized", &o).await;
    });
}

/// Attack (A5/A3: a client granted another product): a genuine, valid token whose
/// `products` claim names the PLC product only, used on the HMI product's keys and release.
///
/// Check: the products claim against the key's product and the release's vendor/class.
/// Asserts: 403 at the key repository for the store (audited `denied:product_not_granted`),
/// 404 for the read of the HMI key (answered as for a kid that does not exist, so the name
/// is not disclosed), 403 `product-not-granted` at the update server; nothing stored or
/// disclosed.
#[test]
fn token_for_another_product_refused() {
    run(async {
        let c = &services().await.c;
        let iss = Issuer::of(c);
        let good = iss.sign(&iss.claims(ALL, &[hmi()]));
        let plc = iss.sign(&iss.claims(ALL, &[format!("{VENDOR}/{CLASS_PLC}")]));
        let o = present(c, "product", &plc, Some(&good)).await;
        assert_eq!(o.put.0, 403, "{}", o.put.1);
        assert_eq!(o.get.0, 404, "{}", o.get.1);
        assert_us_refused(&o.upload, 403, "product-not-granted");
        assert_eq!(audited(c, "product").await, "denied:product_not_granted");
    });
}

/// Attack (misused token; A3: a publisher's stolen credentials): the manufacturer's genuine
/// token (scopes `keys:write keys:revoke releases:write`) used to read a release key — what
/// a publisher may store, it may not read back (only dispatchers read keys).
///
/// Check: the `keys:read` scope on `GET /v1/keys/{kid}`.
/// Asserts: 403 on the read (audited `denied:insufficient_scope`), the key's material in no
/// answer; the key is still served to the dispatcher.
#[test]
fn publisher_token_used_to_read_keys_refused() {
    run(async {
        let c = &services().await.c;
        let material = existing_key(c, "tok-publisher-read").await;
        let token = token_of(c, &c.third_party).await;
        let (s, v) = get_key(c, &token, "tok-publisher-read").await;
        assert_eq!(s, 403, "{v}");
        assert!(!v.to_string().contains(&material));
        let recs = key_repo_audit(c).await;
        let r = recs
            .iter()
            .rev()
            .find(|r| r["action"] == "key.read" && r["kid"] == "tok-publisher-read")
            .unwrap();
        assert_eq!(r["result"], "denied:insufficient_scope");
        let k = dispatcher_reader(c)
            .get_key("tok-publisher-read")
            .await
            .unwrap();
        assert_eq!(foundations::b64(&k.cose_key), material);
    });
}

/// Attack (misused token; a dispatcher's stolen client credentials, A5): the dispatcher's
/// genuine token (scope `keys:read`) used to store a release key and to upload a release.
///
/// Check: `keys:write` on `PUT /v1/keys/{kid}`, `releases:write` on uploads.
/// Asserts: 403 at the key repository (audited `denied:insufficient_scope`) and 403
/// `insufficient-scope` at the update server; nothing stored.
#[test]
fn dispatcher_token_used_to_publish_refused() {
    run(async {
        let c = &services().await.c;
        let token = dispatcher_reader(c).access_token().await.unwrap();
        let o = present(c, "dispatcher-publish", &token, None).await;
        assert_eq!(o.put.0, 403, "{}", o.put.1);
        assert_us_refused(&o.upload, 403, "insufficient-scope");
        assert_eq!(
            audited(c, "dispatcher-publish").await,
            "denied:insufficient_scope"
        );
        // Reading is what this token is for.
        assert_eq!(o.get.0, 200, "{}", o.get.1);
    });
}
