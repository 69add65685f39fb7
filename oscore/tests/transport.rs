//! Our client against our server on loopback: OSCORE + block-wise in both directions, 4.01
//! for unprotected requests, Echo after a server restart, a lossy link, late negotiation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::ctx::params;
use common::net::{data, file_server, lossy_relay, sha256_hex};
use oscore::message::code;
use oscore::transport::{Client, ClientConfig};
use oscore::{Error, FileSeqStore, MemorySeqStore, SecurityContext};

fn client_ctx() -> SecurityContext {
    SecurityContext::new(&params(5, b"\x01", b""), Box::new(MemorySeqStore::new())).unwrap()
}

fn server_ctx() -> SecurityContext {
    SecurityContext::new(&params(5, b"", b"\x01"), Box::new(MemorySeqStore::new())).unwrap()
}

fn fast() -> ClientConfig {
    ClientConfig {
        ack_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_both_directions_over_oscore() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(1 << 20, 1);
    std::fs::write(dir.path().join("image.bin"), &body).unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();

    let got = c.get("image.bin").await.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    // One OSCORE exchange per 1024-byte block.
    assert_eq!(c.context_mut().unwrap().next_seq(), 1024);

    let up = data(1 << 20, 2);
    let r = c.request(code::PUT, "upload.bin", &up).await.unwrap();
    assert_eq!(r.code, code::CREATED);
    assert_eq!(
        sha256_hex(&std::fs::read(dir.path().join("upload.bin")).unwrap()),
        sha256_hex(&up)
    );
    let r = c.request(code::PUT, "upload.bin", b"small").await.unwrap();
    assert_eq!(r.code, code::CHANGED);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unprotected_requests_get_4_01_and_errors_surface() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut plain = Client::connect(server.addr, None, fast()).await.unwrap();
    match plain.get("f").await {
        Err(Error::Response { code, .. }) => assert_eq!(code, "4.01"),
        r => panic!("{r:?}"),
    }
    // Unknown kid: 4.01 "Security context not found", unprotected.
    let other =
        SecurityContext::new(&params(5, b"\x07", b""), Box::new(MemorySeqStore::new())).unwrap();
    let mut c = Client::connect(server.addr, Some(other), fast())
        .await
        .unwrap();
    match c.get("f").await {
        Err(Error::Response { code, diagnostic }) => {
            assert_eq!(code, "4.01");
            assert!(diagnostic.contains("context not found"), "{diagnostic}");
        }
        r => panic!("{r:?}"),
    }
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    match c.get("missing").await {
        Err(Error::Response { code, .. }) => assert_eq!(code, "4.04"),
        r => panic!("{r:?}"),
    }
    match c.get("../etc/passwd").await {
        Err(Error::Response { code, .. }) => assert_eq!(code, "4.04"),
        r => panic!("{r:?}"),
    }
    assert_eq!(c.get("f").await.unwrap(), b"x");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn server_restart_recovers_with_echo() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("server.json.seq");
    FileSeqStore::init(&seq).unwrap();
    std::fs::write(dir.path().join("f"), b"hello").unwrap();
    let mk = || {
        SecurityContext::new(&params(5, b"", b"\x01"), Box::new(FileSeqStore::new(&seq))).unwrap()
    };
    let server = file_server(dir.path(), vec![mk()]).await;
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    // Loaded from its state: even the first start needs one Echo round trip (B.1.2).
    assert_eq!(c.get("f").await.unwrap(), b"hello");
    assert_eq!(c.context_mut().unwrap().next_seq(), 2);
    server.stop().await.unwrap();
    // Restart: the replay window is gone; the client transparently answers the Echo challenge.
    let server = file_server(dir.path(), vec![mk()]).await;
    let mut c = Client::connect(server.addr, c_ctx_from(c), fast())
        .await
        .unwrap();
    let before = c.context_mut().unwrap().next_seq();
    assert_eq!(c.get("f").await.unwrap(), b"hello");
    assert_eq!(
        c.context_mut().unwrap().next_seq(),
        before + 2,
        "one Echo round trip, then the real request"
    );
    assert_eq!(c.get("f").await.unwrap(), b"hello");
    server.stop().await.unwrap();
}

fn c_ctx_from(mut c: Client) -> Option<SecurityContext> {
    // Re-use the client's context (and its sequence position) in a new client.
    let seq = c.context_mut().unwrap().next_seq();
    let mut store = MemorySeqStore::new();
    oscore::SeqStore::store(&mut store, seq).unwrap();
    Some(SecurityContext::new(&params(5, b"\x01", b""), Box::new(store)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_link_20_percent_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(1 << 20, 3);
    std::fs::write(dir.path().join("image.bin"), &body).unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let (relay, stats, task) = lossy_relay(server.addr, 0.2, 0x5eed).await;
    let cfg = ClientConfig {
        ack_timeout: Duration::from_millis(8),
        ack_random_factor: 1.5,
        max_retransmit: 8,
        resume_attempts: 5,
        ..ClientConfig::default()
    };
    let mut c = Client::connect(relay, Some(client_ctx()), cfg)
        .await
        .unwrap();
    let got = c.get("image.bin").await.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    let up = data(256 << 10, 4);
    c.request(code::PUT, "up.bin", &up).await.unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(dir.path().join("up.bin")).unwrap()),
        sha256_hex(&up)
    );
    let dropped = stats.dropped.load(Ordering::Relaxed) as f64;
    let total = dropped + stats.forwarded.load(Ordering::Relaxed) as f64;
    assert!(
        dropped / total > 0.15 && dropped / total < 0.25,
        "loss rate {}",
        dropped / total
    );
    task.abort();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn resume_interrupted_download_and_small_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(10_000, 5);
    std::fs::write(dir.path().join("f"), &body).unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut c = Client::connect(
        server.addr,
        Some(client_ctx()),
        ClientConfig {
            block_szx: 2,
            ..fast()
        },
    )
    .await
    .unwrap();
    // A download that stopped after 4 blocks (plus a partial one) continues from block 4.
    let mut partial = body[..64 * 4 + 10].to_vec();
    let seq0 = c.context_mut().unwrap().next_seq();
    c.get_resume("f", &mut partial).await.unwrap();
    assert_eq!(partial, body);
    let blocks = 10_000usize.div_ceil(64) as u64;
    assert_eq!(c.context_mut().unwrap().next_seq() - seq0, blocks - 4);
    // Upload with 64-byte blocks.
    c.request(code::PUT, "g", &body).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), body);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn too_large_upload_gets_4_13() {
    let dir = tempfile::tempdir().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = oscore::transport::ServerConfig {
        max_body: 4096,
        ..Default::default()
    };
    let server = oscore::transport::Server::new(
        sock,
        vec![server_ctx()],
        std::sync::Arc::new(oscore::transport::FileHandler::new(dir.path())),
        cfg,
    )
    .spawn()
    .unwrap();
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    match c.request(code::PUT, "big", &data(10_000, 1)).await {
        Err(Error::Response { code, .. }) => assert_eq!(code, "4.13"),
        r => panic!("{r:?}"),
    }
    assert!(!dir.path().join("big").exists());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn no_server_times_out() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let cfg = ClientConfig {
        ack_timeout: Duration::from_millis(5),
        max_retransmit: 2,
        resume_attempts: 0,
        ..ClientConfig::default()
    };
    let mut c = Client::connect(addr, Some(client_ctx()), cfg)
        .await
        .unwrap();
    assert!(matches!(
        c.get("x").await,
        Err(Error::Timeout { attempts: 3 })
    ));
    drop(sock);
}

