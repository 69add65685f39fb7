//! Configuration files: TOML, at most 1 MiB, relative paths resolved against the file's
//! directory, secrets only by file name (environment variables may point elsewhere).

use std::path::{Path, PathBuf};

use crate::Error;

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A TOML configuration file, parsed, with the directory its relative paths are relative to.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The parsed configuration.
    pub value: T,
    /// The file's directory (`.` for a bare file name).
    pub base: PathBuf,
}

impl<T> Loaded<T> {
    /// Makes `p` absolute against the file's directory if it is relative.
    pub fn resolve(&self, p: &mut PathBuf) {
        resolve(&self.base, p);
    }
}

/// Reads and parses a TOML file (unknown fields are the type's business: use
/// `#[serde(deny_unknown_fields)]`).
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Loaded<T>, Error> {
    let bytes = crate::fs::read_bounded(path, MAX_CONFIG_BYTES)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::Config {
        path: path.display().to_string(),
        reason: "not UTF-8".into(),
    })?;
    let value = toml::from_str(text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.message().to_string(),
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Loaded { value, base })
}

/// A service's configuration file (`Config::load` of each service): read with
/// [`load_service`], which resolves its relative paths, then checks it.
pub trait ServiceConfig: serde::de::DeserializeOwned {
    /// Makes every file path absolute against `base`, the file's directory (and applies the
    /// environment variables that point elsewhere, [`env_path`]).
    fn resolve_paths(&mut self, base: &Path);

    /// Checks the values (and derives the ones that follow from others); the reason names
    /// the offending setting.
    fn check(&mut self) -> Result<(), String>;
}

/// Reads a service configuration: parsed ([`load_toml`]), relative paths resolved against
/// the file's directory, checked; a failed check is an [`Error::Config`] naming the file.
pub fn load_service<T: ServiceConfig>(path: &Path) -> Result<T, Error> {
    let loaded = load_toml::<T>(path)?;
    let mut cfg = loaded.value;
    cfg.resolve_paths(&loaded.base);
    cfg.check().map_err(|reason| Error::Config {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(cfg)
}

/// Makes `p` absolute against `base` if it is relative.
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// Replaces `p` by the path in environment variable `var`, if set (secrets kept on another
/// volume, or filled by a secrets manager).
pub fn env_path(var: &str, p: &mut PathBuf) {
    if let Some(v) = std::env::var_os(var) {
        *p = PathBuf::from(v);
    }
}

/// Writes a configuration as TOML after a comment header, atomically, with `mode`.
pub fn save_toml<T: serde::Serialize>(
    path: &Path,
    header: &str,
    value: &T,
    mode: u32,
) -> Result<(), Error> {
    let body = toml::to_string_pretty(value).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    crate::fs::write_file_atomic(path, format!("{header}{body}").as_bytes(), mode)
}

/// The global `--log-format text|json` option of the service CLIs.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl LogArgs {
    /// Installs the subscriber, level from the environment variable `env_filter`.
    pub fn init(&self, env_filter: &str) {
        init_logging(env_filter, self.log_format == "json");
    }
}

/// `init --dir DIR [--hostname NAME] [--json]` of the service CLIs.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Directory to create (mode 0700).
    #[arg(long)]
    pub dir: PathBuf,
    /// Host name for the certificate (and the key repository's issuer).
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl InitArgs {
    /// Runs the service's `init` on `--dir` and `--hostname`, then prints its report: as
    /// JSON with `--json`, else as `human` writes it. Exit code 0.
    pub fn run<R: serde::Serialize, E>(
        &self,
        init: impl FnOnce(&Path, &str) -> Result<R, E>,
        human: impl FnOnce(&R),
    ) -> Result<u8, E> {
        let report = init(&self.dir, &self.hostname)?;
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            human(&report);
        }
        Ok(0)
    }
}

/// The checks every service's `init` starts with: a valid `--hostname`, and no
/// configuration file `name` in `dir` yet (`refusing` ends the refusal: what the command
/// will not overwrite, and what to do instead). Returns the configuration file's path.
pub fn init_config_path(
    dir: &Path,
    hostname: &str,
    name: &str,
    refusing: &str,
) -> Result<PathBuf, Error> {
    if !crate::tls::valid_hostname(hostname) {
        return Err(Error::Usage(format!("invalid --hostname {hostname:?}")));
    }
    let config_path = dir.join(name);
    if config_path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; {refusing}",
            config_path.display()
        )));
    }
    Ok(config_path)
}

