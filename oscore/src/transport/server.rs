//! CoAP server over tokio UDP: a thin loop around [`ServerEndpoint`] (the sans-I/O core does
//! duplicate detection, OSCORE, Echo, block-wise); this layer owns the socket, reads the
//! clock for every datagram, draws the Echo key from the OS RNG and runs the timers of
//! observations.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::context::SecurityContext;
use crate::endpoint::{ContextSet, Handler, Observation, ServerConfig, ServerEndpoint};
use crate::error::{Error, Result};

/// A CoAP server. With contexts, every request must be OSCORE-protected (else 4.01).
pub struct Server {
    sock: Arc<UdpSocket>,
    contexts: ContextSet,
    protected: bool,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("contexts", &self.contexts.len())
            .field("protected", &self.protected)
            .finish()
    }
}

/// A running server: its address, its contexts, and a way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    /// Bound address.
    pub addr: SocketAddr,
    contexts: ContextSet,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl ServerHandle {
    /// The server's contexts: add or remove peers while it runs.
    pub fn contexts(&self) -> ContextSet {
        self.contexts.clone()
    }

    /// Stops the server and waits for it (contexts are flushed).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

impl Server {
    /// New server on an already bound socket (tests bind 127.0.0.1:0). With contexts, every
    /// request must be OSCORE-protected; without, it is a plain CoAP server until a context
    /// is added through [`Server::contexts`] (from then on unprotected requests get 4.01).
    /// Contexts sharing a Recipient ID must differ in ID Context; of two that do not, the
    /// first is kept.
    pub fn new(
        sock: UdpSocket,
        contexts: Vec<SecurityContext>,
        handler: Arc<dyn Handler>,
        cfg: ServerConfig,
    ) -> Self {
        let protected = !contexts.is_empty();
        let set = ContextSet::new();
        for c in contexts {
            if let Err(e) = set.add(c) {
                tracing::warn!("context ignored: {e}");
            }
        }
        Server {
            sock: Arc::new(sock),
            contexts: set,
            protected,
            handler,
            cfg,
        }
    }

    /// New server that always requires OSCORE, with a (possibly empty) shared context set to
    /// which peers are added while it runs (e.g. a dispatcher enrolling devices). Requests
    /// with a kid not in the set get 4.01.
    pub fn new_protected(
        sock: UdpSocket,
        contexts: ContextSet,
        handler: Arc<dyn Handler>,
        cfg: ServerConfig,
    ) -> Self {
        Server {
            sock: Arc::new(sock),
            contexts,
            protected: true,
            handler,
            cfg,
        }
    }

    /// Local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    /// The server's contexts (shared: changes apply to the running server).
    pub fn contexts(&self) -> ContextSet {
        self.contexts.clone()
    }

    /// Runs until `shutdown` completes, then flushes every context's sequence number. The
    /// Echo key of this run comes from the OS RNG (a new one every run: Echo values of an
    /// earlier run, before a crash included, never verify).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Io(std::io::Error::other(format!("OS RNG: {e}"))))?;
        let workers = self.cfg.workers.max(1);
        let ep = Arc::new(ServerEndpoint::new(
            self.contexts.clone(),
            self.protected,
            self.cfg,
            secret,
            Instant::now(),
        ));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (sock, ep, handler) = (self.sock.clone(), ep.clone(), self.handler.clone());
            tasks.push(tokio::spawn(async move { worker(sock, ep, handler).await }));
        }
        shutdown.await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Every context present at shutdown, including those added while running; removed
        // ones were flushed when removed.
        self.contexts.flush_all()
    }

    /// Spawns the server; the handle stops it.
    pub fn spawn(self) -> Result<ServerHandle> {
        let addr = self.local_addr()?;
        let contexts = self.contexts();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = rx.await;
        }));
        Ok(ServerHandle {
            addr,
            contexts,
            stop: Some(tx),
            task,
        })
    }
}

async fn worker(sock: Arc<UdpSocket>, ep: Arc<ServerEndpoint>, handler: Arc<dyn Handler>) {
    let mut buf = vec![0u8; ep.config().max_message + 1];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("recv_from: {e}");
                continue;
            }
        };
        let out = ep.handle(peer, &buf[..n], Instant::now(), &*handler);
        if let Some(bytes) = out.reply
            && let Err(e) = sock.send_to(&bytes, peer).await
        {
            tracing::debug!("send_to {peer}: {e}");
        }
        if let Some(obs) = out.observation {
            tokio::spawn(notify(sock.clone(), ep.clone(), obs));
        }
    }
}

/// Sends the notifications of one observation after their delays (RFC 7641 §4.2).
async fn notify(sock: Arc<UdpSocket>, ep: Arc<ServerEndpoint>, mut obs: Observation) {
    let mut observe_seq = 1u32;
    for n in std::mem::take(&mut obs.notifications) {
        tokio::time::sleep(n.delay).await;
        observe_seq += 1;
        let Some(bytes) = ep.notification(&obs, observe_seq, &n.reply) else {
            return; // the context was removed, or protection failed: the observation ends
        };
        let _ = sock.send_to(&bytes, obs.peer).await;
        if n.reply.code >> 5 != 2 {
            return;
        }
    }
}
