//! The service processes of the chain: started from the `ics-suit` executable, ready when
//! they print their ready line, stopped when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// A service process; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("    {} did not stop on SIGTERM; killed", self.name);
    }
}

/// Runs a tool to completion; its stdout on success.
pub fn tool(exe: &Path, args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !o.status.success() {
        bail!(
            "{} failed: {}",
            args.iter().take(3).cloned().collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Starts a service and waits (up to 120 s) for the stdout line starting with `ready`;
/// returns the rest of that line.
pub fn start(
    exe: &Path,
    name: &str,
    args: &[&str],
    ready: &str,
    logs: &Path,
) -> anyhow::Result<(Proc, String)> {
    start_within(exe, name, args, ready, logs, Duration::from_secs(120))
}

/// As [`start`], waiting up to `limit`.
pub fn start_within(
    exe: &Path,
    name: &str,
    args: &[&str],
    ready: &str,
    logs: &Path,
    limit: Duration,
) -> anyhow::Result<(Proc, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let mut sent = false;
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if !sent && let Some(rest) = line.trim().strip_prefix(&ready) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
            line.clear();
        }
    });
    let p = Proc {
        name: name.to_owned(),
        child,
    };
    match rx.recv_timeout(limit) {
        Ok(rest) => Ok((p, rest)),
        Err(_) => bail!(
            "{name} did not start; see {}",
            logs.join(format!("{name}.log")).display()
        ),
    }
}
