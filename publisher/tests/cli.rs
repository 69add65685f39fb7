//! The `publisher` binary as a user runs it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
const CLASS: &str = "1492af14-2569-5e48-bf42-9b2d51f2ab45";

fn publisher(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_publisher"))
        .args(args)
        .output()
        .expect("run publisher")
}

fn ok(args: &[&str]) -> String {
    let o = publisher(args);
    assert!(
        o.status.success(),
        "publisher {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs and expects exit `code`; returns stderr.
fn fails(args: &[&str], code: i32) -> String {
    let o = publisher(args);
    assert_eq!(o.status.code(), Some(code), "publisher {args:?}: {o:?}");
    String::from_utf8(o.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Release {
    _dir: tempfile::TempDir,
    keys: PathBuf,
    out: PathBuf,
    image: PathBuf,
}

impl Release {
    fn pubkey(&self) -> PathBuf {
        self.keys.join("signing-key.pub.pem")
    }
    fn envelope(&self) -> PathBuf {
        self.out.join("envelope.suit")
    }
    fn payload(&self) -> PathBuf {
        self.out.join("payload.enc")
    }
    fn key(&self) -> PathBuf {
        self.out.join("release-key.cbor")
    }
}

fn release(image_len: usize, extra: &[&str]) -> Release {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = dir.path().join("rel");
    let image = dir.path().join("image.bin");
    std::fs::write(
        &image,
        (0..image_len)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let kid_line = ok(&["keygen", "--out", s(&keys), "--kid", "acme-2026"]);
    assert_eq!(kid_line.lines().next(), Some("kid acme-2026"));
    let sk = keys.join("signing-key.pem");
    let mut args = vec![
        "release",
        "--signing-key",
        s(&sk),
        "--image",
        s(&image),
        "--vendor-id",
        VENDOR,
        "--class-id",
        CLASS,
        "--sequence",
        "42",
        "--version",
        "2.1.0",
        "--type",
        "T2",
        "--category",
        "security",
        "--cve",
        "CVE-2026-0001",
        "--out",
        s(&out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    Release {
        _dir: dir,
        keys,
        out,
        image,
    }
}

fn verify_args(r: &Release) -> Vec<String> {
    [
        "verify",
        s(&r.envelope()),
        "--trust",
        s(&r.pubkey()),
        "--payload",
        s(&r.payload()),
        "--release-key",
        s(&r.key()),
    ]
    .map(String::from)
    .to_vec()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn keygen_release_verify_round_trip() {
    let r = release(100_000, &[]);
    let out = ok(&as_strs(&verify_args(&r)));
    assert!(out.starts_with("OK "), "{out}");
    assert!(out.contains("plaintext size and digest"), "{out}");
    // The release key is a secret: owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "release-key.cbor is readable by others");
        let mode = std::fs::metadata(r.keys.join("signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
    // --extract yields the original image.
    let extracted = r.out.join("image.out");
    let mut args = verify_args(&r);
    args.extend(["--extract".into(), s(&extracted).into()]);
    ok(&as_strs(&args));
    assert_eq!(
        std::fs::read(&extracted).unwrap(),
        std::fs::read(&r.image).unwrap()
    );
}

#[test]
fn flipping_any_byte_fails_verify() {
    let r = release(48, &[]);
    for (file, name) in [(r.payload(), "payload"), (r.envelope(), "envelope")] {
        let original = std::fs::read(&file).unwrap();
        for i in 0..original.len() {
            let mut bad = original.clone();
            bad[i] ^= 0x01;
            std::fs::write(&file, &bad).unwrap();
            let err = fails(&as_strs(&verify_args(&r)), 1);
            assert_eq!(err.lines().count(), 1, "{name} byte {i}: {err}");
            assert!(
                err.starts_with("verification failed: "),
                "{name} byte {i}: {err}"
            );
        }
        std::fs::write(&file, &original).unwrap();
    }
    ok(&as_strs(&verify_args(&r)));
}

#[test]
fn tampered_payload_is_not_extracted() {
    let r = release(5000, &[]);
    let mut bad = std::fs::read(r.payload()).unwrap();
    bad[100] ^= 0x80;
    std::fs::write(r.payload(), &bad).unwrap();
    let extracted = r.out.join("image.out");
    let mut args = verify_args(&r);
    args.extend(["--extract".into(), s(&extracted).into()]);
    let err = fails(&as_strs(&args), 1);
    assert!(err.contains("ciphertext-digest-mismatch"), "{err}");
    assert!(!extracted.exists());
    assert_eq!(
        std::fs::read_dir(&r.out).unwrap().count(),
        3,
        "no temporary file left"
    );
}

#[test]
fn untrusted_and_unauthorised_signers() {
    let r = release(100, &[]);
    let other = release(10, &[]);
    let err = fails(
        &["verify", s(&r.envelope()), "--trust", s(&other.pubkey())],
        1,
    );
    assert!(err.contains("untrusted-signer"), "{err}");
    // The same key trusted only as a third party may not sign this T2 release.
    let err = fails(
        &["verify", s(&r.envelope()), "--third-party", s(&r.pubkey())],
        1,
    );
    assert!(err.contains("signer-not-authorized"), "{err}");
    // A required approval is missing.
    let err = fails(
        &[
            "verify",
            s(&r.envelope()),
            "--trust",
            s(&r.pubkey()),
            "--approver",
            s(&other.pubkey()),
        ],
        1,
    );
    assert!(err.contains("approval-missing"), "{err}");
}

#[test]
fn t3_release_with_author_signature() {
    let dir = tempfile::tempdir().unwrap();
    let author = dir.path().join("author");
    ok(&["keygen", "--out", s(&author)]);
    let image = dir.path().join("lib.bin");
    std::fs::write(&image, b"third-party library").unwrap();
    let sig = dir.path().join("author.sig");
    ok(&[
        "author-sign",
        "--signing-key",
        s(&author.join("signing-key.pem")),
        "--image",
        s(&image),
        "--out",
        s(&sig),
    ]);

    let maker = dir.path().join("maker");
    ok(&["keygen", "--out", s(&maker)]);
    let out = dir.path().join("rel");
    let sk = maker.join("signing-key.pem");
    let base = [
        "release",
        "--signing-key",
        s(&sk),
        "--image",
        s(&image),
        "--vendor-id",
        VENDOR,
        "--class-id",
        CLASS,
        "--sequence",
        "1",
        "--version",
        "1.0.0",
        "--type",
        "T3",
        "--out",
        s(&out),
        "--quiet",
    ];
    let err = fails(&base, 2);
    assert!(err.contains("--author-signature"), "{err}");
    let mut args = base.to_vec();
    args.extend(["--author-signature", s(&sig)]);
    ok(&args);
    let out_text = ok(&[
        "verify",
        s(&out.join("envelope.suit")),
        "--trust",
        s(&maker.join("signing-key.pub.pem")),
        "--author-trust",
        s(&author.join("signing-key.pub.pem")),
    ]);
    assert!(out_text.contains("T3 author signature"), "{out_text}");
    // The maker's key is not the author's key.
    let err = fails(
        &[
            "verify",
            s(&out.join("envelope.suit")),
            "--trust",
            s(&maker.join("signing-key.pub.pem")),
            "--author-trust",
            s(&maker.join("signing-key.pub.pem")),
        ],
        1,
    );
    assert!(err.contains("author-signature-invalid"), "{err}");
}

#[test]
fn inspect_json_shows_metadata() {
    let r = release(
        10,
        &[
            "--severity",
            "high",
            "--reboot",
            "--uri",
            "coaps://d.local/fw",
        ],
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", s(&r.envelope()), "--json"])).unwrap();
    assert_eq!(json["sequence_number"], 42);
    assert_eq!(json["version"], "2.1.0");
    assert_eq!(json["ics"]["update_type"], "T2");
    assert_eq!(json["ics"]["cves"][0], "CVE-2026-0001");
    assert_eq!(json["ics"]["severity"], "high");
    assert_eq!(json["ics"]["reboot"], true);
    assert_eq!(json["authentication"][0]["kid"], "acme-2026");
    assert_eq!(json["manifest_digest_matches"], true);
    assert_eq!(json["components"][1]["parameters"]["image-size"], "26");
    let text = ok(&["inspect", s(&r.envelope())]);
    assert!(text.contains("coaps://d.local/fw"), "{text}");
}

#[test]
fn bad_input_is_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&["keygen", "--out", s(dir.path()), "--kid", "has space"], 2);
    assert!(err.contains("kid"), "{err}");
    ok(&["keygen", "--out", s(dir.path())]);
    let err = fails(&["keygen", "--out", s(dir.path())], 2);
    assert!(err.contains("refusing to overwrite"), "{err}");
    let r = release(10, &[]);
    let err = fails(
        &[
            "release",
            "--signing-key",
            s(&r.keys.join("signing-key.pem")),
            "--image",
            s(&r.image),
            "--vendor-id",
            VENDOR,
            "--class-id",
            CLASS,
            "--sequence",
            "1",
            "--version",
            "1.x",
            "--type",
            "T1",
            "--out",
            s(dir.path()),
        ],
        2,
    );
    assert!(err.contains("--version"), "{err}");
    let err = fails(&["inspect", s(&r.image)], 1);
    assert!(err.contains("malformed-envelope"), "{err}");
    let missing = dir.path().join("missing.suit");
    let err = fails(&["inspect", s(&missing)], 3);
    assert!(err.contains("missing.suit"), "{err}");
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

#[test]
fn verifies_the_published_examples() {
    let v = vectors();
    let example = v.join("suit-manifest/manifest-spec/example1.signed.cbor");
    let key = v.join("suit-manifest/keys/spec-example-signing-key.p256.pub.pem");
    // The IETF examples are SUIT, not releases of this project's profile.
    let err = fails(&["verify", s(&example), "--trust", s(&key)], 1);
    assert!(err.contains("profile-violation"), "{err}");
    let out = ok(&["verify", s(&example), "--trust", s(&key), "--generic"]);
    assert!(
        out.contains("1f2e7acca0dc2786f2fe4eb947f50873a6a3cfaa98866c5b02e621f42074daf2"),
        "{out}"
    );
    let out = ok(&[
        "verify",
        s(&v.join("suit-encryption/draft-examples/suit-manifest-aes-kw.suit")),
        "--mac-key",
        "6161616161616161616161616161616161616161616161616161616161616161",
        "--generic",
    ]);
    assert!(out.contains("MAC"), "{out}");
    let err = fails(
        &[
            "verify",
            s(&v.join("suit-manifest/manifest-spec/example1.unsigned.cbor")),
            "--trust",
            s(&v.join("suit-manifest/keys/spec-example-signing-key.p256.pub.pem")),
            "--generic",
        ],
        1,
    );
    assert!(err.contains("unauthenticated"), "{err}");
}
