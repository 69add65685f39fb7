//! Hostile inputs against every decoder: one table of attacks applied to each message kind,
//! then the checks particular to each message.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use serde_json::{Value, json};

use crate::bundle::{Bundle, Identity, Trust};
use crate::push::{PullNotice, Status};
use crate::state::State;
use crate::text::Rule;
use crate::uplink::{CheckIn, CheckInReply, InstallOutcome, Pending, Report};
use crate::{Error, Kind, limits};

const RID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn state() -> Value {
    json!({"active": "a", "a": {"version": "1.0.0", "sequence": 0, "sha256": "ab".repeat(32),
        "size": 1408, "release_id": "factory"}, "b": null, "counter": 0, "pending": null,
        "boots": 1})
}

fn identity() -> Value {
    json!({"name": "plc-7", "vendor_id": "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        "class_id": "1492af14-2569-5e48-bf42-9b2d51f2ab45",
        "device_id": "00000000-0000-0000-0000-000000000009"})
}

/// A real P-256 key (the IETF SUIT examples' public key): the trust store is parsed.
pub(crate) const PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJaBGq4LqqvSYVcYnuzaJr6qi/Eb\n\
bz/m4rVlnIXbwK07HypLbAmBMcCjbazR14vTgdzfsJwFLbM5kdtzOLSolg==\n\
-----END PUBLIC KEY-----\n";

/// A device trust store: a manufacturer key for the vendor and an approver key.
pub(crate) fn store() -> String {
    format!(
        "[[key]]\nkid = \"maker\"\nrole = \"manufacturer\"\n\
         vendors = [\"fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe\"]\npublic_key = \"\"\"\n{PEM}\"\"\"\n\n\
         [[key]]\nkid = \"dispatcher\"\nrole = \"approver\"\npublic_key = \"\"\"\n{PEM}\"\"\"\n"
    )
}

fn trust() -> Value {
    json!({"store": store(), "require_approval": true})
}

fn bundle() -> Value {
    json!({"format": "ics-device-bundle/2", "identity": identity(), "trust": trust(),
        "oscore": {"master_secret_hex": "42".repeat(16), "sender_id_hex": "09",
            "recipient_id_hex": "00"},
        "dispatcher": "coap://127.0.0.1:5683", "factory_version": "1.0.0"})
}

/// A valid message of each kind, as a JSON object (the bundle list is one bundle's worth).
fn sample(kind: Kind) -> Value {
    match kind {
        Kind::CheckIn => json!({"coap_port": 40123, "version": "1.0.0", "sequence": 3,
            "release_id": null, "state": state(), "boots": 2}),
        Kind::CheckInReply => json!({"next_checkin_s": 600, "pending": {"release_id": RID,
            "envelope_size": 900, "blob_size": 300000}}),
        Kind::Report => json!({"release_id": RID, "outcome": "rejected",
            "check": "payload-digest-mismatch", "message": "digest mismatch",
            "version_before": "1.0.0", "version_after": "1.0.0"}),
        Kind::PullNotice => json!({"release_id": RID}),
        Kind::Status => json!({"identity": identity(), "version": "1.0.0", "state": state(),
            "recent_events": [{"event": "boot", "detail": "factory", "counter": 0}]}),
        Kind::Bundle | Kind::BundleList => bundle(),
        Kind::Identity => identity(),
        Kind::Trust => trust(),
        Kind::State => state(),
    }
}

