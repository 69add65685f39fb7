//! `publisher`: create, inspect and verify SUIT releases. Argument parsing only; the work is
//! in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use publisher::verify::VerifyArgs;
use publisher::{CliError, Result};
use suit::{Category, IcsMetadata, Severity, UpdateType};
use uuid::Uuid;
use zeroize::Zeroizing;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a verification check failed (one line names it); \
2 bad input (arguments, keys, files); 3 a file could not be read or written; \
4 the key repository or update server refused or could not be reached (publish).";

#[derive(Parser, Debug)]
#[command(name = "publisher", version, about = "Create, inspect and verify SUIT releases", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a P-256 signing key: DIR/signing-key.pem (0600), .pub.pem and .kid.
    Keygen(KeygenCmd),
    /// Encrypt an image with a fresh release key and sign the envelope (encrypt-then-sign).
    Release(Box<ReleaseCmd>),
    /// Release, store the release key in the key repository and upload to the update server.
    /// Endpoints and credentials: --config FILE (or PUBLISHER_CONFIG) and PUBLISHER_*
    /// environment variables; see docs/update-server.md.
    Publish(Box<PublishCmd>),
    /// Sign a plaintext image as its T3 author (COSE_Sign1 over its SHA-256 SUIT_Digest).
    AuthorSign(AuthorSignCmd),
    /// Show everything in an envelope (nothing is verified).
    Inspect(InspectCmd),
    /// Verify signatures (or MAC), then payload digests and decryption when given.
    Verify(Box<VerifyCmd>),
}

#[derive(clap::Args, Debug)]
struct KeygenCmd {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Key identifier (default: first 8 bytes of the RFC 9679 thumbprint, hex).
    #[arg(long)]
    kid: Option<String>,
}