/// A hand-written peer: answers the first request with an empty ACK, then sends the response
/// as a separate CON message; the client must ACK it. A second request is answered with RST.
#[tokio::test]
async fn separate_response_and_rst_without_oscore() {
    use coap_lite::MessageType;
    use oscore::message;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = peer.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let req = message::decode(&buf[..n], 1500).unwrap();
        let ack = message::packet(MessageType::Acknowledgement, 0, req.header.message_id, &[]);
        peer.send_to(&message::encode(&ack, 1500).unwrap(), from)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut resp = message::packet(
            MessageType::Confirmable,
            code::CONTENT,
            0x7777,
            req.get_token(),
        );
        resp.payload = b"late".to_vec();
        peer.send_to(&message::encode(&resp, 1500).unwrap(), from)
            .await
            .unwrap();
        // The client acknowledges the separate response (RFC 7252 §5.2.2).
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        let a = message::decode(&buf[..n], 1500).unwrap();
        assert_eq!(a.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(a.header.message_id, 0x7777);
        // Next request: RST.
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let req = message::decode(&buf[..n], 1500).unwrap();
        let rst = message::packet(MessageType::Reset, 0, req.header.message_id, &[]);
        peer.send_to(&message::encode(&rst, 1500).unwrap(), from)
            .await
            .unwrap();
    });
    let mut c = Client::connect(addr, None, fast()).await.unwrap();
    assert_eq!(c.get("x").await.unwrap(), b"late");
    assert!(matches!(c.get("y").await, Err(Error::Reset)));
    fake.await.unwrap();
}

