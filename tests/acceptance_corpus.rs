//! The hostile corpus (`suit::corpus`, one envelope per attack) through the four call sites
//! that accept releases — `publisher verify`, the update server's upload check, the
//! dispatcher's intake and a provisioned device — each loading the same trust file through
//! its own loader and running its own rules. Every case must be refused with the same code
//! at each (`docs/acceptance.md`), and the genuine releases accepted by all four.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use suit::corpus::{CLASS, Case, Corpus, VENDOR};

/// What one call site made of one envelope: `ok` or the refusal code.
type Site<'a> = Box<dyn Fn(&Case) -> String + 'a>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn publisher_site<'a>(dir: &'a Path, trust: &'a Path, now: u64) -> Site<'a> {
    Box::new(move |case: &Case| {
        let env = dir.join(format!("{}.suit", case.name));
        std::fs::write(&env, &case.envelope).unwrap();
        let args = publisher::verify::VerifyArgs {
            envelope: env,
            trust_store: Some(trust.to_owned()),
            require_author: true,
            at: Some(now),
            ..Default::default()
        };
        match publisher::verify::verify(&args) {
            Ok(_) => "ok".into(),
            Err(publisher::CliError::Check { check, .. }) => check.into(),
            Err(e) => format!("not a check: {e}"),
        }
    })
}

fn update_server_site<'a>(dir: &'a Path, trust_toml: &str, now: u64) -> Site<'a> {
    // The update server's own configuration and publishers-file loader.
    let publishers = dir.join("publishers.toml");
    std::fs::write(&publishers, trust_toml).unwrap();
    let cfg_path = dir.join("update-server.toml");
    std::fs::write(
        &cfg_path,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\npublishers_file = \"publishers.toml\"\n\
         [tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n\
         [storage]\nkind = \"local\"\npath = \"objects\"\n\
         [policy]\nrequire_author_signature = true\n",
    )
    .unwrap();
    let cfg = update_server::config::Config::load(&cfg_path).unwrap();
    let registry = update_server::publishers::Registry::open(&publishers).unwrap();
    Box::new(move |case: &Case| {
        let trust = registry.trust_store().unwrap();
        match update_server::ingest::accept_envelope(&cfg, &trust, &case.envelope, "corpus", now) {
            Ok(_) => "ok".into(),
            Err(e) => e.parts().1.to_owned(),
        }
    })
}

fn dispatcher_site<'a>(dir: &'a Path, c: &Corpus, now: u64) -> Site<'a> {
    // The dispatcher holds its own approval key; the plant's trust file names the others.
    let mut file = suit::TrustFile::parse(&c.trust_toml).unwrap();
    file.keys.retain(|k| k.role != "approver");
    let path = dir.join("trust.toml");
    std::fs::write(&path, file.to_toml()).unwrap();
    let trust = dispatcher::intake::load_trust(&path, &c.approver.public_key()).unwrap();
    let rules = dispatcher::intake::intake_rules(true);
    let at = chrono::DateTime::from_timestamp(now as i64, 0).unwrap();
    Box::new(move |case: &Case| {
        match dispatcher::intake::accept(&case.envelope, &trust.store, &rules, at) {
            Ok(_) => "ok".into(),
            Err(e) => e.code().into(),
        }
    })
}

fn device_site<'a>(dir: &'a Path, c: &Corpus) -> Site<'a> {
    let file = suit::TrustFile::parse(&c.trust_toml).unwrap();
    let d = device_sim::DeviceDir::new(dir.join("device"));
    let identity = device_sim::Identity {
        name: "plc-corpus".into(),
        vendor_id: VENDOR,
        class_id: CLASS,
        device_id: uuid::Uuid::from_u128(1),
    };
    let trust = fleet_proto::bundle::Trust::new(&file, true).requiring_author(true);
    let device = device_sim::Device::provision(d, identity, trust, b"factory", "1.0.0").unwrap();
    // A device receives the envelope with its domain's approval appended.
    Box::new(move |case: &Case| match device.accept(&case.for_device) {
        Ok(_) => "ok".into(),
        Err(e) => e.code().into(),
    })
}

#[test]
fn every_call_site_refuses_every_hostile_envelope_with_the_same_code() {
    let now = now();
    let c = Corpus::generate(&mut rand_core::UnwrapErr(getrandom::SysRng), now);
    assert!(c.cases.len() >= 30, "{} cases", c.cases.len());
    let tmp = tempfile::tempdir().unwrap();
    let trust_file = tmp.path().join("corpus-trust.toml");
    std::fs::write(&trust_file, &c.trust_toml).unwrap();
    let dirs: Vec<_> = (0..4)
        .map(|i| tmp.path().join(format!("site-{i}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let sites: Vec<(&str, Site)> = vec![
        (
            "publisher verify",
            publisher_site(&dirs[0], &trust_file, now),
        ),
        (
            "update server",
            update_server_site(&dirs[1], &c.trust_toml, now),
        ),
        ("dispatcher intake", dispatcher_site(&dirs[2], &c, now)),
        ("device", device_site(&dirs[3], &c)),
    ];
    let mut failures = Vec::new();
    for (name, site) in &sites {
        for good in [&c.good, &c.good_t3] {
            let got = site(good);
            if got != "ok" {
                failures.push(format!("{name}: {} refused: {got}", good.name));
            }
        }
        for case in &c.cases {
            let got = site(case);
            if got != case.expect {
                failures.push(format!(
                    "{name}: {}: expected {}, got {got}",
                    case.name, case.expect
                ));
            }
        }
    }
    println!(
        "{} hostile envelopes x {} call sites: {} mismatches",
        c.cases.len(),
        sites.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
