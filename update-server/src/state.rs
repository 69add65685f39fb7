//! Shared service state.

use std::sync::Arc;

use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::index::{Index, ReleaseRecord};
use crate::publishers::Registry;
use crate::storage::Storage;

#[derive(Debug)]
struct Inner {
    cfg: Config,
    index: Index,
    storage: Storage,
    publishers: Registry,
    auth: Authenticator,
    events: broadcast::Sender<Arc<ReleaseRecord>>,
    in_flight: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl AppState {
    /// Opens the index, the object store and the publisher registry named by `cfg`.
    pub fn open(cfg: Config) -> Result<AppState, Error> {
        let index = Index::open(&cfg.data_dir)?;
        let storage = Storage::open(&cfg.storage)?;
        let publishers = Registry::open(&cfg.publishers_file)?;
        let auth = Authenticator::new(&cfg.auth)?;
        Ok(Self::new(cfg, index, storage, publishers, auth))
    }

    pub fn new(
        cfg: Config,
        index: Index,
        storage: Storage,
        publishers: Registry,
        auth: Authenticator,
    ) -> AppState {
        let (events, _) = broadcast::channel(256);
        AppState {
            inner: Arc::new(Inner {
                in_flight: Arc::new(Semaphore::new(cfg.limits.max_in_flight.max(1))),
                uploads: Arc::new(Semaphore::new(cfg.limits.max_concurrent_uploads.max(1))),
                cfg,
                index,
                storage,
                publishers,
                auth,
                events,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.inner.cfg
    }
    pub fn index(&self) -> &Index {
        &self.inner.index
    }
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }
    pub fn publishers(&self) -> &Registry {
        &self.inner.publishers
    }
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }
    pub fn in_flight(&self) -> &Arc<Semaphore> {
        &self.inner.in_flight
    }
    pub fn uploads(&self) -> &Arc<Semaphore> {
        &self.inner.uploads
    }
    /// Cancelled when the server shuts down (ends notification streams).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ReleaseRecord>> {
        self.inner.events.subscribe()
    }
    /// Announces a newly published release to notification-stream subscribers.
    pub fn notify(&self, rec: &ReleaseRecord) {
        let _ = self.inner.events.send(Arc::new(rec.clone()));
    }
}
