//! The publishers' side of the chain, in the calling process: releases built, their keys
//! stored at the key repository and uploaded to the update servers through the same library
//! calls the `publisher` CLI makes.

use suit::{IcsMetadata, ReleaseParams, UpdateType};
use uuid::Uuid;

use super::{Chain, Publisher, VENDOR, rng};

impl Chain {
    /// Publishes a release: builds it (encrypt-then-sign), stores its key at the key
    /// repository, uploads it to update server `server` (0 the update server, 1 its mirror).
    /// Returns the release id.
    pub async fn publish(
        &self,
        p: &Publisher,
        params: &ReleaseParams,
        image: &[u8],
        release_kid: &str,
        server: usize,
    ) -> anyhow::Result<String> {
        let mut rng = rng();
        let built =
            suit::release::build_release(params, image, release_kid.as_bytes(), &p.key, &mut rng)?;
        let krc = self.key_repo_client(p)?;
        krc.put_key(
            release_kid,
            &format!("{}/{}", params.vendor_id, params.class_id),
            &built.release_key.to_cose_key(),
        )
        .await?;
        let token = krc.access_token().await?;
        let blob_path = self.opts.root.join(format!("{release_kid}.enc"));
        std::fs::write(&blob_path, &built.blob)?;
        let name = if server == 0 {
            "update-server"
        } else {
            "update-mirror"
        };
        let ca = std::fs::read(self.opts.root.join(name).join("tls/ca.pem"))?;
        let usc = update_server::client::UpdateServerClient::new(
            &self.us_urls[server],
            Some(&ca),
            Some(token),
        )?;
        let up = usc
            .upload(built.envelope, &blob_path, std::sync::Arc::new(|_| {}))
            .await;
        let _ = std::fs::remove_file(&blob_path);
        Ok(up?.release.release_id)
    }

    /// A key repository client with `p`'s credentials, one per publisher and chain (its
    /// access token is reused until it is due for renewal).
    pub fn key_repo_client(
        &self,
        p: &Publisher,
    ) -> anyhow::Result<std::sync::Arc<key_repo::client::KeyRepoClient>> {
        let mut cache = self
            .kr_clients
            .lock()
            .map_err(|_| anyhow::anyhow!("key repository clients: lock poisoned"))?;
        if let Some((_, c)) = cache.iter().find(|(id, _)| *id == p.client_id) {
            return Ok(c.clone());
        }
        let kr_ca = std::fs::read(self.opts.root.join("key-repo/tls/ca.pem"))?;
        let c = std::sync::Arc::new(key_repo::client::KeyRepoClient::new(
            key_repo::client::ClientConfig {
                base_url: self.kr_url.clone(),
                client_id: p.client_id.clone(),
                client_secret: p.client_secret.clone(),
                ca_pem: Some(kr_ca),
                scopes: vec![],
            },
        )?);
        cache.push((p.client_id.clone(), c.clone()));
        Ok(c)
    }

    /// Revokes a release key at the key repository (as its publisher).
    pub async fn revoke_key(&self, p: &Publisher, release_kid: &str) -> anyhow::Result<()> {
        let krc = self.key_repo_client(p)?;
        krc.revoke(release_kid).await?;
        Ok(())
    }
}

/// Release parameters for the demo products.
pub fn params(
    class: &str,
    t: UpdateType,
    sequence: u64,
    version: Vec<i64>,
) -> anyhow::Result<ReleaseParams> {
    let mut ics = IcsMetadata::new(t);
    if t == UpdateType::T1 {
        ics.categories = vec![suit::Category::Enhancement];
        ics.notes = Some("New alarm overview screen.".into());
    } else {
        ics.categories = vec![suit::Category::Security, suit::Category::Bugfix];
        ics.cves = vec!["CVE-2026-31337".into()];
        ics.severity = Some(suit::Severity::High);
        ics.reboot = true;
        ics.notes = Some("Fixes an authentication bypass in the Modbus gateway.".into());
    }
    Ok(ReleaseParams {
        vendor_id: Uuid::parse_str(VENDOR)?,
        class_id: Uuid::parse_str(class)?,
        device_id: None,
        sequence,
        version,
        requires: None,
        uri: None,
        ics,
    })
}

/// A deterministic test image.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
