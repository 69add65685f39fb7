//! Running aiocoap (installed by scripts/peers/aiocoap.sh into .peers/aiocoap) from tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Canonical, so that a venv python started through it finds its pyvenv.cfg.
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// The venv's python, or None (skip) when missing outside CI. In CI a missing venv fails.
pub(crate) fn aiocoap_python(test: &str) -> Option<PathBuf> {
    let py = repo_root().join(".peers/aiocoap/venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: aiocoap is not installed at {} (scripts/setup-peers.sh must run first)",
            py.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: aiocoap venv missing at {}; run scripts/peers/aiocoap.sh",
        py.display()
    );
    None
}

pub(crate) fn aiocoap_src() -> PathBuf {
    repo_root().join(".peers/aiocoap/src/aiocoap-0.4.17")
}

pub(crate) fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// A child process killed on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free UDP port on 127.0.0.1 (for peers that cannot report the port they bound).
pub(crate) fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Starts a process and waits until it prints a line starting with `ready`.
pub(crate) fn start_until(cmd: &mut Command, ready: &str) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn peer");
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let proc = Proc(child);
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with(ready) => break,
            Some(Ok(_)) => continue,
            _ => panic!("peer exited before printing {ready:?}"),
        }
    }
    // Keep draining stdout so the peer never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    proc
}

/// An aiocoap context directory (settings.json) for the given parameters.
pub(crate) fn aiocoap_context(
    dir: &Path,
    secret: &[u8],
    salt: &[u8],
    sender: &[u8],
    recipient: &[u8],
    id_context: Option<&[u8]>,
) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = format!(
        "{{\"sender-id_hex\": \"{}\", \"recipient-id_hex\": \"{}\", \"secret_hex\": \"{}\", \"salt_hex\": \"{}\"",
        hex::encode(sender),
        hex::encode(recipient),
        hex::encode(secret),
        hex::encode(salt)
    );
    if let Some(c) = id_context {
        s.push_str(&format!(", \"id-context_hex\": \"{}\"", hex::encode(c)));
    }
    s.push('}');
    std::fs::write(dir.join("settings.json"), s).unwrap();
}