/// A retransmitted request (its response was lost) is answered from the duplicate cache,
/// not rejected as an OSCORE replay.
#[tokio::test]
async fn duplicate_request_gets_the_cached_response() {
    use oscore::message;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"once").unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut ctx = client_ctx();
    let mut req = message::packet(
        coap_lite::MessageType::Confirmable,
        code::GET,
        0x4242,
        b"tk",
    );
    message::set_path(&mut req, "f");
    let (outer, binding) = oscore::protect::protect_request(&mut ctx, &req).unwrap();
    let bytes = message::encode(&outer, 1500).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server.addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let mut answers = Vec::new();
    for _ in 0..2 {
        sock.send(&bytes).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        answers.push(buf[..n].to_vec());
    }
    assert_eq!(
        answers[0], answers[1],
        "same bytes from the duplicate cache"
    );
    let resp = message::decode(&answers[1], 1500).unwrap();
    let inner = oscore::protect::unprotect_response(&mut ctx, &binding, &resp).unwrap();
    assert_eq!(inner.payload, b"once");
    server.stop().await.unwrap();
}

/// RFC 7959 §2.9.3: a server with 256-byte blocks answers a 600-byte single-message PUT with
/// 4.13 + Block1(SZX 4); the client resends block-wise with 256-byte blocks. Downloads follow
/// the server's smaller Block2 size.
#[tokio::test]
async fn server_with_small_blocks_negotiates_down() {
    let dir = tempfile::tempdir().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = oscore::transport::ServerConfig {
        block_szx: 4,
        ..Default::default()
    };
    let server = oscore::transport::Server::new(
        sock,
        vec![server_ctx()],
        std::sync::Arc::new(oscore::transport::FileHandler::new(dir.path())),
        cfg,
    )
    .spawn()
    .unwrap();
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    let body = data(600, 9);
    let seq0 = c.context_mut().unwrap().next_seq();
    let r = c.request(code::PUT, "small", &body).await.unwrap();
    assert_eq!(r.code, code::CREATED);
    assert_eq!(std::fs::read(dir.path().join("small")).unwrap(), body);
    // One refused single-message attempt, then three 256-byte blocks.
    assert_eq!(c.context_mut().unwrap().next_seq() - seq0, 4);
    let big = data(5000, 10);
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let seq0 = c.context_mut().unwrap().next_seq();
    assert_eq!(c.get("big").await.unwrap(), big);
    assert_eq!(
        c.context_mut().unwrap().next_seq() - seq0,
        5000u64.div_ceil(256)
    );
    server.stop().await.unwrap();
}

/// A datagram above the server's limit is answered with 4.13 (and Size1), not processed.
#[tokio::test]
async fn oversized_datagram_gets_4_13() {
    use oscore::message;
    let dir = tempfile::tempdir().unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut req = message::packet(
        coap_lite::MessageType::Confirmable,
        code::PUT,
        0x1111,
        b"ab",
    );
    message::set_path(&mut req, "x");
    req.payload = vec![7; 3000];
    let bytes = message::encode(&req, usize::MAX).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server.addr).await.unwrap();
    sock.send(&bytes).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = message::decode(&buf[..n], 1500).unwrap();
    assert_eq!(message::code_of(&r), code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(r.header.message_id, 0x1111);
    assert_eq!(r.get_token(), b"ab");
    assert!(message::first(&r, message::opt::SIZE1).is_some());
    assert!(!dir.path().join("x").exists());
    server.stop().await.unwrap();
}

/// An unprotected 2.05 answering a protected request (an on-path injection) is refused.
#[tokio::test]
async fn unprotected_success_answer_is_refused() {
    use coap_lite::MessageType;
    use oscore::message;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = peer.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (n, from) = peer.recv_from(&mut buf).await.unwrap();
        let req = message::decode(&buf[..n], 1500).unwrap();
        let mut resp = message::packet(
            MessageType::Acknowledgement,
            code::CONTENT,
            req.header.message_id,
            req.get_token(),
        );
        resp.payload = b"evil firmware".to_vec();
        peer.send_to(&message::encode(&resp, 1500).unwrap(), from)
            .await
            .unwrap();
    });
    let mut c = Client::connect(addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    assert!(matches!(c.get("fw").await, Err(Error::NotProtected)));
    fake.await.unwrap();
}

/// RFC 7252 §5.4.1: an unrecognised critical option (inside OSCORE) gets 4.02.
#[tokio::test]
async fn unknown_critical_option_gets_4_02() {
    use oscore::message;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    let mut req = message::packet(coap_lite::MessageType::Confirmable, code::GET, 0, &[]);
    message::set_path(&mut req, "f");
    message::set(&mut req, 2049, vec![1]); // odd = critical, unassigned
    let r = c.exchange(req.clone()).await.unwrap();
    assert_eq!(message::code_of(&r), code::BAD_OPTION);
    message::clear(&mut req, 2049);
    message::set(&mut req, 2050, vec![1]); // even = elective: ignored
    let r = c.exchange(req).await.unwrap();
    assert_eq!(message::code_of(&r), code::CONTENT);
    server.stop().await.unwrap();
}