/// Decodes `bytes` as `kind`; for the list, `bytes` is one element wrapped in an array.
fn decode(kind: Kind, bytes: &[u8]) -> Result<(), Error> {
    match kind {
        Kind::CheckIn => CheckIn::decode(bytes).map(drop),
        Kind::CheckInReply => CheckInReply::decode(bytes).map(drop),
        Kind::Report => Report::decode(bytes).map(drop),
        Kind::PullNotice => PullNotice::decode(bytes).map(drop),
        Kind::Status => Status::decode(bytes).map(drop),
        Kind::Bundle => Bundle::decode(bytes).map(drop),
        Kind::BundleList => {
            let mut list = b"[".to_vec();
            list.extend_from_slice(bytes);
            list.push(b']');
            Bundle::decode_list(&list).map(drop)
        }
        Kind::Identity => Identity::decode(bytes).map(drop),
        Kind::Trust => Trust::decode(bytes).map(drop),
        Kind::State => State::decode(bytes).map(drop),
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The attacks every decoder must refuse, each named after what it tries.
#[test]
fn every_decoder_refuses_the_generic_attacks() {
    // The list is the bundle's decoder over each element (`bundle.rs` tests it as a list).
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::BundleList) {
        let good = sample(kind);
        decode(kind, &bytes(&good)).unwrap_or_else(|e| panic!("{kind}: sample refused: {e}"));
        let first_key = good.as_object().unwrap().keys().next().unwrap().clone();
        let text = String::from_utf8(bytes(&good)).unwrap();

        let mut extra = good.clone();
        extra["smuggled"] = json!("x");
        let mut oversized = text.clone();
        oversized.push_str(&" ".repeat(kind.max_size()));
        let duplicate = text.replacen('{', &format!("{{\"{first_key}\": null, "), 1);
        let deep = format!(
            "{{\"{first_key}\": {}{}}}",
            "[".repeat(limits::MAX_DEPTH),
            "]".repeat(limits::MAX_DEPTH)
        );
        type Want = fn(&Error) -> bool;
        let attacks: Vec<(&str, Vec<u8>, Want)> = vec![
            (
                "unknown-field",
                bytes(&extra),
                |e| matches!(e, Error::UnknownField { field, .. } if field == "smuggled"),
            ),
            ("oversized", oversized.into_bytes(), |e| {
                matches!(e, Error::TooLarge { .. })
            }),
            ("duplicate-key", duplicate.into_bytes(), |e| {
                matches!(e, Error::DuplicateField { .. })
            }),
            (
                "trailing-bytes",
                format!("{text} {text}").into_bytes(),
                |e| matches!(e, Error::Syntax { .. }),
            ),
            (
                "truncated",
                text.as_bytes()[..text.len() - 1].to_vec(),
                |e| matches!(e, Error::Truncated { .. }),
            ),
            ("not-an-object", b"[]".to_vec(), |e| {
                matches!(e, Error::WrongType { .. })
            }),
            ("empty", Vec::new(), |e| {
                matches!(e, Error::Truncated { .. })
            }),
            ("too-deep", deep.into_bytes(), |e| {
                matches!(e, Error::TooDeep { .. })
            }),
            ("missing-fields", b"{}".to_vec(), |e| {
                matches!(e, Error::MissingField { .. })
            }),
            ("invalid-utf8", b"{\"\xff\": 1}".to_vec(), |e| {
                matches!(e, Error::Syntax { .. })
            }),
        ];
        for (name, input, want) in attacks {
            let got = decode(kind, &input);
            match got {
                Err(e) if want(&e) => assert_eq!(e.kind(), kind, "{kind} {name}"),
                other => panic!("{kind}: {name}: {other:?}"),
            }
        }
    }
}

/// Every string field of every sample, replaced by an overlong value, a number, and text
/// with a control character: refused, never accepted or panicking.
#[test]
fn every_text_field_is_bounded_and_typed() {
    fn strings(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::String(_) => out.push(path),
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = path.clone();
                    p.push(k.clone());
                    strings(c, p, out);
                }
            }
            _ => {}
        }
    }
    fn set(v: &mut Value, path: &[String], to: Value) {
        let mut cur = v;
        for p in path {
            cur = &mut cur[p.as_str()];
        }
        *cur = to;
    }
    for kind in Kind::ALL {
        let good = sample(kind);
        let mut paths = Vec::new();
        strings(&good, Vec::new(), &mut paths);
        assert!(!paths.is_empty(), "{kind}");
        for path in paths {
            // Status events are free-form objects.
            if path.first().is_some_and(|p| p == "recent_events") {
                continue;
            }
            for (what, value) in [
                ("overlong", json!("a".repeat(limits::MAX_PEM + 1))),
                ("number", json!(7)),
                ("control", json!("1.0\u{1b}[2J")),
                ("nested", json!({"x": 1})),
            ] {
                let mut v = good.clone();
                set(&mut v, &path, value);
                let r = decode(kind, &bytes(&v));
                assert!(r.is_err(), "{kind}: {path:?} {what} accepted");
            }
        }
    }
}

