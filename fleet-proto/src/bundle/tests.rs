//! Hostile and well-formed bundles.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;

use crate::tests::PEM;
use suit::Role;
use suit::trust::{KeyEntry, TrustFile};

fn trust_file() -> TrustFile {
    let key = |kid: &str, role: Role| KeyEntry {
        vendors: role
            .is_publisher()
            .then(|| vec![Uuid::from_u128(1).to_string()]),
        ..KeyEntry::new(kid, role, PEM)
    };
    TrustFile {
        keys: vec![
            key("acme-2026", Role::Manufacturer),
            key("author-1", Role::Author),
            key("dispatcher-1", Role::Approver),
        ],
    }
}

/// The trust member with one key dropped.
fn without(kid: &str) -> String {
    let mut f = trust_file();
    f.keys.retain(|k| k.kid != kid);
    f.to_toml()
}

pub(crate) fn sample() -> Bundle {
    Bundle {
        format: FORMAT.into(),
        identity: Identity {
            name: "plc-7".into(),
            vendor_id: Uuid::from_u128(1),
            class_id: Uuid::from_u128(2),
            device_id: Uuid::from_u128(3),
        },
        trust: Trust::new(&trust_file(), true),
        oscore: OscoreParams {
            master_secret_hex: SecretHex::from_bytes(&[0x42; 32]),
            master_salt_hex: Some("0011223344556677".into()),
            sender_id_hex: "01".into(),
            recipient_id_hex: "00".into(),
            id_context_hex: None,
        },
        uplink: Some(OscoreParams {
            master_secret_hex: SecretHex::from_bytes(&[0x5a; 32]),
            master_salt_hex: None,
            sender_id_hex: "00000007".into(),
            recipient_id_hex: "00".into(),
            id_context_hex: None,
        }),
        dispatcher: "coap://127.0.0.1:5683".into(),
        factory_version: "1.0.0".into(),
    }
}

fn edit(f: impl Fn(&mut serde_json::Value)) -> Result<Bundle, Error> {
    let mut v = serde_json::to_value(sample()).unwrap();
    f(&mut v);
    Bundle::decode(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn round_trip_and_the_dispatchers_pretty_form() {
    let b = sample();
    assert_eq!(Bundle::decode(&b.encode().unwrap()).unwrap(), b);
    let pretty = serde_json::to_vec_pretty(&b).unwrap();
    assert_eq!(Bundle::decode(&pretty).unwrap(), b);
    // Bundles without the uplink still read.
    let old = edit(|v| {
        v.as_object_mut().unwrap().remove("uplink");
    })
    .unwrap();
    assert_eq!(old.uplink, None);
    let store = old.trust.trust_store().unwrap();
    assert_eq!(store.by_kid(b"author-1").unwrap().role(), Role::Author);
    // Version 1 bundles (per-role key lists) are refused with the format named.
    assert!(matches!(
        edit(|v| v["format"] = "ics-device-bundle/1".into()),
        Err(Error::Invalid {
            rule: Rule::Format,
            ..
        })
    ));
    let list = serde_json::to_vec(&[b.clone(), b.clone()]).unwrap();
    assert_eq!(Bundle::decode_list(&list).unwrap(), vec![b.clone(), b]);
}

#[test]
fn secrets_stay_out_of_debug() {
    let b = sample();
    let dbg = format!("{b:?}");
    assert!(!dbg.contains(&"42".repeat(32)), "{dbg}");
    assert!(!dbg.contains(&"5a".repeat(32)), "{dbg}");
    assert!(dbg.contains("redacted"));
    assert_eq!(*b.oscore.master_secret_hex.to_bytes(), [0x42; 32]);
    assert_eq!(b.oscore.master_secret_hex.expose(), "42".repeat(32));
    // Errors name the field, never the value.
    let e = edit(|v| v["oscore"]["master_secret_hex"] = "zz".repeat(16).into()).unwrap_err();
    assert!(!e.to_string().contains("zz"), "{e}");
    assert_eq!(
        e.to_string(),
        "malformed bundle: oscore.master_secret_hex: must be hex of 16..=64 bytes"
    );
}

#[test]
fn device_names_that_are_paths_are_refused() {
    for name in [".", "..", "../x", "a/b", "a\\b", ".hidden", ""] {
        let e = edit(|v| v["identity"]["name"] = name.into()).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { rule: Rule::DeviceName, ref at, .. } if at == "identity.name"),
            "{name:?}: {e}"
        );
    }
    let e = edit(|v| v["identity"]["name"] = "x".repeat(65).into()).unwrap_err();
    assert!(matches!(e, Error::TooLong { .. }), "{e}");
}

