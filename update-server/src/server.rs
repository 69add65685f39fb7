//! `update-server serve`: the shared TLS serve loop (`foundations::serve`: connection budget,
//! timeouts, HSTS, graceful drain) over this crate's router, plus the mirror rounds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use foundations::serve::{serve, shutdown_signal};

use crate::Error;
use crate::config::Config;
use crate::state::AppState;

/// `update-server serve`.
pub async fn run(config_path: &Path, listen: Option<SocketAddr>) -> Result<(), Error> {
    let cfg = Config::load(config_path)?;
    let tls = cfg.tls.server_config()?;
    let addr = listen.unwrap_or(cfg.listen);
    let limits = cfg.serve.clone();
    let state = AppState::open(cfg)?;
    state.auth().prefetch().await;
    // Uploads interrupted by a crash leave staged objects; remove those older than an hour
    // (younger ones may belong to another replica's upload in progress).
    state
        .storage()
        .clean_staging(Duration::from_secs(3600))
        .await;
    let mut mirrors = Vec::new();
    for m in &state.cfg().mirrors {
        mirrors.push((
            crate::mirror::source_client(m)?,
            Duration::from_secs(m.interval_secs.max(1)),
        ));
    }
    let (listener, bound) = foundations::serve::bind(addr).await?;
    tracing::info!(addr = %bound, releases = state.index().len(), "listening");
    println!("listening on https://{bound}");
    for (source, interval) in mirrors {
        tokio::spawn(crate::mirror::run_periodic(state.clone(), source, interval));
    }
    let app = crate::api::router(state.clone());
    let token = state.shutdown_token().clone();
    serve(listener, tls, app, &limits, async move {
        shutdown_signal().await;
        // Ends notification streams so that connections can drain.
        token.cancel();
    })
    .await?;
    state.index().flush().await?;
    tracing::info!("stopped");
    Ok(())
}