#[test]
fn check_in() {
    let ok = CheckIn::decode(&bytes(&sample(Kind::CheckIn))).unwrap();
    assert_eq!((ok.coap_port, ok.sequence, ok.boots), (40123, 3, 2));
    assert_eq!(ok.release_id, None);
    assert_eq!(CheckIn::decode(&ok.encode().unwrap()).unwrap(), ok);
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = sample(Kind::CheckIn);
        f(&mut v);
        CheckIn::decode(&bytes(&v)).unwrap_err()
    };
    assert!(matches!(
        bad(&|v| v["coap_port"] = json!(0)),
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|v| v["coap_port"] = json!(65536)),
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|v| v["coap_port"] = json!(-1)),
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|v| v["sequence"] = json!(-3)),
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|v| v["sequence"] = json!(1e20)),
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(&|v| v["boots"] = json!(1.5)),
        Error::WrongType { .. }
    ));
    assert!(matches!(
        bad(&|v| v["version"] = json!("")),
        Error::Invalid { .. }
    ));
    assert!(matches!(
        bad(&|v| v["release_id"] = json!("../../etc/passwd")),
        Error::Invalid {
            rule: Rule::ReleaseId,
            ..
        }
    ));
    assert!(matches!(
        bad(&|v| v["release_id"] = json!(RID.to_uppercase())),
        Error::Invalid {
            rule: Rule::ReleaseId,
            ..
        }
    ));
    assert!(matches!(
        bad(&|v| v["state"] = json!("ok")),
        Error::WrongType { .. }
    ));
    assert!(matches!(
        bad(&|v| v["state"]["padding"] = json!("x")),
        Error::UnknownField { ref at, .. } if at == "state"
    ));
    // The refusal names the field, not the value.
    let e = bad(&|v| v["version"] = json!("evil\u{7}value"));
    assert_eq!(
        e.to_string(),
        "malformed check-in: version: must be a version (1-128 characters of 0-9 A-Z a-z . + - _ ~)"
    );
}

