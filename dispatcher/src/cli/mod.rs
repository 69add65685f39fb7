//! `dispatcher`: the domain-local update dispatcher and its operator CLI. Argument parsing
//! and printing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{ClientError, DispatcherClient};

mod local;
mod ops;

use clap::{Parser, Subcommand};
use local::*;
use ops::*;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "dispatcher",
    version,
    about = "Domain-local update dispatcher: intake, policy, approvals, staged rollouts to devices",
    after_help = "Operator commands talk to a running dispatcher: set DISPATCHER_URL, DISPATCHER_CA \
(the CA file written by init) and DISPATCHER_TOKEN_FILE (a file holding your operator token; \
tokens are never passed on the command line).\n\
Exit codes: 0 success; 1 refused by the dispatcher (4xx) or a check failed (audit-verify); 2 bad input or local error; 3 dispatcher unreachable or 5xx."
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Dispatcher URL.
    #[arg(
        long,
        global = true,
        env = "DISPATCHER_URL",
        default_value = "https://127.0.0.1:8445"
    )]
    url: String,
    /// CA certificate of the dispatcher's TLS.
    #[arg(long, global = true, env = "DISPATCHER_CA")]
    ca: Option<PathBuf>,
    /// File holding the operator token.
    #[arg(long, global = true, env = "DISPATCHER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a ready-to-run dispatcher directory (configuration, TLS, keys, an admin token).
    Init(InitArgs),
    /// Run the dispatcher until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Add an operator to the operators file of a local dispatcher (prints the token once).
    AddOperator(AddOperatorArgs),
    /// Verify the audit chain offline (stop the dispatcher first: the database is locked
    /// while it runs). Exit 0 when every record's MAC and link hold.
    AuditVerify(AuditVerifyArgs),
    /// Check a policy file offline (file, line and reason on error).
    CheckPolicy(CheckPolicyArgs),
    /// Overview.
    Status,
    /// Releases.
    Releases(ReleasesArgs),
    /// Releases waiting for a decision.
    Queue,
    /// Approve a held release (starts its rollout, or schedules it with --at).
    Approve(ApproveArgs),
    /// Reject a held release.
    Reject(RejectArgs),
    /// Rollouts: list, show, pause, resume, abort.
    Rollouts(RolloutsArgs),
    /// Devices: list, show, or enrol one.
    Devices(DevicesArgs),
    /// The audit log.
    Audit(AuditArgs),
    /// Re-read the policy file (a broken file is refused; the last good policy stays).
    ReloadPolicy,
    /// Re-read the trust file (key rotation and revocation).
    ReloadTrust,
    /// Poll the update servers now.
    Sync,
    /// Upload a release from an internal publisher (T1 only).
    Upload(UploadArgs),
    /// Print the Prometheus metrics.
    Metrics,
}

#[derive(Subcommand, Debug)]
enum DevicesCmd {
    /// List devices.
    List,
    /// Show one device: its record (with the counts of every report it sent), its newest
    /// install reports and the cursor of the older ones (`devices reports`).
    Show {
        /// Device name.
        id: String,
    },
    /// One page of a device's stored install reports, newest first (JSON, with
    /// `next_before`: the `--before` of the next page, null at the end).
    Reports {
        /// Device name.
        id: String,
        /// Only reports numbered below this (the `next_before` of the previous page).
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// Reports on the page (at most 100; a page is also cut at 128 KiB).
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
    /// Enrol a device; writes its provisioning bundle (holds secrets: mode 0600).
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Vendor-id (UUID).
        #[arg(long)]
        vendor: uuid::Uuid,
        /// Class-id (UUID).
        #[arg(long)]
        class: uuid::Uuid,
        /// Group (policies match on it).
        #[arg(long)]
        group: Option<String>,
        /// Factory version.
        #[arg(long, default_value = "1.0.0")]
        factory_version: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
    },
}

enum Fail {
    Input(String),
    /// A check failed (reported already).
    Check,
    Client(ClientError),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail::Client(e)
    }
}

/// Runs the command line from the process arguments.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// As [`main`], with the arguments given (the first is the program name).
pub fn main_from(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> ExitCode {
    let cli = Cli::parse_from(args);
    foundations::config::init_logging("DISPATCHER_LOG", false);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Check) => ExitCode::from(1),
        Err(Fail::Input(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Client(e)) => {
            eprintln!("error: {e}");
            match (&e, e.status()) {
                (ClientError::Config(_), _) => ExitCode::from(2),
                (_, Some(s)) if s < 500 => ExitCode::from(1),
                _ => ExitCode::from(3),
            }
        }
    }
}

