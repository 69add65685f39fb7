//! The hostile corpus (`suit::corpus`) through `suit::accept` under each call site's rules:
//! the code each case is refused with is the one every call site must give
//! (`tests/acceptance_corpus.rs` at the workspace root checks the call sites themselves).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use suit::corpus::{Corpus, NOW};
use suit::{AuthorRule, Rules, TrustStore};

fn corpus() -> (Corpus, TrustStore) {
    let c = Corpus::generate(&mut rand_core::UnwrapErr(getrandom::SysRng), NOW);
    let t = TrustStore::from_toml(&c.trust_toml, &mut suit::trust::no_key_files).unwrap();
    (c, t)
}

fn sites() -> Vec<(&'static str, Rules, bool)> {
    let req = AuthorRule::Require;
    vec![
        (
            "publisher",
            Rules::publisher_check().with_author(req),
            false,
        ),
        (
            "update-server",
            Rules::update_server().with_author(req),
            false,
        ),
        (
            "dispatcher",
            Rules::dispatcher_intake().with_author(req),
            false,
        ),
        ("device", Rules::device().with_author(req), true),
    ]
}

#[test]
fn every_case_refused_with_its_code_under_every_sites_rules() {
    let (c, t) = corpus();
    assert!(c.cases.len() >= 30, "{} cases", c.cases.len());
    let mut failures = Vec::new();
    for (site, rules, device) in sites() {
        for good in [&c.good, &c.good_t3] {
            let bytes = if device {
                &good.for_device
            } else {
                &good.envelope
            };
            if let Err(e) = suit::accept(bytes, &t, &rules, NOW) {
                failures.push(format!("{site}: {} refused: {e}", good.name));
            }
        }
        for case in &c.cases {
            let bytes = if device {
                &case.for_device
            } else {
                &case.envelope
            };
            match suit::accept(bytes, &t, &rules, NOW) {
                Ok(_) => failures.push(format!("{site}: {} was accepted", case.name)),
                Err(e) if e.code() != case.expect => failures.push(format!(
                    "{site}: {}: expected {}, got {} ({e})",
                    case.name,
                    case.expect,
                    e.code()
                )),
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_envelopes_carry_only_authenticated_blocks() {
    let (c, t) = corpus();
    let a = suit::accept(&c.good.envelope, &t, &Rules::dispatcher_intake(), NOW).unwrap();
    assert_eq!(a.canonical(), &c.good.envelope[..]);
    let approved = suit::approve(&a, &c.approver).unwrap();
    let d = suit::accept(&approved, &t, &Rules::device(), NOW).unwrap();
    assert!(d.approved());
    assert_eq!(d.canonical(), &approved[..]);
    assert_eq!(d.release().unwrap().release_kid, b"rk-corpus");
    // An approval never reaches intake from outside.
    assert_eq!(
        suit::accept(&approved, &t, &Rules::dispatcher_intake(), NOW)
            .unwrap_err()
            .code(),
        "signer-not-authorized"
    );
}