fn context_not_found(r: oscore::Result<Vec<u8>>) {
    match r {
        Err(Error::Response { code, diagnostic }) => {
            assert_eq!(code, "4.01");
            assert!(diagnostic.contains("context not found"), "{diagnostic}");
        }
        r => panic!("expected 4.01, got {r:?}"),
    }
}

/// A dispatcher enrols devices while its server runs: a context added after spawn is used for
/// the next request, a removed one is refused, and both are flushed (on removal, on stop).
#[tokio::test]
async fn contexts_added_and_removed_while_running() {
    use oscore::transport::{ContextSet, FileHandler, Server, ServerConfig};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = Server::new_protected(
        sock,
        ContextSet::new(),
        std::sync::Arc::new(FileHandler::new(dir.path())),
        ServerConfig::default(),
    )
    .spawn()
    .unwrap();
    let set = server.contexts();

    // No context yet: protected requests are unknown, unprotected ones refused all the same.
    let mut plain = Client::connect(server.addr, None, fast()).await.unwrap();
    match plain.get("f").await {
        Err(Error::Response { code, .. }) => assert_eq!(code, "4.01"),
        r => panic!("unprotected request on an empty protected server: {r:?}"),
    }
    let mut c = Client::connect(server.addr, Some(client_ctx()), fast())
        .await
        .unwrap();
    context_not_found(c.get("f").await);

    // Enrolled at run time (its sequence state in a file, to see the flushes).
    let seq1 = dir.path().join("peer1.seq");
    FileSeqStore::init(&seq1).unwrap();
    let limit = |f: &std::path::Path| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        v["sender_seq_limit"].as_u64().unwrap()
    };
    let enrolled =
        SecurityContext::new(&params(5, b"", b"\x01"), Box::new(FileSeqStore::new(&seq1))).unwrap();
    set.add(enrolled).unwrap();
    assert!(set.contains(b"\x01"));
    assert_eq!(c.get("f").await.unwrap(), b"x");
    // A second context for the same kid (and ID Context) is refused, the first one stays.
    let dup =
        SecurityContext::new(&params(9, b"", b"\x01"), Box::new(MemorySeqStore::new())).unwrap();
    assert!(matches!(set.add(dup), Err(Error::DuplicateContext { .. })));
    assert_eq!(c.get("f").await.unwrap(), b"x");

    // Removed: refused again; its sequence number was flushed on removal (the Echo answer
    // of its first request used number 0, persisted ahead by one step; the flush stores 1).
    assert_eq!(limit(&seq1), oscore::seq::DEFAULT_STEP);
    assert_eq!(set.remove(b"\x01"), 1);
    assert_eq!(set.remove(b"\x01"), 0);
    assert_eq!(limit(&seq1), 1, "a removed context is flushed");
    context_not_found(c.get("f").await);

    // Another peer added later is flushed when the server stops.
    let seq2 = dir.path().join("peer2.seq");
    FileSeqStore::init(&seq2).unwrap();
    let ctx2 =
        SecurityContext::new(&params(6, b"", b"\x02"), Box::new(FileSeqStore::new(&seq2))).unwrap();
    set.add(ctx2).unwrap();
    let client2 =
        SecurityContext::new(&params(6, b"\x02", b""), Box::new(MemorySeqStore::new())).unwrap();
    let mut c2 = Client::connect(server.addr, Some(client2), fast())
        .await
        .unwrap();
    assert_eq!(c2.get("f").await.unwrap(), b"x");
    assert_eq!(limit(&seq2), oscore::seq::DEFAULT_STEP);
    server.stop().await.unwrap();
    assert_eq!(
        limit(&seq2),
        1,
        "a context added at run time is flushed on stop"
    );
}

/// One context moved from client to client keeps its sequence number space: the server sees
/// fresh sequence numbers (no replay) and the numbers continue where the last client stopped.
#[tokio::test]
async fn into_context_continues_the_sequence_in_the_next_client() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let server = file_server(dir.path(), vec![server_ctx()]).await;
    let mut ctx = Some(client_ctx());
    let mut last = 0;
    for _ in 0..3 {
        let mut c = Client::connect(server.addr, ctx.take(), fast())
            .await
            .unwrap();
        assert_eq!(c.get("f").await.unwrap(), b"x");
        ctx = c.into_context();
        let next = ctx.as_ref().unwrap().next_seq();
        assert!(next > last, "sequence continues: {next} after {last}");
        last = next;
    }
    assert!(
        Client::connect(server.addr, None, fast())
            .await
            .unwrap()
            .into_context()
            .is_none()
    );
    server.stop().await.unwrap();
}