fn client(cli: &Cli) -> Result<DispatcherClient, Fail> {
    let ca = match &cli.ca {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| Fail::Input(format!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    let path = cli.token_file.as_ref().ok_or_else(|| {
        Fail::Input(
            "no operator token: set DISPATCHER_TOKEN_FILE (or --token-file) to a file holding it"
                .into(),
        )
    })?;
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Fail::Input(format!("{}: {e}", path.display())))?,
    );
    Ok(DispatcherClient::new(
        &cli.url,
        ca.as_deref(),
        token.trim(),
    )?)
}

/// Documents without a table view print as JSON either way.
fn print(_cli: &Cli, v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Resolves a unique release id prefix.
async fn resolve(c: &DispatcherClient, prefix: &str) -> Result<String, Fail> {
    if prefix.len() == 64 {
        return Ok(prefix.to_owned());
    }
    let v: Value = c.get("/v1/releases").await?;
    let ids: Vec<String> = v["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .filter(|id| id.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Fail::Input(format!("no release starts with {prefix}"))),
        _ => Err(Fail::Input(format!(
            "{prefix} matches {} releases; give more digits",
            ids.len()
        ))),
    }
}

/// The strings of a JSON array, comma-separated (empty when it is not an array).
fn comma_list(v: &Value) -> String {
    v.as_array()
        .map(|c| {
            c.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn release_line(r: &Value) -> String {
    let parts: Vec<String> = r["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{} ({} devices)",
                p["action"].as_str().unwrap_or("?"),
                p["state"]["state"].as_str().unwrap_or("?"),
                p["devices"].as_array().map_or(0, Vec::len)
            )
        })
        .collect();
    format!(
        "{:<12}  {:<3}  {:<8}  seq {:<6} {:<22}  {}",
        short(r["id"].as_str().unwrap_or("")),
        r["facts"]["update_type"].as_str().unwrap_or(""),
        r["version"].as_str().unwrap_or("-"),
        r["sequence"].as_u64().unwrap_or(0),
        format!(
            "{} {}",
            comma_list(&r["facts"]["categories"]),
            comma_list(&r["facts"]["cves"])
        ),
        parts.join("; ")
    )
}

async fn run(cli: Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Init(a) => a.run(),
        Command::Serve(a) => a.run().await,
        Command::AddOperator(a) => a.run(),
        Command::AuditVerify(a) => a.run(),
        Command::CheckPolicy(a) => a.run(),
        Command::Status => {
            let v: Value = client(&cli)?.get("/v1/status").await?;
            print(&cli, &v);
            Ok(())
        }
        Command::Releases(a) => a.run(&cli).await,
        Command::Queue => {
            let v: Value = client(&cli)?.get("/v1/queue").await?;
            if cli.json {
                print(&cli, &v);
            } else {
                let q = v["queue"].as_array().cloned().unwrap_or_default();
                if q.is_empty() {
                    println!("nothing waits for a decision");
                }
                for r in &q {
                    println!("{}", release_line(r));
                }
                if let Some(r) = q.first() {
                    println!(
                        "\napprove with: dispatcher approve {} --reason \"...\"",
                        short(r["id"].as_str().unwrap_or(""))
                    );
                }
            }
            Ok(())
        }
        Command::Approve(a) => a.run(&cli).await,
        Command::Reject(a) => a.run(&cli).await,
        Command::Rollouts(a) => a.run(&cli).await,
        Command::Devices(a) => a.run(&cli).await,
        Command::Audit(a) => a.run(&cli).await,
        Command::ReloadPolicy => {
            let v: Value = client(&cli)?.post("/v1/policy/reload", &json!({})).await?;
            print(&cli, &v);
            Ok(())
        }
        Command::ReloadTrust => {
            let v: Value = client(&cli)?.post("/v1/trust/reload", &json!({})).await?;
            print(&cli, &v);
            Ok(())
        }
        Command::Sync => {
            let v: Value = client(&cli)?.post("/v1/sync", &json!({})).await?;
            print(&cli, &v);
            Ok(())
        }
        Command::Upload(a) => a.run(&cli).await,
        Command::Metrics => {
            print!("{}", client(&cli)?.get_text("/metrics").await?);
            Ok(())
        }
    }
}
