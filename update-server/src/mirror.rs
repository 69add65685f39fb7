//! `update-server mirror --from URL`: replicates the releases of another update server,
//! verifying each exactly as an upload (same code path: [`crate::ingest`]) against this
//! server's own registered publisher keys. A release that fails a check is refused and
//! reported; nothing of it is stored.

use futures_util::StreamExt as _;
use serde::Serialize;

use crate::client::UpdateServerClient;
use crate::error::ApiError;
use crate::ingest::{self, Outcome};
use crate::state::AppState;

#[derive(Debug, Default, Serialize)]
pub struct MirrorReport {
    pub copied: Vec<String>,
    pub unchanged: Vec<String>,
    /// (release id, failed check, detail)
    pub refused: Vec<(String, String, String)>,
}

/// Replicates every release of `source` not yet here, oldest sequence first per product.
pub async fn mirror(
    st: &AppState,
    source: &UpdateServerClient,
) -> Result<MirrorReport, crate::Error> {
    let mut list = source
        .list_all()
        .await
        .map_err(|e| crate::Error::Remote(e.to_string()))?;
    list.sort_by(|a, b| {
        (
            &a.release.vendor_id,
            &a.release.class_id,
            a.release.sequence,
        )
            .cmp(&(
                &b.release.vendor_id,
                &b.release.class_id,
                b.release.sequence,
            ))
    });
    let mut report = MirrorReport::default();
    let who = format!("mirror:{}", source.base_url());
    for item in list {
        let id = item.release.release_id.clone();
        match mirror_one(st, source, &id, &who).await {
            Ok(Outcome::Created) => report.copied.push(id),
            Ok(Outcome::Unchanged) => report.unchanged.push(id),
            Err(e) => {
                let (_, check, _) = e.parts();
                tracing::warn!(release = %id, check, error = %e, "mirror refused release");
                report.refused.push((id, check.to_string(), e.to_string()));
            }
        }
    }
    Ok(report)
}

async fn mirror_one(
    st: &AppState,
    source: &UpdateServerClient,
    id: &str,
    who: &str,
) -> Result<Outcome, ApiError> {
    let env = source
        .envelope(id, st.cfg().limits.max_envelope_bytes)
        .await
        .map_err(|e| ApiError::Incomplete(e.to_string()))?;
    let checked = ingest::check_envelope(st, &env, who)?;
    // The source's claimed id must be what the envelope is.
    if checked.record.release_id != id {
        return Err(ApiError::Profile(format!(
            "source listed {id} but served release {}",
            checked.record.release_id
        )));
    }
    let exists = ingest::check_slot(st, &checked.record)?;
    let resp = source
        .payload(id, None)
        .await
        .map_err(|e| ApiError::Incomplete(e.to_string()))?;
    let stream = resp
        .bytes_stream()
        .map(|r| r.map_err(|e| ApiError::Incomplete(e.to_string())));
    let (outcome, _) = ingest::store(st, checked, exists, Box::pin(stream)).await?;
    Ok(outcome)
}

/// Builds the client for a configured mirror source.
pub fn source_client(m: &crate::config::MirrorConfig) -> Result<UpdateServerClient, crate::Error> {
    let ca = m
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| crate::Error::io(p, e)))
        .transpose()?;
    let token =
        match &m.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                crate::Error::usage(format!("environment variable {var} is not set"))
            })?),
            None => None,
        };
    UpdateServerClient::new(&m.from, ca.as_deref(), token)
        .map_err(|e| crate::Error::usage(e.to_string()))
}

/// Replicates from `source` every `interval` until the server shuts down.
pub async fn run_periodic(st: AppState, source: UpdateServerClient, interval: std::time::Duration) {
    let stop = st.shutdown_token().clone();
    loop {
        match mirror(&st, &source).await {
            Ok(r) => tracing::info!(
                source = %source.base_url(),
                copied = r.copied.len(),
                refused = r.refused.len(),
                "mirror round done"
            ),
            Err(e) => {
                tracing::warn!(source = %source.base_url(), error = %e, "mirror round failed")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
