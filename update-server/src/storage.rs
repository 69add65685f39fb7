//! Blobs and envelopes in an object store (`object_store`): a local directory by default,
//! any S3-compatible store by configuration.
//!
//! Layout: `blobs/<sha256 of the ciphertext>`, `envelopes/<release id>.suit`, and
//! `staging/<random>` for uploads in progress. An upload is written to staging, checked,
//! then renamed into `blobs/`; a rejected or interrupted upload is aborted and removed.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart,
};

use crate::Error;
use crate::config::StorageConfig;

/// Part size of staged uploads (S3's minimum part size is 5 MiB).
const PART: usize = 5 << 20;
/// Parts in flight per upload: bounds memory at about (PARTS + 1) * PART per upload.
const PARTS_IN_FLIGHT: usize = 2;
/// Read size when streaming a local file.
const READ_CHUNK: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Root directory when the store is local (downloads read the file directly).
    local_root: Option<PathBuf>,
}

pub fn blob_path(sha256_hex: &str) -> ObjPath {
    ObjPath::from(format!("blobs/{sha256_hex}"))
}

pub fn envelope_path(release_id: &str) -> ObjPath {
    ObjPath::from(format!("envelopes/{release_id}.suit"))
}

impl Storage {
    pub fn open(cfg: &StorageConfig) -> Result<Storage, Error> {
        match cfg {
            StorageConfig::Local { path } => {
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
                let root = path.canonicalize().map_err(|e| Error::io(path, e))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
                Ok(Storage {
                    store: Arc::new(store),
                    local_root: Some(root),
                })
            }
            StorageConfig::S3 {
                bucket,
                endpoint,
                region,
                allow_http,
                access_key_id,
                secret_access_key_file,
                prefix,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(id) = access_key_id {
                    b = b.with_access_key_id(id);
                }
                if let Some(f) = secret_access_key_file {
                    let s = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
                    b = b.with_secret_access_key(s.trim());
                }
                let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
                let store: Arc<dyn ObjectStore> = match prefix.as_deref().filter(|p| !p.is_empty())
                {
                    Some(p) => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
                    None => s3,
                };
                Ok(Storage {
                    store,
                    local_root: None,
                })
            }
        }
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Starts a staged upload under `staging/<random>`.
    pub async fn stage(&self) -> Result<Staged, Error> {
        let path = ObjPath::from(format!("staging/{}", uuid::Uuid::new_v4().simple()));
        let upload = self.store.put_multipart(&path).await?;
        Ok(Staged {
            path,
            writer: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
        })
    }

    /// Moves a completed staged object into place.
    pub async fn commit_blob(&self, staged: &ObjPath, sha256_hex: &str) -> Result<(), Error> {
        self.store.rename(staged, &blob_path(sha256_hex)).await?;
        Ok(())
    }

    pub async fn delete(&self, path: &ObjPath) {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(%path, error = %e, "cannot delete object"),
        }
    }

    pub async fn exists(&self, path: &ObjPath) -> Result<bool, Error> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn put_envelope(&self, release_id: &str, bytes: Bytes) -> Result<(), Error> {
        self.store
            .put(&envelope_path(release_id), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn get_all(&self, path: &ObjPath, limit: u64) -> Result<Option<Bytes>, Error> {
        match self.store.get(path).await {
            Ok(r) => {
                if r.meta.size > limit {
                    return Err(Error::Store(format!("{path} larger than {limit} bytes")));
                }
                Ok(Some(r.bytes().await?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams `range` of an object. Local files are read directly in large chunks.
    pub async fn get_range(
        &self,
        path: &ObjPath,
        range: Range<u64>,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, std::io::Error>>>, Error> {
        if range.start >= range.end {
            return Ok(Some(futures_util::stream::empty().boxed()));
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let res = match self.store.get_opts(path, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match res.payload {
            GetResultPayload::File(file, _) => {
                use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
                let mut f = tokio::fs::File::from_std(file);
                f.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(|e| Error::Store(e.to_string()))?;
                let reader = f.take(range.end - range.start);
                Ok(Some(
                    tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).boxed(),
                ))
            }
            GetResultPayload::Stream(s) => {
                Ok(Some(s.map(|r| r.map_err(std::io::Error::other)).boxed()))
            }
        }
    }

    /// Removes staged uploads left by a crash (older than `min_age`). On a local store the
    /// directory is scanned directly (the object store hides its temporary part files); on
    /// S3, incomplete multipart uploads are removed by the bucket's lifecycle rule
    /// (AbortIncompleteMultipartUpload), completed staged objects here.
    pub async fn clean_staging(&self, min_age: std::time::Duration) {
        if let Some(root) = &self.local_root {
            let dir = root.join("staging");
            let Ok(rd) = std::fs::read_dir(&dir) else {
                return;
            };
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if old {
                    tracing::info!(path = %e.path().display(), "removing stale staged upload");
                    let _ = std::fs::remove_file(e.path());
                }
            }
            return;
        }
        let prefix = ObjPath::from("staging");
        let mut list = self.store.list(Some(&prefix));
        let now = crate::util::now_unix();
        while let Some(item) = list.next().await {
            let Ok(meta) = item else { continue };
            let age = now.saturating_sub(meta.last_modified.timestamp().max(0) as u64);
            if age >= min_age.as_secs() {
                tracing::info!(path = %meta.location, "removing stale staged upload");
                self.delete(&meta.location).await;
            }
        }
    }

    /// Local root directory, if any (tests and diagnostics).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }
}

/// An upload being written to `staging/`. Dropped without [`Staged::finish`], the caller
/// must call [`Staged::abort`]; on a local store the temporary file is also removed when
/// the multipart upload is dropped.
pub struct Staged {
    pub path: ObjPath,
    writer: Option<WriteMultipart>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("path", &self.path).finish()
    }
}

impl Staged {
    /// Appends a chunk, waiting while too many parts are in flight (bounded memory).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if let Some(w) = self.writer.as_mut() {
            w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            w.put(chunk);
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<ObjPath, Error> {
        if let Some(w) = self.writer.take() {
            w.finish().await?;
        }
        Ok(self.path.clone())
    }

    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(path = %self.path, error = %e, "cannot abort staged upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[tokio::test]
    async fn stale_staged_files_are_removed_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let st = Storage::open(&StorageConfig::Local {
            path: dir.path().to_owned(),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("{e}"));
        let old = staging.join("abc#1");
        let fresh = staging.join("def#1");
        std::fs::write(&old, b"x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&fresh, b"y").unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
            .unwrap_or_else(|e| panic!("{e}"));
        st.clean_staging(Duration::from_secs(3600)).await;
        assert!(!old.exists());
        assert!(fresh.exists());
    }
}