/// `serve --config FILE [--listen ADDR]` of the service CLIs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Listen address (overrides the configuration; port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// The command line every service shares: `--log-format`, `init`, `serve`, and the
/// service's own commands `C` beside them.
#[derive(Debug, clap::Parser)]
pub struct ServiceCli<C: clap::Subcommand> {
    /// `--log-format text|json`.
    #[command(flatten)]
    pub log: LogArgs,
    /// The command.
    #[command(subcommand)]
    pub command: ServiceCommand<C>,
}

/// `init`, `serve`, or one of the service's own commands.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand<C: clap::Subcommand> {
    /// Create a configuration, TLS certificate and keys in a new directory.
    Init(InitArgs),
    /// Run the service.
    Serve(ServeArgs),
    /// The service's own commands.
    #[command(flatten)]
    Own(C),
}

/// What a service's command line says about itself.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Program name.
    pub name: &'static str,
    /// Its version (`env!("CARGO_PKG_VERSION")` of the service).
    pub version: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// What `init` creates.
    pub init_about: &'static str,
    /// The exit codes.
    pub exit_codes: &'static str,
    /// The environment variable with the log level (e.g. `KEY_REPO_LOG`).
    pub log_env: &'static str,
}

impl<C: clap::Subcommand> ServiceCli<C> {
    /// Parses `args` (the first is the program name) as `info` describes the program,
    /// and installs logging. Usage errors and `--help` exit the process as clap does.
    pub fn parse_service(
        info: &ServiceInfo,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    ) -> Self {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let cmd = Self::command()
            .name(info.name)
            .bin_name(info.name)
            .version(info.version)
            .about(info.about)
            .after_help(format!("Exit codes: {}", info.exit_codes))
            .mut_subcommand("init", |c| c.about(info.init_about));
        let cli = Self::from_arg_matches(&cmd.get_matches_from(args)).unwrap_or_else(|e| e.exit());
        cli.log.init(info.log_env);
        cli
    }
}

/// A service's `main`: parses `args` as `info` describes the program, runs the command and
/// returns the exit code; an error is printed as `NAME: error` and exits 2 when `usage`
/// says the operator must correct the command line or configuration, else 1.
pub fn service_main<C: clap::Subcommand, E: std::fmt::Display>(
    info: &ServiceInfo,
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    run: impl FnOnce(ServiceCommand<C>) -> Result<u8, E>,
    usage: impl Fn(&E) -> bool,
) -> u8 {
    let cli = ServiceCli::<C>::parse_service(info, args);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e}", info.name);
            if usage(&e) { 2 } else { 1 }
        }
    }
}

impl ServeArgs {
    /// Runs the service (`serve(config, listen)`) on a new runtime until it stops. Exit
    /// code 0.
    pub fn run<'a, F, E>(
        &'a self,
        serve: impl FnOnce(&'a Path, Option<std::net::SocketAddr>) -> F,
    ) -> Result<u8, E>
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: From<Error>,
    {
        runtime()?.block_on(serve(&self.config, self.listen))?;
        Ok(0)
    }
}

/// A multi-thread tokio runtime for a CLI command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))
}

/// Installs the `tracing` subscriber on stderr: level from the environment variable
/// `env_filter` (default `info`), text or JSON.
pub fn init_logging(env_filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct C {
        data: PathBuf,
    }

    #[test]
    fn load_resolve_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        save_toml(&p, "# test\n", &C { data: "d".into() }, 0o600).unwrap();
        let mut l: Loaded<C> = load_toml(&p).unwrap();
        let mut d = l.value.data.clone();
        l.resolve(&mut d);
        l.value.data = d;
        assert_eq!(l.value.data, dir.path().join("d"));
        std::fs::write(&p, "data = 'd'\nextra = 1\n").unwrap();
        let e = load_toml::<C>(&p).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
    }
}
