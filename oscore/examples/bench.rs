//! Load generator for `bench/oscore.sh` (build with --release).
//!
//! `bench transfer [--size N] [--runs R]`: one server and one client in this process, a GET
//! of N bytes over OSCORE block-wise (1024-byte blocks), R times; prints each time and the
//! median in seconds (`median_s=...`).
//!
//! `bench load [--clients C] [--size N]`: one server with C security contexts, C concurrent
//! clients (own socket, own context) each fetching N bytes over OSCORE; prints the aggregate
//! goodput (`goodput_MBps=...`, MB = 10^6 bytes) and the process's peak RSS
//! (`peak_rss_MiB=...`, VmHWM, server and clients together), and the CPU seconds used.
//!
//! The server runs on its own runtime thread(s) (`BENCH_SERVER_THREADS`, default 1), the
//! clients on another (`BENCH_THREADS`, default 1): two busy threads for two cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use oscore::transport::{
    Client, ClientConfig, Handler, Reply, Request, Server, ServerConfig, bind_udp,
};
use oscore::{ContextParams, MemorySeqStore, SecurityContext};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One client, one large GET, repeated.
    Transfer {
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Many concurrent clients.
    Load {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 256 << 10)]
        size: usize,
        /// Client ACK_TIMEOUT in ms.
        #[arg(long, default_value_t = 1000)]
        ack_timeout_ms: u64,
    },
}

/// Serves one in-memory blob at any path.
struct Blob(Arc<Vec<u8>>);

impl Handler for Blob {
    fn handle(&self, _req: &Request) -> Reply {
        Reply {
            code: oscore::message::code::CONTENT,
            payload: self.0.clone(),
            content_format: None,
            options: Vec::new(),
        }
    }
}

fn params(i: usize, client: bool) -> ContextParams {
    // Distinct master secret per device, as provisioning would do.
    let mut secret = vec![0x5a; 16];
    secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
    let id = (i as u16).to_be_bytes().to_vec();
    let (sender_id, recipient_id) = if client {
        (id, b"S".to_vec())
    } else {
        (b"S".to_vec(), id)
    };
    ContextParams {
        master_secret: Zeroizing::new(secret),
        master_salt: vec![],
        id_context: None,
        sender_id,
        recipient_id,
    }
}

fn ctx(i: usize, client: bool) -> SecurityContext {
    match SecurityContext::new(&params(i, client), Box::new(MemorySeqStore::new())) {
        Ok(c) => c,
        Err(e) => panic!("context {i}: {e}"),
    }
}

/// CPU time (user + system) of this process so far, in seconds (Linux, USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (t(11) + t(12)) / 100.0
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The server runs on its own runtime and OS threads (as a separate server process would),
/// so its few worker tasks do not queue behind thousands of client tasks.
struct BenchServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<oscore::Result<()>>>,
}

impl BenchServer {
    async fn stop(mut self) -> oscore::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(oscore::Error::Blockwise("server thread panicked")),
        }
    }
}

async fn start_server(
    contexts: Vec<SecurityContext>,
    body: Vec<u8>,
) -> oscore::Result<BenchServer> {
    let threads = std::env::var("BENCH_SERVER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || -> oscore::Result<()> {
        // One thread: a current-thread runtime (no cross-thread wake-ups); more: multi-thread.
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
        };
        rt.block_on(async move {
            let addr = "127.0.0.1:0"
                .parse()
                .map_err(|_| oscore::Error::MalformedMessage("addr"))?;
            let sock = bind_udp(addr, oscore::transport::SERVER_SOCKET_BUFFER)?;
            let cfg = ServerConfig {
                workers: threads,
                ..ServerConfig::default()
            };
            let server = Server::new(sock, contexts, Arc::new(Blob(Arc::new(body))), cfg);
            let _ = addr_tx.send(server.local_addr()?);
            server
                .serve(async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    });
    let addr = addr_rx
        .await
        .map_err(|_| oscore::Error::Blockwise("server did not start"))?;
    Ok(BenchServer {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn transfer(size: usize, runs: usize) -> oscore::Result<()> {
    let server = start_server((0..runs).map(|i| ctx(i, false)).collect(), data(size)).await?;
    let mut times = Vec::new();
    for i in 0..runs {
        let mut c =
            Client::connect(server.addr, Some(ctx(i, true)), ClientConfig::default()).await?;
        let t = Instant::now();
        let mut n = 0usize;
        c.get_with("blob", &mut |b| n += b.len()).await?;
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(n, size);
        println!("run {i}: {dt:.4} s");
        times.push(dt);
    }
    times.sort_by(f64::total_cmp);
    println!("median_s={:.4}", times[times.len() / 2]);
    server.stop().await
}

async fn load(clients: usize, size: usize, ack_timeout: Duration) -> oscore::Result<()> {
    let server = start_server((0..clients).map(|i| ctx(i, false)).collect(), data(size)).await?;
    let addr: SocketAddr = server.addr;
    let mut conns = Vec::new();
    for i in 0..clients {
        let cfg = ClientConfig {
            ack_timeout,
            ..ClientConfig::default()
        };
        conns.push(Client::connect(addr, Some(ctx(i, true)), cfg).await?);
    }
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            c.get_with("blob", &mut |b| n += b.len()).await.map(|_| n)
        }));
    }
    let mut total = 0usize;
    let mut failed = 0usize;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) if n == size => total += n,
            _ => failed += 1,
        }
    }
    let dt = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!("clients={clients} size={size} failed={failed} elapsed_s={dt:.3}");
    // CPU time of server + clients during the run; under CPU contention from other
    // processes, elapsed time grows but this does not.
    println!(
        "cpu_s={cpu:.2} goodput_per_cpu_second_MB={:.1}",
        total as f64 / cpu / 1e6
    );
    println!("goodput_MBps={:.1}", total as f64 / dt / 1e6);
    println!("peak_rss_MiB={:.1}", peak_rss_mib());
    server.stop().await?;
    if failed > 0 {
        return Err(oscore::Error::Blockwise("some clients failed"));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let r = rt.block_on(async {
        match args.cmd {
            Cmd::Transfer { size, runs } => transfer(size, runs).await,
            Cmd::Load {
                clients,
                size,
                ack_timeout_ms,
            } => load(clients, size, Duration::from_millis(ack_timeout_ms)).await,
        }
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
