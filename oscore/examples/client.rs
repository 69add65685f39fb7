//! `cargo run -p oscore --example client -- [--context FILE] [-m GET|PUT|POST]
//! [--payload @FILE|TEXT] coap://HOST:PORT/PATH`
//!
//! Prints the response payload to stdout. Exit codes: 0 success, 1 the request failed (error
//! response, timeout, verification failure), 2 bad arguments or context file (missing,
//! invalid, without sequence state, or in use by another process).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};

#[derive(Parser, Debug)]
#[command(about = "CoAP/OSCORE client with block-wise transfer")]
struct Args {
    /// Security context JSON file (sequence state in FILE.seq, written when the context is
    /// created; the file is locked while in use: FILE.lock).
    #[arg(long)]
    context: Option<PathBuf>,
    /// The context file is new and was never used: write its sequence state first (refused
    /// when it has one; a context made with `oscore::ctxfile::create` already has it).
    #[arg(long, requires = "context")]
    init_state: bool,
    /// Method.
    #[arg(short = 'm', long = "method", default_value = "GET")]
    method: String,
    /// Request payload: @FILE reads a file, anything else is sent as text.
    #[arg(long)]
    payload: Option<String>,
    /// Block size in bytes (16..1024).
    #[arg(long, default_value_t = 1024)]
    block_size: usize,
    /// Persist the sender sequence number this many numbers ahead (RFC 8613 Appendix
    /// B.1.1's K; 1 writes the state before every request).
    #[arg(long, default_value_t = oscore::seq::DEFAULT_STEP, value_parser = clap::value_parser!(u64).range(1..))]
    seq_step: u64,
    /// ACK_TIMEOUT in milliseconds (RFC 7252 §4.8).
    #[arg(long, default_value_t = 2000)]
    ack_timeout_ms: u64,
    /// coap://HOST:PORT/PATH
    uri: String,
}

fn parse_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("coap://")
        .ok_or_else(|| format!("{uri}: only coap:// URIs are supported"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:5683")
    };
    Ok((authority, path.to_string()))
}

async fn run(args: Args) -> Result<Vec<u8>, (u8, String)> {
    let usage = |m: String| (2u8, m);
    let method = match args.method.to_ascii_uppercase().as_str() {
        "GET" => code::GET,
        "PUT" => code::PUT,
        "POST" => code::POST,
        m => {
            return Err(usage(format!(
                "unsupported method {m}: use GET, PUT or POST"
            )));
        }
    };
    let body = match args.payload.as_deref() {
        Some(p) if p.starts_with('@') => std::fs::read(&p[1..])
            .map_err(|e| usage(format!("cannot read payload file {}: {e}", &p[1..])))?,
        Some(p) => p.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let (authority, path) = parse_uri(&args.uri).map_err(usage)?;
    let addr = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| usage(format!("cannot resolve {authority}: {e}")))?
        .next()
        .ok_or_else(|| usage(format!("{authority} has no address")))?;
    if args.init_state
        && let Some(f) = &args.context
    {
        oscore::ctxfile::init_state(f).map_err(|e| usage(format!("{e}")))?;
    }
    let ctx = match &args.context {
        Some(f) => Some(
            oscore::ctxfile::open_with_step(f, args.seq_step).map_err(|e| usage(format!("{e}")))?,
        ),
        None => None,
    };
    let cfg = ClientConfig {
        block_szx: oscore::block::szx_for(args.block_size),
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        ..ClientConfig::default()
    };
    let mut client = Client::connect(addr, ctx, cfg)
        .await
        .map_err(|e| (1, format!("{e}")))?;
    let result = client.request(method, &path, &body).await;
    if let Some(ctx) = client.context_mut() {
        // Persist the exact position so the next run wastes no sequence numbers.
        ctx.flush().map_err(|e| (1, format!("{e}")))?;
    }
    result
        .map(|r| r.payload)
        .map_err(|e| (1, format!("{} {}: {e}", args.method, args.uri)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(body) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if out.write_all(&body).and_then(|_| out.flush()).is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}