#[test]
fn check_in_reply() {
    let ok = CheckInReply::decode(&bytes(&sample(Kind::CheckInReply))).unwrap();
    assert_eq!(ok.pending.as_ref().unwrap().blob_size, 300_000);
    let none = CheckInReply {
        next_checkin_s: 60,
        pending: None,
    };
    // The dispatcher has always sent `"pending": null`; absent reads the same.
    assert_eq!(
        none.encode().unwrap(),
        br#"{"next_checkin_s":60,"pending":null}"#
    );
    assert_eq!(
        CheckInReply::decode(br#"{"next_checkin_s":60}"#).unwrap(),
        none
    );
    for (n, ok) in [
        (0u64, false),
        (1, true),
        (604_800, true),
        (604_801, false),
        (1 << 40, false),
    ] {
        let r = CheckInReply::decode(format!("{{\"next_checkin_s\":{n}}}").as_bytes());
        assert_eq!(r.is_ok(), ok, "{n}");
    }
    let reply = CheckInReply {
        next_checkin_s: 60,
        pending: Some(Pending {
            release_id: "x".into(),
            envelope_size: 1,
            blob_size: 1,
        }),
    };
    assert!(reply.encode().is_err(), "a malformed offer is never sent");
    // The example of docs/device.md.
    let upper = format!(
        r#"{{"next_checkin_s":60,"pending":{{"release_id":"{}","envelope_size":1,"blob_size":1}}}}"#,
        "A".repeat(64)
    );
    assert_eq!(
        CheckInReply::decode(upper.as_bytes())
            .unwrap_err()
            .to_string(),
        "malformed check-in reply: pending.release_id: must be a release id (64 lowercase hex digits)"
    );
    assert!(matches!(
        CheckInReply::decode(br#"{"next_checkin_s":60,"pending":{"release_id":"x"}}"#),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        CheckInReply::decode(
            format!(r#"{{"next_checkin_s":60,"pending":{{"release_id":"{RID}","envelope_size":-1,"blob_size":0}}}}"#).as_bytes()
        ),
        Err(Error::OutOfRange { ref at, .. }) if at == "pending.envelope_size"
    ));
}

#[test]
fn report() {
    let ok = Report::decode(&bytes(&sample(Kind::Report))).unwrap();
    assert_eq!(ok.outcome, InstallOutcome::Rejected);
    assert_eq!(Report::decode(&ok.encode().unwrap()).unwrap(), ok);
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = sample(Kind::Report);
        f(&mut v);
        Report::decode(&bytes(&v)).unwrap_err()
    };
    assert!(matches!(
        bad(&|v| v["outcome"] = json!("bricked")),
        Error::Invalid {
            rule: Rule::OneOf(_),
            ..
        }
    ));
    assert!(matches!(
        bad(&|v| v["check"] = json!("Signature Invalid")),
        Error::Invalid {
            rule: Rule::CheckCode,
            ..
        }
    ));
    assert!(matches!(
        bad(&|v| v["message"] = json!("x".repeat(limits::MAX_MESSAGE + 1))),
        Error::TooLong { .. }
    ));
    assert!(matches!(
        bad(&|v| v["message"] = json!("line\rrewrite")),
        Error::Invalid {
            rule: Rule::Message,
            ..
        }
    ));
    // The worst-case message (every byte escaped in JSON) still fits the body limit.
    let mut v = sample(Kind::Report);
    v["message"] = json!("\n".repeat(limits::MAX_MESSAGE));
    v["version_before"] = json!("1".repeat(limits::MAX_VERSION));
    v["version_after"] = json!("1".repeat(limits::MAX_VERSION));
    v["check"] = json!("a".repeat(limits::MAX_CHECK));
    Report::decode(&bytes(&v)).unwrap();
    // Optional members may be null or absent; the message may be empty.
    let minimal =
        br#"{"outcome":"installed","message":"","version_before":"1","version_after":"2"}"#;
    let m = Report::decode(minimal).unwrap();
    assert_eq!((m.release_id, m.check), (None, None));
}

#[test]
fn pull_notice() {
    let n = PullNotice {
        release_id: RID.into(),
    };
    assert_eq!(PullNotice::decode(&n.encode().unwrap()).unwrap(), n);
    for bad in [
        &br#"{"release_id": "../x"}"#[..],
        br#"{"release_id": 1}"#,
        br#"{"release_id": null}"#,
        b"not json",
        format!(r#"{{"release_id": "{RID}", "device": 1}}"#).as_bytes(),
        format!(r#"{{"release_id": "{RID}", "release_id": "{RID}"}}"#).as_bytes(),
    ] {
        assert!(
            PullNotice::decode(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn status() {
    let s = Status::decode(&bytes(&sample(Kind::Status))).unwrap();
    assert_eq!(s.recent_events.len(), 1);
    assert_eq!(Status::decode(&s.encode().unwrap()).unwrap(), s);
    let bad = |f: &dyn Fn(&mut Value)| {
        let mut v = sample(Kind::Status);
        f(&mut v);
        Status::decode(&bytes(&v)).unwrap_err()
    };
    assert!(matches!(
        bad(&|v| v["recent_events"] = json!(vec![json!({}); limits::MAX_EVENTS + 1])),
        Error::TooLong { .. }
    ));
    assert!(matches!(
        bad(&|v| v["recent_events"] = json!(["text"])),
        Error::WrongType { .. }
    ));
    assert!(matches!(
        bad(&|v| v["identity"]["name"] = json!("..")),
        Error::Invalid {
            rule: Rule::DeviceName,
            ..
        }
    ));
    let dup_in_event = String::from_utf8(bytes(&sample(Kind::Status)))
        .unwrap()
        .replacen("{\"counter\":0", "{\"counter\":1,\"counter\":0", 1);
    assert!(matches!(
        Status::decode(dup_in_event.as_bytes()),
        Err(Error::DuplicateField { .. })
    ));
}

#[test]
fn errors_are_typed_and_quote_no_input() {
    let hostile = "\u{1b}]0;pwned\u{7}".repeat(4);
    let mut v = sample(Kind::CheckIn);
    v[hostile.as_str()] = json!(1);
    let e = CheckIn::decode(&bytes(&v)).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\u{1b}') && !msg.contains("pwned;"), "{msg}");
    assert!(msg.chars().count() < 200, "{msg}");
    assert!(
        e.to_string()
            .starts_with("malformed check-in: unknown field")
    );
    assert!(
        Error::TooLarge {
            kind: Kind::Report,
            size: 9000,
            limit: 8192
        }
        .is_too_large()
    );
}

/// What the fuzz target (`fuzz/fuzz_targets/fleet_decode.rs`) checks, for every decoder.
fn round_trips(data: &[u8]) -> usize {
    let mut decoded = 0;
    macro_rules! check {
        ($($t:ty),+) => {$(
            match <$t>::decode(data) {
                Ok(v) => {
                    decoded += 1;
                    match v.encode() {
                        Ok(again) => assert_eq!(
                            <$t>::decode(&again).unwrap(),
                            v,
                            "{}",
                            String::from_utf8_lossy(data)
                        ),
                        Err(e) => assert!(e.is_too_large(), "{e}"),
                    }
                }
                Err(e) => assert!(e.to_string().len() < 512, "{e}"),
            }
        )+};
    }
    check!(
        CheckIn,
        CheckInReply,
        Report,
        PullNotice,
        Status,
        Bundle,
        Identity,
        Trust,
        State
    );
    if let Ok(list) = Bundle::decode_list(data) {
        for b in &list {
            assert_eq!(&Bundle::decode(&b.encode().unwrap()).unwrap(), b);
        }
    }
    decoded
}

/// A small deterministic fuzzer on stable Rust (the cargo-fuzz target does the same with
/// coverage guidance): valid messages, mutated by byte flips, deletions, insertions of JSON
/// punctuation and duplicated slices, never panic a decoder, and whatever decodes round-trips.
#[test]
fn mutated_messages_never_panic_and_what_decodes_round_trips() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const PUNCT: &[u8] = b"{}[]\",:\\0123456789-+.eEtrufalsn u\x00\xff";
    let mut decoded = 0;
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::BundleList) {
        let base = bytes(&sample(kind));
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..=(next() % 3) {
                let len = b.len().max(1) as u64;
                let at = (next() % len) as usize;
                match next() % 4 {
                    0 if !b.is_empty() => b[at] = PUNCT[(next() % PUNCT.len() as u64) as usize],
                    1 if !b.is_empty() => {
                        b.remove(at);
                    }
                    2 => b.insert(
                        at.min(b.len()),
                        PUNCT[(next() % PUNCT.len() as u64) as usize],
                    ),
                    _ => {
                        let end = (at + (next() % 16) as usize).min(b.len());
                        let slice = b[at.min(end)..end].to_vec();
                        b.splice(end..end, slice);
                    }
                }
            }
            decoded += round_trips(&b);
        }
    }
    // Some mutations keep a message valid (a digit changed): the round trip was exercised.
    assert!(decoded > 100, "{decoded}");
}
