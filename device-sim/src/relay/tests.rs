use super::*;

/// An echo server that prefixes each answer with the sender's port, so a test can see
/// which upstream socket a client was given.
async fn echo() -> (Echo, JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let e = Echo {
        addr: s.local_addr().unwrap(),
        received: Arc::new(AtomicU64::new(0)),
    };
    let received = e.received.clone();
    let task = tokio::spawn(async move {
        let mut b = [0u8; 2048];
        loop {
            let (n, from) = s.recv_from(&mut b).await.unwrap();
            received.fetch_add(1, Ordering::Relaxed);
            let mut out = from.port().to_be_bytes().to_vec();
            out.extend_from_slice(&b[..n]);
            s.send_to(&out, from).await.unwrap();
        }
    });
    (e, task)
}

struct Echo {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
}

async fn relay(upstream: SocketAddr, fault: LinkFault, limits: RelayLimits) -> Relay {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Relay::spawn(front, upstream, &fault, 7, limits).unwrap()
}

async fn client(relay: SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(relay).await.unwrap();
    c
}

/// A hang guard, not a performance threshold.
async fn recv(c: &UdpSocket) -> Vec<u8> {
    let mut b = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(30), c.recv(&mut b))
        .await
        .expect("an answer through the relay")
        .unwrap();
    b[..n].to_vec()
}

/// Several clients at once each get their own upstream socket and their own answers, in
/// the order they were sent.
#[tokio::test]
async fn clients_get_their_own_upstream_socket_and_answers_in_order() {
    let (server, echo) = echo().await;
    let r = relay(
        server.addr,
        LinkFault::new(0, 20, None).unwrap(),
        RelayLimits::default(),
    )
    .await;
    let (a, b) = (client(r.addr()).await, client(r.addr()).await);
    for i in 0..20u8 {
        a.send(&[b'a', i]).await.unwrap();
        b.send(&[b'b', i]).await.unwrap();
    }
    let mut ports = Vec::new();
    for (c, tag) in [(&a, b'a'), (&b, b'b')] {
        let mut port = None;
        for i in 0..20u8 {
            let m = recv(c).await;
            assert_eq!(
                &m[2..],
                &[tag, i],
                "answers come back to their client, in order"
            );
            let p = u16::from_be_bytes([m[0], m[1]]);
            assert!(
                port.is_none_or(|q| q == p),
                "one upstream socket per client"
            );
            port = Some(p);
        }
        ports.push(port.unwrap());
    }
    assert_ne!(
        ports[0], ports[1],
        "each client has its own upstream socket"
    );
    assert_ne!(ports[0], r.addr().port());
    let s = r.stats();
    assert_eq!(s.upstream.forwarded.load(Ordering::Relaxed), 40);
    assert_eq!(s.downstream.forwarded.load(Ordering::Relaxed), 40);
    assert_eq!(
        s.upstream.decided() + s.downstream.decided(),
        80,
        "nothing dropped"
    );
    r.stop().await;
    echo.abort();
}

/// The table of clients is bounded: the least recently active client is evicted, and it
/// gets a new upstream socket (a new peer address) when it comes back.
#[tokio::test]
async fn client_table_is_bounded() {
    let (server, echo) = echo().await;
    let limits = RelayLimits {
        max_clients: 3,
        ..RelayLimits::default()
    };
    let r = relay(server.addr, LinkFault::new(0, 0, None).unwrap(), limits).await;
    let first = client(r.addr()).await;
    first.send(b"x").await.unwrap();
    let port = recv(&first).await[..2].to_vec();
    let mut others = Vec::new();
    for _ in 0..3 {
        let c = client(r.addr()).await;
        c.send(b"y").await.unwrap();
        recv(&c).await;
        others.push(c);
    }
    assert_eq!(r.stats().evicted.load(Ordering::Relaxed), 1);
    first.send(b"x").await.unwrap();
    assert_ne!(
        recv(&first).await[..2],
        port[..],
        "evicted, then a new upstream socket"
    );
    assert_eq!(r.stats().evicted.load(Ordering::Relaxed), 2);
    r.stop().await;
    echo.abort();
}

/// Loss applies in both directions, at the fault's rate in each, and the counters add up.
#[tokio::test]
async fn loss_applies_both_ways() {
    let (server, echo) = echo().await;
    let r = relay(
        server.addr,
        LinkFault::new(30, 0, None).unwrap(),
        RelayLimits::default(),
    )
    .await;
    let c = client(r.addr()).await;
    let (mut sent, mut answered) = (0u64, 0u64);
    let s = r.stats();
    // In rounds of 20, each ending when every datagram of the round (and every answer)
    // has been either dropped or delivered, so the kernel's socket buffers never
    // overflow and the counts below are exact.
    for _ in 0..50 {
        for _ in 0..20 {
            c.send(&sent.to_be_bytes()).await.unwrap();
            sent += 1;
        }
        let settled = async {
            loop {
                let up = server.received.load(Ordering::Relaxed);
                if s.upstream.decided() == sent
                    && s.upstream.forwarded.load(Ordering::Relaxed) == up
                    && s.downstream.decided() == up
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        // A hang guard, not a performance threshold.
        tokio::time::timeout(Duration::from_secs(30), settled)
            .await
            .expect("every datagram is forwarded or dropped");
        while answered < s.downstream.forwarded.load(Ordering::Relaxed) {
            recv(&c).await;
            answered += 1;
        }
    }
    let up = server.received.load(Ordering::Relaxed);
    // 1000 draws at p = 0.7: sigma 0.015; 700 draws: sigma 0.017.
    let (rate_up, rate_down) = (up as f64 / sent as f64, answered as f64 / up as f64);
    assert!(
        (0.62..0.78).contains(&rate_up),
        "upstream delivery {rate_up}"
    );
    assert!(
        (0.62..0.78).contains(&rate_down),
        "downstream delivery {rate_down}"
    );
    let overflowed = s.upstream.overflowed.load(Ordering::Relaxed)
        + s.downstream.overflowed.load(Ordering::Relaxed);
    assert_eq!(overflowed, 0);
    r.stop().await;
    echo.abort();
}
