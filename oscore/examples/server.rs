//! `cargo run -p oscore --example server -- [--context FILE] --port P --serve DIR`
//!
//! GET serves files below DIR, PUT stores them. With a context every request must be
//! OSCORE-protected (unprotected requests get 4.01). Prints `listening on ADDR` on stdout
//! once bound (port 0 picks a free port). Stops on ctrl-c, SIGTERM or after --exit-after seconds,
//! flushing the sequence number to FILE.seq. However it stopped (SIGKILL included), the first
//! request of the peer after a start is answered with 4.01 + Echo under the server's own
//! Partial IV and is not acted on (RFC 8613 Appendix B.1.2). Exit codes: 0 stopped, 1 a
//! runtime error, 2 bad arguments or context (missing, invalid, without state, in use).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use oscore::transport::{FileHandler, Server, ServerConfig};

#[derive(Parser, Debug)]
#[command(about = "CoAP/OSCORE file server with block-wise transfer")]
struct Args {
    /// Security context JSON file (sequence state in FILE.seq, written when the context is
    /// created; the file is locked while in use: FILE.lock).
    #[arg(long)]
    context: Option<PathBuf>,
    /// The context file is new and was never used: write its sequence state first (refused
    /// when it has one; a context made with `oscore::ctxfile::create` already has it).
    #[arg(long, requires = "context")]
    init_state: bool,
    /// UDP port (0 = any free port).
    #[arg(long)]
    port: u16,
    /// Directory to serve and store files in.
    #[arg(long)]
    serve: PathBuf,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    exit_after: Option<u64>,
    /// Largest block size sent (16..1024).
    #[arg(long, default_value_t = 1024)]
    block_size: usize,
    /// Largest ratio of an Echo challenge to the request it answers (RFC 9175 §2.4 item 3):
    /// 1 for clients that pad (ours); 3 lets clients that do not (aiocoap) recover after a
    /// restart.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    echo_amplification: u8,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.init_state
        && let Some(f) = &args.context
        && let Err(e) = oscore::ctxfile::init_state(f)
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let contexts = match &args.context {
        // Locked while the server runs: a second process gets "in use" (exit 2).
        Some(f) => match oscore::ctxfile::open(f) {
            Ok(c) => vec![c],
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    if !args.serve.is_dir() {
        eprintln!("error: --serve {}: not a directory", args.serve.display());
        return ExitCode::from(2);
    }
    let sock = match oscore::transport::bind_udp(
        SocketAddr::new(args.bind, args.port),
        oscore::transport::SERVER_SOCKET_BUFFER,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot bind {}:{}: {e}", args.bind, args.port);
            return ExitCode::from(2);
        }
    };
    let cfg = ServerConfig {
        block_szx: oscore::block::szx_for(args.block_size),
        echo_amplification: args.echo_amplification.into(),
        ..ServerConfig::default()
    };
    let server = Server::new(sock, contexts, Arc::new(FileHandler::new(&args.serve)), cfg);
    // Installed before announcing the address, so a SIGTERM right after it is graceful too.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    match server.local_addr() {
        Ok(a) => println!("listening on {a}"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    let exit_after = args.exit_after;
    let mut term = term;
    // Graceful stop on ctrl-c, SIGTERM or --exit-after: the sequence number is flushed.
    let shutdown = async move {
        let timer = async {
            match exit_after {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => {}
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match server.serve(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
