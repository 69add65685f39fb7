//! The shipped examples and the language's error reporting.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use policies::{Action, LivePolicy, Policy, ReleaseFacts};
use suit::{Category, Role, Severity, UpdateType};

fn example(name: &str) -> Policy {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    Policy::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn release(t: UpdateType, role: Role) -> ReleaseFacts {
    ReleaseFacts::new(t, role)
}

#[test]
fn plant_example_decides_as_documented() {
    let p = example("plant.toml");
    let app = release(UpdateType::T1, Role::ThirdParty);
    let d = p.decide(&app, None);
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Install, "applications install automatically")
    );
    assert_eq!(d.rollout.unwrap().plan(20), vec![1, 4, 15]);

    let mut fw = release(UpdateType::T2, Role::Manufacturer);
    fw.categories = vec![Category::Security];
    fw.cves = vec!["CVE-2026-1111".into()];
    fw.severity = Some(Severity::High);
    let d = p.decide(&fw, None);
    assert_eq!(
        (d.action, d.rule.as_str()),
        (Action::Hold, "firmware needs approval")
    );
    assert_eq!(d.window.unwrap().name, "weekend-night");

    fw.severity = Some(Severity::Critical);
    assert_eq!(
        p.decide(&fw, None).rule,
        "critical vulnerabilities: decide now"
    );

    // A T1 application signed by the manufacturer is not matched by the apps rule.
    let d = p.decide(&release(UpdateType::T1, Role::Manufacturer), None);
    assert_eq!((d.action, d.rule.as_str()), (Action::Hold, "defaults"));

    let mut note = release(UpdateType::T1, Role::Manufacturer);
    note.categories = vec![Category::Announcement];
    assert_eq!(p.decide(&note, None).action, Action::Notify);
}

#[test]
fn lab_example_rejects_for_the_safety_group_only() {
    let p = example("lab.toml");
    let r = release(UpdateType::T2, Role::Manufacturer);
    assert_eq!(p.decide(&r, Some("safety")).action, Action::Reject);
    assert_eq!(p.decide(&r, Some("line-2")).action, Action::Install);
    assert_eq!(p.decide(&r, None).action, Action::Install);
}

fn error(text: &str) -> policies::PolicyError {
    Policy::from_toml(text, "bad.toml").unwrap_err()
}

#[test]
fn errors_name_file_line_and_reason() {
    let e = error("[defaults]\naction = \"hold\"\n\n[[rule]]\nname = \"x\"\naction = \"instal\"\n");
    assert_eq!((e.file.as_str(), e.line), ("bad.toml", 4), "{e}");
    assert!(e.reason.contains("must be one of install"), "{e}");

    let e = error("[[rule]]\nname = \"x\"\naction = \"install\"\nwindow = \"nightly\"\n");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.reason.contains("no window named \"nightly\""), "{e}");

    let e = error("[[rule]]\nname = \"x\"\nacton = \"install\"\n");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.contains("acton"), "{e}");

    let e = error("\n\n[[window]]\nname = \"w\"\nschedule = \"0 2 * *\"\nduration = \"1h\"\n");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.contains("5 fields"), "{e}");

    let e = error(
        "[[window]]\nname = \"w\"\nschedule = \"0 2 * * *\"\nduration = \"1h\"\ntimezone = \"Mars/Olympus\"\n",
    );
    assert!(e.reason.contains("unknown time zone"), "{e}");

    let e = error("[[rule]]\nname = \"x\"\nmatch = { type = [\"T4\"] }\naction = \"hold\"\n");
    assert!(e.reason.contains("match.type: \"T4\""), "{e}");

    let e = error("[[rule]]\nname = \"x\"\nmatch = { cves = [\"CVE-26-1\"] }\naction = \"hold\"\n");
    assert!(e.reason.contains("match.cves"), "{e}");

    let e = error("[[rollout]]\nname = \"r\"\nbatches = [\"0\"]\nfailure_threshold = \"1\"\n");
    assert!(e.reason.contains("positive count"), "{e}");

    let e = error(
        "[[rule]]\nname = \"x\"\naction = \"hold\"\n[[rule]]\nname = \"x\"\naction = \"log\"\n",
    );
    assert_eq!(e.line, 4, "{e}");
    // Display is file:line:column: reason.
    assert!(e.to_string().starts_with("bad.toml:4:"), "{e}");
}

#[test]
fn a_failed_reload_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[defaults]\naction = \"install\"\n").unwrap();
    let mut live = LivePolicy::new(Policy::load(&path).unwrap());
    std::fs::write(&path, "[defaults]\naction = \"explode\"\n").unwrap();
    let e = live.reload(&path).unwrap_err();
    assert_eq!(e.line, 1);
    assert_eq!(live.current().default_action, Action::Install);
    std::fs::write(&path, "[defaults]\naction = \"log\"\n").unwrap();
    live.reload(&path).unwrap();
    assert_eq!(live.current().default_action, Action::Log);
}