#[derive(clap::Args, Debug)]
struct AuthorSignCmd {
    /// Author's PKCS#8 signing key.
    #[arg(long)]
    signing_key: PathBuf,
    /// Plaintext image.
    #[arg(long)]
    image: PathBuf,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct InspectCmd {
    /// Envelope file.
    envelope: PathBuf,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct VerifyCmd {
    /// Envelope file.
    envelope: PathBuf,
    /// Trusted manufacturer public key (SPKI PEM). Repeatable.
    #[arg(long)]
    trust: Vec<PathBuf>,
    /// Trusted third-party public key: may sign T1 releases only. Repeatable.
    #[arg(long)]
    third_party: Vec<PathBuf>,
    /// Trusted dispatcher approval key; when given, an approval signature is required.
    #[arg(long)]
    approver: Vec<PathBuf>,
    /// HMAC-256 key for COSE_Mac0 envelopes: hex, or @FILE to read it from a file
    /// (prefer the file or the environment variable for real keys).
    #[arg(long, env = "PUBLISHER_MAC_KEY", hide_env_values = true)]
    mac_key: Option<String>,
    /// Encrypted payload: checks its size and SHA-256 against the manifest.
    #[arg(long)]
    payload: Option<PathBuf>,
    /// Release key (COSE_Key): decrypts the payload and checks the plaintext digest.
    #[arg(long)]
    release_key: Option<PathBuf>,
    /// Trusted T3 author key: requires and checks the author signature.
    #[arg(long)]
    author_trust: Vec<PathBuf>,
    /// A trust-store file (TOML, docs/trust-store.md): roles, vendor scopes, validity and
    /// revocation, as the update server, dispatcher and devices read it.
    #[arg(long)]
    trust_store: Option<PathBuf>,
    /// Require the domain's approval signature (implied by --approver).
    #[arg(long)]
    require_approval: bool,
    /// Require a verified author signature on T3 releases (implied by --author-trust).
    #[arg(long)]
    require_author: bool,
    /// Judge key validity at this time (RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// Accept any authenticated SUIT envelope (e.g. the IETF examples), not only releases
    /// of this project's profile (docs/acceptance.md).
    #[arg(long)]
    generic: bool,
    /// Write the decrypted image here once every check has passed.
    #[arg(long)]
    extract: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ReleaseCmd {
    /// Manufacturer's PKCS#8 signing key (its kid is read from the .kid file beside it).
    #[arg(long)]
    signing_key: PathBuf,
    /// Signing key identifier, overriding the .kid file.
    #[arg(long)]
    kid: Option<String>,
    /// Plaintext image.
    #[arg(long)]
    image: PathBuf,
    /// Vendor UUID.
    #[arg(long)]
    vendor_id: Uuid,
    /// Device class UUID.
    #[arg(long)]
    class_id: Uuid,
    /// Only for this device UUID.
    #[arg(long)]
    device_id: Option<Uuid>,
    /// Manifest sequence number (must increase with every release: anti-rollback).
    #[arg(long)]
    sequence: u64,
    /// Version installed by this release, X.Y.Z.
    #[arg(long)]
    version: String,
    /// Version precondition on the installed image, e.g. ">=1.2.0".
    #[arg(long)]
    requires: Option<String>,
    /// Update type: T1 application, T2 manufacturer firmware, T3 third-party firmware.
    #[arg(long = "type", value_parser = parse_type)]
    update_type: UpdateType,
    /// Category: bugfix, security, enhancement, announcement. Repeatable.
    #[arg(long, value_parser = parse_category)]
    category: Vec<Category>,
    /// CVE identifier, e.g. CVE-2026-12345. Repeatable.
    #[arg(long)]
    cve: Vec<String>,
    /// Severity: none, low, medium, high, critical.
    #[arg(long, value_parser = parse_severity)]
    severity: Option<Severity>,
    /// Author identity.
    #[arg(long)]
    author: Option<String>,
    /// The device must reboot after installing.
    #[arg(long)]
    reboot: bool,
    /// Release notes.
    #[arg(long)]
    notes: Option<String>,
    /// Where devices or dispatchers fetch the blob.
    #[arg(long)]
    uri: Option<String>,
    /// T3 author signature (from `publisher author-sign`).
    #[arg(long)]
    author_signature: Option<PathBuf>,
    /// kid of the release key in the key repository (default: random rk-...).
    #[arg(long)]
    release_kid: Option<String>,
    /// AES-256 (A256GCM content, A256KW key wrap) instead of AES-128.
    #[arg(long)]
    aes256: bool,
    /// Output directory: envelope.suit, payload.enc, release-key.cbor.
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct PublishCmd {
    #[command(flatten)]
    release: ReleaseCmd,
    /// Publisher configuration (TOML: key_repo and update_server endpoints, client id,
    /// client_secret_file). Secrets never go on the command line.
    #[arg(long, env = "PUBLISHER_CONFIG")]
    config: Option<PathBuf>,
}

fn release_args(r: ReleaseCmd) -> (publisher::release::ReleaseArgs, bool) {
    let mut ics = IcsMetadata::new(r.update_type);
    ics.categories = r.category;
    ics.cves = r.cve;
    ics.severity = r.severity;
    ics.author = r.author;
    ics.reboot = r.reboot;
    ics.notes = r.notes;
    let args = publisher::release::ReleaseArgs {
        signing_key: r.signing_key,
        kid: r.kid,
        image: r.image,
        vendor_id: r.vendor_id,
        class_id: r.class_id,
        device_id: r.device_id,
        sequence: r.sequence,
        version: r.version,
        requires: r.requires,
        ics,
        uri: r.uri,
        author_signature: r.author_signature,
        release_kid: r.release_kid,
        aes256: r.aes256,
        out: r.out,
        progress: !r.quiet && !r.json,
    };
    (args, r.json)
}

fn parse_type(s: &str) -> std::result::Result<UpdateType, String> {
    UpdateType::parse(s).ok_or_else(|| "expected T1, T2 or T3".into())
}
fn parse_category(s: &str) -> std::result::Result<Category, String> {
    Category::parse(s)
        .ok_or_else(|| "expected bugfix, security, enhancement or announcement".into())
}
fn parse_severity(s: &str) -> std::result::Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| "expected none, low, medium, high or critical".into())
}

fn mac_key(arg: &str) -> Result<Zeroizing<Vec<u8>>> {
    let text = match arg.strip_prefix('@') {
        Some(path) => Zeroizing::new(
            String::from_utf8(publisher::files::read_bounded(
                path.as_ref(),
                4096,
                "cannot read MAC key",
            )?)
            .map_err(|_| CliError::Input(format!("{path}: MAC key file is not hex text")))?,
        ),
        None => Zeroizing::new(arg.to_owned()),
    };
    hex::decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| CliError::Input("--mac-key must be hex (or @FILE holding hex)".into()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen(c) => keygen(c),
        Command::Publish(c) => publish(*c),
        Command::Release(c) => release(*c),
        Command::AuthorSign(c) => author_sign(c),
        Command::Inspect(c) => inspect(c),
        Command::Verify(c) => verify(*c),
    }
}

/// Prints `value` as pretty JSON (the `--json` output of every subcommand).
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `publisher keygen`.
fn keygen(c: KeygenCmd) -> Result<()> {
    let kid = publisher::release::keygen(&c.out, c.kid.as_deref())?;
    println!("kid {kid}");
    println!("private key {}", c.out.join("signing-key.pem").display());
    println!(
        "public key  {}",
        c.out.join("signing-key.pub.pem").display()
    );
    Ok(())
}

/// `publisher publish`.
fn publish(c: PublishCmd) -> Result<()> {
    let cfg = publisher::publish::PublishConfig::load(c.config.as_deref())?;
    let (args, json) = release_args(c.release);
    let progress = args.progress;
    let s = publisher::publish::publish(&args, &cfg, progress)?;
    if json {
        print_json(&s);
        return Ok(());
    }
    println!("release id   {}", s.release_id);
    println!("product      {}", s.product);
    println!("release kid  {} stored at {}", s.release_kid, s.key_url);
    println!("signed by    {}", s.signer_kid);
    println!("envelope     {}", s.envelope_url);
    println!("payload      {} ({} bytes)", s.payload_url, s.payload_size);
    println!(
        "update server {} in {:.2} s",
        if s.newly_published {
            "published the release"
        } else {
            "already had this release (unchanged)"
        },
        s.upload_seconds
    );
    Ok(())
}

/// `publisher release`.
fn release(c: ReleaseCmd) -> Result<()> {
    let (args, json) = release_args(c);
    let s = publisher::release::release(&args)?;
    if json {
        print_json(&s);
        return Ok(());
    }
    let mib = s.image_size as f64 / (1 << 20) as f64;
    println!("release id   {}", s.release_id);
    println!(
        "release kid  {} (store {} in the key repository)",
        s.release_kid,
        s.release_key.display()
    );
    println!("signed by    {}", s.signer_kid);
    println!("envelope     {}", s.envelope.display());
    println!(
        "payload      {} ({} bytes)",
        s.payload.display(),
        s.payload_size
    );
    println!(
        "image        {} bytes, encrypted and hashed in {:.2} s ({:.0} MiB/s)",
        s.image_size,
        s.seconds,
        mib / s.seconds.max(1e-9)
    );
    Ok(())
}

/// `publisher author-sign`.
fn author_sign(c: AuthorSignCmd) -> Result<()> {
    let kid = publisher::release::author_sign(&c.signing_key, &c.image, &c.out)?;
    println!(
        "author signature by kid {kid} written to {}",
        c.out.display()
    );
    Ok(())
}

/// `publisher inspect`.
fn inspect(c: InspectCmd) -> Result<()> {
    let d = publisher::verify::inspect(&c.envelope)?;
    if c.json {
        print_json(&d);
    } else {
        print!("{d}");
    }
    Ok(())
}

/// `publisher verify`.
fn verify(c: VerifyCmd) -> Result<()> {
    let at = match c.at {
        Some(t) => Some(
            suit::trust::Timestamp::parse(&t)
                .map_err(|e| publisher::CliError::Input(format!("--at: {e}")))?
                .0,
        ),
        None => None,
    };
    let args = VerifyArgs {
        envelope: c.envelope,
        trust: c.trust,
        third_party: c.third_party,
        approver: c.approver,
        mac_key: c.mac_key.as_deref().map(mac_key).transpose()?,
        payload: c.payload,
        release_key: c.release_key,
        author_trust: c.author_trust,
        trust_store: c.trust_store,
        require_approval: c.require_approval,
        require_author: c.require_author,
        at,
        generic: c.generic,
        extract: c.extract,
    };
    let report = publisher::verify::verify(&args)?;
    if c.json {
        print_json(&report);
    } else {
        println!("OK {}: {}", report.release_id, report.passed.join(", "));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let prefix = match &e {
                CliError::Check { .. } => "verification failed",
                _ => "error",
            };
            eprintln!("{prefix}: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