#[test]
fn hostile_bundles() {
    type Edit = fn(&mut serde_json::Value);
    type Want = fn(&Error) -> bool;
    let cases: &[(&str, Edit, Want)] = &[
        (
            "wrong format",
            |v| v["format"] = "ics-device-bundle/3".into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::Format,
                        ..
                    }
                )
            },
        ),
        (
            "unknown top-level field",
            |v| v["debug"] = true.into(),
            |e| matches!(e, Error::UnknownField { field, .. } if field == "debug"),
        ),
        (
            "unknown nested field",
            |v| v["oscore"]["alg"] = 10.into(),
            |e| matches!(e, Error::UnknownField { at, .. } if at == "oscore"),
        ),
        (
            "not hex",
            |v| v["oscore"]["sender_id_hex"] = "0g".into(),
            |e| matches!(e, Error::Invalid { .. }),
        ),
        (
            "same ids in other cases",
            |v| {
                v["oscore"]["sender_id_hex"] = "0a".into();
                v["oscore"]["recipient_id_hex"] = "0A".into();
            },
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::DistinctIds,
                        ..
                    }
                )
            },
        ),
        (
            "shared secret in other cases",
            |v| {
                v["uplink"]["master_secret_hex"] = "5A".repeat(32).into();
                v["oscore"]["master_secret_hex"] = "5a".repeat(32).into();
            },
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::SeparateSecrets,
                        ..
                    }
                )
            },
        ),
        (
            "odd hex",
            |v| v["oscore"]["sender_id_hex"] = "0".into(),
            |e| matches!(e, Error::Invalid { .. }),
        ),
        (
            "id of 8 bytes",
            |v| v["oscore"]["sender_id_hex"] = "00".repeat(8).into(),
            |e| matches!(e, Error::TooLong { .. }),
        ),
        (
            "short secret",
            |v| v["oscore"]["master_secret_hex"] = "00".repeat(15).into(),
            |e| matches!(e, Error::Invalid { .. }),
        ),
        (
            "same ids",
            |v| v["oscore"]["sender_id_hex"] = "00".into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::DistinctIds,
                        ..
                    }
                )
            },
        ),
        (
            "shared secret",
            |v| v["uplink"]["master_secret_hex"] = "42".repeat(32).into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::SeparateSecrets,
                        ..
                    }
                )
            },
        ),
        (
            "no manufacturer",
            |v| v["trust"]["store"] = without("acme-2026").into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::AtLeastOneKey,
                        ..
                    }
                )
            },
        ),
        (
            "approval without approver",
            |v| v["trust"]["store"] = without("dispatcher-1").into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::ApproverRequired,
                        ..
                    }
                )
            },
        ),
        (
            "trust store with an invalid entry",
            |v| {
                let t = v["trust"]["store"]
                    .as_str()
                    .unwrap()
                    .replace("author", "writer");
                v["trust"]["store"] = t.into();
            },
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::TrustStore,
                        ..
                    }
                )
            },
        ),
        (
            "private key",
            |v| {
                let t = v["trust"]["store"]
                    .as_str()
                    .unwrap()
                    .replace("PUBLIC", "PRIVATE");
                v["trust"]["store"] = t.into();
            },
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::TrustStore,
                        ..
                    }
                )
            },
        ),
        (
            "key file instead of an inline key",
            |v| {
                v["trust"]["store"] = "[[key]]\nkid = \"m\"\nrole = \"manufacturer\"\n\
                     vendors = [\"*\"]\npublic_key_file = \"/etc/shadow\"\n"
                    .into();
            },
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::TrustStore,
                        ..
                    }
                )
            },
        ),
        (
            "http dispatcher",
            |v| v["dispatcher"] = "http://127.0.0.1".into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::CoapUri,
                        ..
                    }
                )
            },
        ),
        (
            "bad uuid",
            |v| v["identity"]["vendor_id"] = "not-a-uuid".into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::Uuid,
                        ..
                    }
                )
            },
        ),
        (
            "uuid as a number",
            |v| v["identity"]["class_id"] = 7.into(),
            |e| matches!(e, Error::WrongType { .. }),
        ),
        (
            "version with a space",
            |v| v["factory_version"] = "1.0 beta".into(),
            |e| {
                matches!(
                    e,
                    Error::Invalid {
                        rule: Rule::Version,
                        ..
                    }
                )
            },
        ),
        (
            "require_approval as text",
            |v| v["trust"]["require_approval"] = "yes".into(),
            |e| matches!(e, Error::WrongType { .. }),
        ),
        (
            "missing identity",
            |v| {
                v.as_object_mut().unwrap().remove("identity");
            },
            |e| matches!(e, Error::MissingField { at, .. } if at == "identity"),
        ),
    ];
    for (what, f, want) in cases {
        match edit(*f) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(want(&e), "{what}: {e}"),
        }
    }
}

#[test]
fn duplicate_keys_and_size() {
    let json = String::from_utf8(sample().encode().unwrap().to_vec()).unwrap();
    // A second "oscore" member (JSON parsers differ on which one wins).
    let dup = json.replacen("\"dispatcher\":", "\"oscore\":{},\"dispatcher\":", 1);
    assert!(matches!(
        Bundle::decode(dup.as_bytes()),
        Err(Error::DuplicateField { ref field, .. }) if field == "oscore"
    ));
    let big = vec![b' '; limits::MAX_BUNDLE + 1];
    assert!(matches!(Bundle::decode(&big), Err(Error::TooLarge { .. })));
    assert!(matches!(
        Bundle::decode_list(b"[{}]"),
        Err(Error::MissingField { ref at, .. }) if at == "[0].format"
    ));
}

#[test]
fn encode_refuses_what_a_device_would_refuse() {
    let mut b = sample();
    b.identity.name = "..".into();
    assert!(b.validate().is_err());
    let mut b = sample();
    b.oscore.sender_id_hex = "00".into();
    assert!(b.encode().is_err());
}

#[test]
fn peer_view_swaps_ids() {
    let p = sample().oscore.peer_view();
    assert_eq!(
        (p.sender_id_hex.as_str(), p.recipient_id_hex.as_str()),
        ("00", "01")
    );
    assert_eq!(p.master_secret_hex, sample().oscore.master_secret_hex);
}
