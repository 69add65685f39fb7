//! The operator commands: they talk to a running dispatcher's API.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

/// Arguments of `dispatcher releases`.
#[derive(clap::Args, Debug)]
pub(super) struct ReleasesArgs {
    /// Show one release.
    id: Option<String>,
}

impl ReleasesArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self { id } = self;
        let c = client(cli)?;
        match id {
            Some(id) => {
                let id = resolve(&c, id).await?;
                let v: Value = c.get(&format!("/v1/releases/{id}")).await?;
                print(cli, &v);
            }
            None => {
                let v: Value = c.get("/v1/releases").await?;
                if cli.json {
                    print(cli, &v);
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
}

/// Arguments of `dispatcher approve`.
#[derive(clap::Args, Debug)]
pub(super) struct ApproveArgs {
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
}

impl ApproveArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self {
            id,
            reason,
            at,
            ignore_window,
            rollout,
            retry_rejected,
        } = self;
        let body = json!({"reason": reason, "at": at, "ignore_window": ignore_window, "rollout": rollout, "retry_rejected": retry_rejected});
        decide(cli, id, "approve", &body, "approved").await
    }
}

/// `approve` and `reject`: posts the `decision` on the release `id` (a unique prefix is
/// enough) and shows the release as it now is, after `done`.
async fn decide(cli: &Cli, id: &str, decision: &str, body: &Value, done: &str) -> Result<(), Fail> {
    let c = client(cli)?;
    let id = resolve(&c, id).await?;
    let v: Value = c
        .post(&format!("/v1/releases/{id}/{decision}"), body)
        .await?;
    if cli.json {
        print(cli, &v);
    } else {
        println!("{done} {}", release_line(&v));
    }
    Ok(())
}

/// Arguments of `dispatcher reject`.
#[derive(clap::Args, Debug)]
pub(super) struct RejectArgs {
    /// Release id (a unique prefix is enough).
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

impl RejectArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self { id, reason } = self;
        decide(cli, id, "reject", &json!({"reason": reason}), "rejected").await
    }
}

/// Arguments of `dispatcher rollouts`.
#[derive(clap::Args, Debug)]
pub(super) struct RolloutsArgs {
    /// show, pause, resume or abort (none: list).
    action: Option<String>,
    /// Rollout id.
    id: Option<String>,
    /// Why (pause, resume, abort).
    #[arg(long)]
    reason: Option<String>,
}

impl RolloutsArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self { action, id, reason } = self;
        let c = client(cli)?;
        match (action.as_deref(), id) {
            (None | Some("list"), _) => {
                let v: Value = c.get("/v1/rollouts").await?;
                if cli.json {
                    print(cli, &v);
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
                print(cli, &v);
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
                print(cli, &v);
            }
            (Some(a), _) => {
                return Err(Fail::Input(format!(
                    "rollouts {a}: use list, show ID, pause ID, resume ID or abort ID"
                )));
            }
        }
        Ok(())
    }
}

/// Arguments of `dispatcher devices`.
#[derive(clap::Args, Debug)]
pub(super) struct DevicesArgs {
    #[command(subcommand)]
    cmd: Option<DevicesCmd>,
}

impl DevicesArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self { cmd } = self;
        let c = client(cli)?;
        match cmd {
            None | Some(DevicesCmd::List) => {
                let v: Value = c.get("/v1/devices").await?;
                if cli.json {
                    print(cli, &v);
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
                print(cli, &v);
            }
            Some(DevicesCmd::Reports { id, before, limit }) => {
                let mut path = format!("/v1/devices/{id}/reports?limit={limit}");
                if let Some(b) = before {
                    path.push_str(&format!("&before={b}"));
                }
                let v: Value = c.get(&path).await?;
                print(cli, &v);
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
}

/// Arguments of `dispatcher audit`.
#[derive(clap::Args, Debug)]
pub(super) struct AuditArgs {
    /// First record.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

impl AuditArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self { from, limit } = self;
        let v: Value = client(cli)?
            .get(&format!("/v1/audit?from={from}&limit={limit}"))
            .await?;
        if cli.json {
            print(cli, &v);
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
}

/// Arguments of `dispatcher upload`.
#[derive(clap::Args, Debug)]
pub(super) struct UploadArgs {
    /// Envelope.
    #[arg(long)]
    envelope: PathBuf,
    /// Encrypted blob.
    #[arg(long)]
    blob: PathBuf,
    /// Release key (COSE_Key).
    #[arg(long)]
    key: PathBuf,
}

impl UploadArgs {
    pub(super) async fn run(&self, cli: &Cli) -> Result<(), Fail> {
        let Self {
            envelope,
            blob,
            key,
        } = self;
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
        let v: Value = client(cli)?.post("/v1/releases", &body).await?;
        print(cli, &v);
        Ok(())
    }
}
