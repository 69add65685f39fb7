//! `dispatcher`: the domain-local update dispatcher and its operator CLI. Argument parsing
//! and printing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{ClientError, DispatcherClient};
use clap::{Parser, Subcommand};
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
    Init {
        /// Directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Host name for the TLS certificate.
        #[arg(long, default_value = "localhost")]
        hostname: String,
        /// Operator API address.
        #[arg(long, default_value = "127.0.0.1:8445")]
        listen: std::net::SocketAddr,
        /// Device CoAP address.
        #[arg(long, default_value = "127.0.0.1:5683")]
        coap_listen: std::net::SocketAddr,
    },
    /// Run the dispatcher until Ctrl-C or SIGTERM.
    Serve {
        /// Configuration file.
        #[arg(long, env = "DISPATCHER_CONFIG")]
        config: PathBuf,
        /// Let admins set the clock through the API (tests of maintenance windows only).
        #[arg(long)]
        injectable_clock: bool,
    },
    /// Add an operator to the operators file of a local dispatcher (prints the token once).
    AddOperator {
        /// Configuration file.
        #[arg(long, env = "DISPATCHER_CONFIG")]
        config: PathBuf,
        /// Operator name.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Write the token to this file (0600) instead of printing it.
        #[arg(long)]
        token_out: Option<PathBuf>,
    },
    /// Verify the audit chain offline (stop the dispatcher first: the database is locked
    /// while it runs). Exit 0 when every record's MAC and link hold.
    AuditVerify {
        /// Configuration file.
        #[arg(long, env = "DISPATCHER_CONFIG")]
        config: PathBuf,
    },
    /// Check a policy file offline (file, line and reason on error).
    CheckPolicy {
        /// The policy file.
        file: PathBuf,
    },
    /// Overview.
    Status,
    /// Releases.
    Releases {
        /// Show one release.
        id: Option<String>,
    },
    /// Releases waiting for a decision.
    Queue,
    /// Approve a held release (starts its rollout, or schedules it with --at).
    Approve {
        /// Release id (a unique prefix is enough).
        id: String,
        /// Why (goes into the audit log).
        #[arg(long)]
        reason: String,
        /// Do not start before this time (RFC 3339).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Install now even outside the rule's maintenance window.
        #[arg(long)]
        ignore_window: bool,
        /// Use this rollout of the policy instead of the rule's.
        #[arg(long)]
        rollout: Option<String>,
        /// Send an approved release again to the devices that rejected it (after looking at why).
        #[arg(long)]
        retry_rejected: bool,
    },
    /// Reject a held release.
    Reject {
        /// Release id (a unique prefix is enough).
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Rollouts: list, show, pause, resume, abort.
    Rollouts {
        /// show, pause, resume or abort (none: list).
        action: Option<String>,
        /// Rollout id.
        id: Option<String>,
        /// Why (pause, resume, abort).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Devices: list, show, or enrol one.
    Devices {
        #[command(subcommand)]
        cmd: Option<DevicesCmd>,
    },
    /// The audit log.
    Audit {
        /// First record.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Re-read the policy file (a broken file is refused; the last good policy stays).
    ReloadPolicy,
    /// Re-read the trust file (key rotation and revocation).
    ReloadTrust,
    /// Poll the update servers now.
    Sync,
    /// Upload a release from an internal publisher (T1 only).
    Upload {
        /// Envelope.
        #[arg(long)]
        envelope: PathBuf,
        /// Encrypted blob.
        #[arg(long)]
        blob: PathBuf,
        /// Release key (COSE_Key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the Prometheus metrics.
    Metrics,
}

#[derive(Subcommand, Debug)]
enum DevicesCmd {
    /// List devices.
    List,
    /// Show one device with its reports.
    Show {
        /// Device name.
        id: String,
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
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
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
            r["facts"]["categories"]
                .as_array()
                .map(|c| c
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            r["facts"]["cves"]
                .as_array()
                .map(|c| c
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        parts.join("; ")
    )
}

async fn run(cli: Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Init {
            dir,
            hostname,
            listen,
            coap_listen,
        } => {
            let r = crate::init::init(
                dir,
                &crate::init::InitOptions {
                    hostname: hostname.clone(),
                    listen: *listen,
                    coap_listen: *coap_listen,
                },
            )
            .map_err(|e| Fail::Input(e.to_string()))?;
            let token_file = dir.join("admin.token");
            foundations::fs::write_secret_file(&token_file, r.admin_token.as_bytes())
                .map_err(|e| Fail::Input(e.to_string()))?;
            println!("created {}", r.config.display());
            println!(
                "admin token written to {} (mode 0600)",
                token_file.display()
            );
            println!(
                "next: add publisher keys to {}, then",
                dir.join("trust.toml").display()
            );
            println!("  dispatcher serve --config {}", r.config.display());
            println!(
                "  export DISPATCHER_URL=https://{listen} DISPATCHER_CA={} DISPATCHER_TOKEN_FILE={}",
                r.ca_file.display(),
                token_file.display()
            );
            Ok(())
        }
        Command::Serve {
            config,
            injectable_clock,
        } => crate::server::run(
            config,
            *injectable_clock,
            foundations::serve::shutdown_signal(),
        )
        .await
        .map_err(|e| Fail::Input(e.to_string())),
        Command::AddOperator {
            config,
            name,
            role,
            token_out,
        } => {
            let cfg =
                crate::config::Config::load(config).map_err(|e| Fail::Input(e.to_string()))?;
            let role = crate::operators::OperatorRole::parse(role)
                .ok_or_else(|| Fail::Input(format!("role {role:?}: viewer, operator or admin")))?;
            let mut ops = crate::operators::Operators::load(&cfg.operators_file)
                .map_err(|e| Fail::Input(e.to_string()))?;
            let token = zeroize::Zeroizing::new(
                ops.add(name, role)
                    .map_err(|e| Fail::Input(e.to_string()))?,
            );
            ops.save(&cfg.operators_file)
                .map_err(|e| Fail::Input(e.to_string()))?;
            match token_out {
                Some(p) => {
                    foundations::fs::write_secret_file(p, token.as_bytes())
                        .map_err(|e| Fail::Input(e.to_string()))?;
                    println!(
                        "operator {name} ({}) added; token in {}",
                        role.as_str(),
                        p.display()
                    );
                }
                None => println!("{}", token.as_str()),
            }
            println!("(a running dispatcher reads operators at start: restart it)");
            Ok(())
        }
        Command::AuditVerify { config } => {
            let cfg =
                crate::config::Config::load(config).map_err(|e| Fail::Input(e.to_string()))?;
            let key = std::fs::read_to_string(&cfg.audit_key_file)
                .map_err(|e| Fail::Input(format!("{}: {e}", cfg.audit_key_file.display())))?;
            let key = zeroize::Zeroizing::new(key);
            let key: [u8; 32] = hex::decode(key.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Fail::Input("audit key: 32 bytes of hex expected".into()))?;
            let store = crate::store::Store::open(&cfg.data_dir).map_err(|e| {
                Fail::Input(format!(
                    "{e} (is the dispatcher still running? stop it first)"
                ))
            })?;
            let tree = store
                .db()
                .open_tree("audit")
                .map_err(|e| Fail::Input(e.to_string()))?;
            match foundations::audit::verify(&tree, &key) {
                Ok(r) => {
                    println!(
                        "audit chain intact: {} records, head {}",
                        r.records, r.head_mac
                    );
                    Ok(())
                }
                Err(e) => {
                    println!("audit chain BROKEN: {e}");
                    Err(Fail::Check)
                }
            }
        }
        Command::CheckPolicy { file } => match policies::Policy::load(file) {
            Ok(p) => {
                println!(
                    "{}: {} rules, {} windows, {} rollouts: ok",
                    file.display(),
                    p.rules.len(),
                    p.windows.len(),
                    p.rollouts.len()
                );
                Ok(())
            }
            Err(e) => Err(Fail::Input(e.to_string())),
        },
        Command::Status => {
            let v: Value = client(&cli)?.get("/v1/status").await?;
            print(&cli, &v);
            Ok(())
        }
        Command::Releases { id } => {
            let c = client(&cli)?;
            match id {
                Some(id) => {
                    let id = resolve(&c, id).await?;
                    let v: Value = c.get(&format!("/v1/releases/{id}")).await?;
                    print(&cli, &v);
                }
                None => {
                    let v: Value = c.get("/v1/releases").await?;
                    if cli.json {
                        print(&cli, &v);
                    } else {
                        println!(
                            "{:<12}  {:<3}  {:<8}  {:<10} {:<22}  parts",
                            "release", "typ", "version", "sequence", "categories/CVEs"
                        );
                        for r in v["releases"].as_array().into_iter().flatten() {
                            println!("{}", release_line(r));
                        }
                    }
                }
            }
            Ok(())
        }
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
        Command::Approve {
            id,
            reason,
            at,
            ignore_window,
            rollout,
            retry_rejected,
        } => {
            let c = client(&cli)?;
            let id = resolve(&c, id).await?;
            let v: Value = c
                .post(
                    &format!("/v1/releases/{id}/approve"),
                    &json!({"reason": reason, "at": at, "ignore_window": ignore_window, "rollout": rollout, "retry_rejected": retry_rejected}),
                )
                .await?;
            if cli.json {
                print(&cli, &v);
            } else {
                println!("approved {}", release_line(&v));
            }
            Ok(())
        }
        Command::Reject { id, reason } => {
            let c = client(&cli)?;
            let id = resolve(&c, id).await?;
            let v: Value = c
                .post(
                    &format!("/v1/releases/{id}/reject"),
                    &json!({"reason": reason}),
                )
                .await?;
            if cli.json {
                print(&cli, &v);
            } else {
                println!("rejected {}", release_line(&v));
            }
            Ok(())
        }
        Command::Rollouts { action, id, reason } => {
            let c = client(&cli)?;
            match (action.as_deref(), id) {
                (None | Some("list"), _) => {
                    let v: Value = c.get("/v1/rollouts").await?;
                    if cli.json {
                        print(&cli, &v);
                    } else {
                        println!(
                            "{:<6} {:<12} {:<10} {:>5} {:>9} {:>8} {:>6} {:>7}  alert",
                            "id",
                            "release",
                            "status",
                            "total",
                            "installed",
                            "rejected",
                            "failed",
                            "batch"
                        );
                        for r in v["rollouts"].as_array().into_iter().flatten() {
                            let p = &r["progress"];
                            println!(
                                "{:<6} {:<12} {:<10} {:>5} {:>9} {:>8} {:>6} {:>3}/{:<3}  {}",
                                r["id"].as_str().unwrap_or(""),
                                short(r["release_id"].as_str().unwrap_or("")),
                                r["status"]["status"].as_str().unwrap_or(""),
                                p["total"],
                                p["installed"],
                                p["rejected"],
                                p["failed"],
                                p["batch"],
                                p["batches"],
                                r["alert"].as_str().unwrap_or("")
                            );
                        }
                    }
                }
                (Some("show"), Some(id)) => {
                    let v: Value = c.get(&format!("/v1/rollouts/{id}")).await?;
                    print(&cli, &v);
                }
                (Some(a @ ("pause" | "resume" | "abort")), Some(id)) => {
                    let reason = reason
                        .as_deref()
                        .ok_or_else(|| Fail::Input(format!("{a} needs --reason")))?;
                    let v: Value = c
                        .post(
                            &format!("/v1/rollouts/{id}/{a}"),
                            &json!({"reason": reason}),
                        )
                        .await?;
                    print(&cli, &v);
                }
                (Some(a), _) => {
                    return Err(Fail::Input(format!(
                        "rollouts {a}: use list, show ID, pause ID, resume ID or abort ID"
                    )));
                }
            }
            Ok(())
        }
        Command::Devices { cmd } => {
            let c = client(&cli)?;
            match cmd {
                None | Some(DevicesCmd::List) => {
                    let v: Value = c.get("/v1/devices").await?;
                    if cli.json {
                        print(&cli, &v);
                    } else {
                        println!(
                            "{:<16} {:<10} {:<8} {:>8} {:<22} last report",
                            "device", "group", "version", "sequence", "address"
                        );
                        for d in v["devices"].as_array().into_iter().flatten() {
                            println!(
                                "{:<16} {:<10} {:<8} {:>8} {:<22} {}",
                                d["id"].as_str().unwrap_or(""),
                                d["group"].as_str().unwrap_or("-"),
                                d["version"].as_str().unwrap_or(""),
                                d["sequence"],
                                d["address"].as_str().unwrap_or("-"),
                                d["last_report"]["outcome"].as_str().unwrap_or("-")
                            );
                        }
                    }
                }
                Some(DevicesCmd::Show { id }) => {
                    let v: Value = c.get(&format!("/v1/devices/{id}")).await?;
                    print(&cli, &v);
                }
                Some(DevicesCmd::Add {
                    name,
                    vendor,
                    class,
                    group,
                    factory_version,
                    out,
                }) => {
                    let v: Value = c
                        .post(
                            "/v1/devices",
                            &json!({"name": name, "vendor_id": vendor, "class_id": class, "group": group, "factory_version": factory_version}),
                        )
                        .await?;
                    let data =
                        zeroize::Zeroizing::new(serde_json::to_vec_pretty(&v).unwrap_or_default());
                    foundations::fs::write_secret_file(out, &data)
                        .map_err(|e| Fail::Input(e.to_string()))?;
                    println!(
                        "enrolled {name}; provisioning bundle in {} (holds its OSCORE secrets: delete it after provisioning)",
                        out.display()
                    );
                    println!(
                        "next: device-sim provision --bundle {} --dir DEVICE_DIR",
                        out.display()
                    );
                }
            }
            Ok(())
        }
        Command::Audit { from, limit } => {
            let v: Value = client(&cli)?
                .get(&format!("/v1/audit?from={from}&limit={limit}"))
                .await?;
            if cli.json {
                print(&cli, &v);
            } else {
                for r in v["records"].as_array().into_iter().flatten() {
                    let t = chrono::DateTime::from_timestamp(r["time"].as_i64().unwrap_or(0), 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    println!(
                        "{:>5} {} {:<16} {:<18} {:<14} {:<22} {}",
                        r["seq"],
                        t,
                        r["actor"].as_str().unwrap_or(""),
                        r["action"].as_str().unwrap_or(""),
                        short(r["target"].as_str().unwrap_or("-")),
                        r["result"].as_str().unwrap_or(""),
                        r["reason"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
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
        Command::Upload {
            envelope,
            blob,
            key,
        } => {
            use base64::Engine as _;
            let rd = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Fail::Input(format!("{}: {e}", p.display())))
            };
            let b64 = base64::engine::general_purpose::STANDARD;
            let key = zeroize::Zeroizing::new(rd(key)?);
            let body = json!({
                "envelope_b64": b64.encode(rd(envelope)?),
                "blob_b64": b64.encode(rd(blob)?),
                "key_b64": b64.encode(&*key),
            });
            let v: Value = client(&cli)?.post("/v1/releases", &body).await?;
            print(&cli, &v);
            Ok(())
        }
        Command::Metrics => {
            print!("{}", client(&cli)?.get_text("/metrics").await?);
            Ok(())
        }
    }
}
