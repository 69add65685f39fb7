//! `key-repo serve`: loads the configuration and secrets, binds, and serves with the shared
//! TLS serve loop (`foundations::serve`: connection budget, timeouts, HSTS, graceful drain).

use std::net::SocketAddr;
use std::path::Path;

use foundations::serve::{serve, shutdown_signal};

use crate::Error;
use crate::api::AppState;
use crate::config::Config;

/// Loads everything the configuration names, binds, serves until SIGTERM or ctrl-c.
pub async fn run(config_path: &Path, listen: Option<SocketAddr>) -> Result<(), Error> {
    let cfg = Config::load(config_path)?;
    let master = crate::crypto::MasterKey::load(&cfg.master_key_file)?;
    let signer = foundations::token::TokenSigner::load(&cfg.token_signing_key_file)?;
    let tls = cfg.tls.server_config()?;
    let store = crate::store::Store::open(&cfg.data_dir, master)?;
    let clients = crate::clients::Registry::open(&cfg.clients_file)?;
    let addr = listen.unwrap_or(cfg.listen);
    let limits = cfg.serve.clone();
    let state = AppState::new(cfg, store, signer, clients)?;
    state.authenticator().prefetch().await;
    let (listener, bound) = foundations::serve::bind(addr).await?;
    tracing::info!(addr = %bound, "listening");
    // Machine-readable line for scripts and tests (`--listen 127.0.0.1:0`).
    println!("listening on https://{bound}");
    let app = crate::api::router(state.clone());
    serve(listener, tls, app, &limits, shutdown_signal()).await?;
    // Refusals counted but not yet summarised are recorded before the last drain.
    if let Err(e) = state.flush_refusals() {
        tracing::error!(error = %e, "audit of refusals failed at shutdown");
    }
    state.store().audit().sync().await;
    state.store().flush().await?;
    tracing::info!("stopped");
    Ok(())
}
