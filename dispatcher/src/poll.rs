//! Intake from update servers: poll each configured server (failing over to its mirrors in
//! order) and follow its notification stream, which triggers a poll at once.
//!
//! A source may be hostile or broken (issue 13 item 3): each configured server is polled by
//! its own task, so a slow one delays only itself; one poll of one server is bounded by
//! `limits.source_timeout_secs`, each request by its own deadline, and every body read by a
//! cap (the client's: error bodies, list pages and their number; here: envelope and blob).

use std::sync::Arc;
use std::time::Duration;

use foundations::client::ReadError;
use futures_util::future::join_all;

use serde::Serialize;
use update_server::client::UpdateServerClient;

use crate::service::Dispatcher;

/// What one poll did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PollReport {
    /// Newly accepted release ids.
    pub accepted: Vec<String>,
    /// (release id, check, detail) of refused releases.
    pub refused: Vec<(String, String, String)>,
    /// Update servers (URL) that failed, with why.
    pub unreachable: Vec<(String, String)>,
    /// The URL used per configured server.
    pub used: Vec<String>,
}

fn clients(d: &Dispatcher) -> Vec<Vec<UpdateServerClient>> {
    d.cfg()
        .update_servers
        .iter()
        .map(|u| {
            let ca = u.ca_file.as_ref().and_then(|p| std::fs::read(p).ok());
            let token = u
                .token_file
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.trim().to_owned());
            u.urls
                .iter()
                .filter_map(|url| {
                    match UpdateServerClient::new(url, ca.as_deref(), token.clone()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::error!(%url, error = %e, "bad update server configuration");
                            None
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// Polls every configured update server once, all at the same time.
pub async fn poll_once(d: &Dispatcher) -> PollReport {
    let rounds = clients(d).into_iter().map(|group| poll_group(d, group));
    let mut report = PollReport::default();
    for r in join_all(rounds).await {
        report.accepted.extend(r.accepted);
        report.refused.extend(r.refused);
        report.unreachable.extend(r.unreachable);
        report.used.extend(r.used);
    }
    report
}

/// Polls one configured server, failing over to its mirrors in order; each attempt is
/// bounded by `limits.source_timeout_secs`.
async fn poll_group(d: &Dispatcher, group: Vec<UpdateServerClient>) -> PollReport {
    let deadline = Duration::from_secs(d.cfg().limits.source_timeout_secs);
    let mut report = PollReport::default();
    for c in &group {
        let r = match tokio::time::timeout(deadline, poll_server(d, c, &mut report)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no complete answer within {} s",
                deadline.as_secs()
            )),
        };
        match r {
            Ok(()) => {
                report.used.push(c.base_url().to_owned());
                break;
            }
            Err(e) => {
                tracing::warn!(url = c.base_url(), error = %e, "update server failed; trying the next mirror");
                d.metrics
                    .update_server_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                report.unreachable.push((c.base_url().to_owned(), e));
            }
        }
    }
    report
}

async fn poll_server(
    d: &Dispatcher,
    c: &UpdateServerClient,
    report: &mut PollReport,
) -> Result<(), String> {
    let mut list = c.list_all().await.map_err(|e| e.to_string())?;
    list.sort_by_key(|u| u.release.sequence);
    let max_env = d.cfg().limits.max_envelope_bytes;
    let max_blob = d.cfg().limits.max_blob_bytes;
    for item in list {
        let id = item.release.release_id.clone();
        // A release id is its manifest's SHA-256: a listing under anything else is not
        // followed (it would name paths and audit records after the source's choosing).
        if !fleet_proto::text::valid_release_id(&id) {
            let shown: String = id.chars().take(64).collect();
            report.refused.push((
                shown,
                "invalid-listing".into(),
                format!(
                    "listed id of {} characters is not a release id (64 lowercase hex digits)",
                    id.chars().count()
                ),
            ));
            continue;
        }
        if d.refused_before(c.base_url(), &id) || matches!(d.store().release(&id), Ok(Some(_))) {
            continue;
        }
        if item.release.payload.size > max_blob {
            report.refused.push((
                id.clone(),
                "too-large".into(),
                format!("blob of {} bytes", item.release.payload.size),
            ));
            d.remember_refused(c.base_url(), &id);
            continue;
        }
        let envelope = c.envelope(&id, max_env).await.map_err(|e| e.to_string())?;
        let (envelope_id, signed_size) = match d.precheck(&envelope, "dispatcher") {
            Ok(pre) => pre,
            Err(crate::Error::Refused { check, detail }) => {
                d.remember_refused(c.base_url(), &id);
                report.refused.push((id, check, detail));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let resp = c.payload(&id, None).await.map_err(|e| e.to_string())?;
        // The listed size is the source's word, the signed one the publisher's: grow as
        // bytes arrive, never beyond the signed size (one byte more tells a longer blob
        // apart) nor the cap.
        let max =
            usize::try_from(signed_size.saturating_add(1).min(max_blob)).unwrap_or(usize::MAX);
        let blob = match foundations::client::read_capped(resp, max).await {
            Ok(blob) => blob,
            // Longer than the publisher signed: this listing is refused, the source's other
            // releases are still read (a fault of one must not hide the rest).
            Err(ReadError::TooLarge { .. }) if signed_size < max_blob => {
                let (check, detail) = d.refuse_longer_blob("dispatcher", &envelope_id, signed_size);
                d.remember_refused(c.base_url(), &id);
                report.refused.push((id, check, detail));
                continue;
            }
            Err(e) => return Err(format!("{id}: blob: {e}")),
        };
        match d
            .intake(&envelope, &blob, None, c.base_url(), "dispatcher")
            .await
        {
            // The source listed this release under another id: the release itself is
            // whatever its envelope says, but that listing is not followed again.
            Ok(r) if r.release_id != id => {
                d.remember_refused(c.base_url(), &id);
                report.refused.push((
                    id,
                    "release-id-mismatch".into(),
                    format!("the envelope is release {}", r.release_id),
                ));
            }
            Ok(r) => report.accepted.push(r.release_id),
            Err(crate::Error::Refused { check, detail }) => {
                d.remember_refused(c.base_url(), &id);
                report.refused.push((id, check, detail));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Polls each configured server on its own, on an interval and whenever its notification
/// stream announces a release, until `shutdown`. A poll in progress is dropped at shutdown
/// (intake is cancel-safe: an HTTP upload can be dropped the same way).
pub async fn run(d: Arc<Dispatcher>, shutdown: impl std::future::Future<Output = ()>) {
    let every = Duration::from_secs(d.cfg().limits.poll_interval_secs.max(1));
    let mut tasks = Vec::new();
    for group in clients(&d) {
        let notify = Arc::new(tokio::sync::Notify::new());
        tasks.push(tokio::spawn(follow(group.clone(), notify.clone())));
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let r = poll_group(&d, group.clone()).await;
                if !r.accepted.is_empty() || !r.refused.is_empty() {
                    tracing::info!(
                        accepted = r.accepted.len(),
                        refused = r.refused.len(),
                        "poll"
                    );
                }
                tokio::select! {
                    () = notify.notified() => {},
                    () = tokio::time::sleep(every) => {},
                }
            }
        }));
    }
    shutdown.await;
    for t in tasks {
        t.abort();
    }
}

/// Follows `GET /v1/events` of the first server of a group that answers; each `release`
/// event wakes the poller. Reconnects with back-off.
async fn follow(group: Vec<UpdateServerClient>, notify: Arc<tokio::sync::Notify>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        for c in &group {
            if let Ok(mut resp) = c.events().await {
                backoff = Duration::from_secs(1);
                let mut line = Vec::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    for &b in chunk.iter() {
                        if b == b'\n' {
                            if line.starts_with(b"event: release")
                                || line.starts_with(b"event:release")
                            {
                                notify.notify_one();
                            }
                            line.clear();
                        } else if line.len() < 4096 {
                            line.push(b);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
