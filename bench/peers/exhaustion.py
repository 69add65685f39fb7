#!/usr/bin/env python3
"""Attack driver for bench/exhaustion.sh (issue 13 item 3), standard library only.

Against a running dispatcher: measures the latency of a legitimate authenticated request
(GET /v1/status, a fresh TLS connection each time) first without attack (the reference),
then while the attack runs: IDLE TLS connections that complete their handshake and send
nothing, plus one unauthenticated upload of UPLOAD bytes streamed to POST /v1/releases.
Samples the dispatcher's resident memory from /proc during the attack.

Prints key=value lines: idle_rss_kib, ref_latency_ms, attack_latency_ms (max of the samples
taken during the attack), attack_latency_p50_ms, rss_above_idle_kib (peak), idle_conns_open
(handshakes completed), upload_sent_mib, upload_status, upload_s, samples_during_upload
(legitimate requests that completed while the upload was still being sent).
"""
import argparse
import socket
import ssl
import statistics
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def tls_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the certificate names localhost; we connect to an IP
    return ctx


def request(ctx, host, port, token):
    """One GET /v1/status on a new connection; returns (seconds, status)."""
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(
                f"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return time.monotonic() - t0, status


def upload(ctx, host, port, total, out):
    """Streams `total` bytes to POST /v1/releases without a token."""
    sent = 0
    status = 0
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(
                    f"POST /v1/releases HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {total}\r\n\r\n".encode()
                )
                chunk = b"A" * (256 * 1024)
                s.settimeout(0.0)
                reply = b""
                deadline = time.monotonic() + 120
                while sent < total and time.monotonic() < deadline:
                    try:
                        reply += s.recv(4096)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        pass
                    try:
                        n = s.send(chunk)
                        sent += n
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        time.sleep(0.001)
                    if reply.startswith(b"HTTP/") and b"\r\n" in reply:
                        status = int(reply.split(b" ", 2)[1])
                        # Keep pushing: the attacker does not stop on a refusal.
    except (OSError, ssl.SSLError):
        pass
    out["sent"] = sent
    out["status"] = status
    out["secs"] = time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--upload", type=int, default=1 << 30)
    ap.add_argument("--samples", type=int, default=20)
    a = ap.parse_args()
    ctx = tls_context(a.ca)

    time.sleep(1)
    idle_rss = rss_kib(a.pid)
    print(f"idle_rss_kib={idle_rss}", flush=True)

    ref = []
    for _ in range(a.samples):
        dt, st = request(ctx, a.host, a.port, a.token)
        assert st == 200, f"reference request answered {st}"
        ref.append(dt)
    print(f"ref_latency_ms={statistics.median(ref) * 1000:.1f}", flush=True)

    peak = [idle_rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_kib(a.pid))
            except OSError:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    # The attack: idle connections (handshake done, nothing sent), held open...
    held = []
    for _ in range(a.idle):
        try:
            raw = socket.create_connection((a.host, a.port), timeout=5)
            held.append(ctx.wrap_socket(raw, server_hostname="localhost"))
        except (OSError, ssl.SSLError):
            pass
    print(f"idle_conns_open={len(held)}", flush=True)
    # ...and the unauthenticated upload, while the legitimate requests are timed.
    up = {}
    uploader = threading.Thread(target=upload, args=(ctx, a.host, a.port, a.upload, up))
    uploader.start()
    lat = []
    during = 0
    for _ in range(a.samples):
        dt, st = request(ctx, a.host, a.port, a.token)
        assert st == 200, f"legitimate request answered {st} under attack"
        lat.append(dt)
        during += uploader.is_alive()
        time.sleep(0.05)
    uploader.join()
    time.sleep(0.5)
    stop.set()
    sampler.join()
    for s in held:
        try:
            s.close()
        except OSError:
            pass
    print(f"attack_latency_ms={max(lat) * 1000:.1f}")
    print(f"attack_latency_p50_ms={statistics.median(lat) * 1000:.1f}")
    print(f"rss_above_idle_kib={peak[0] - idle_rss}")
    print(f"upload_sent_mib={up.get('sent', 0) / (1 << 20):.1f}")
    print(f"upload_status={up.get('status', 0)}")
    print(f"upload_s={up.get('secs', 0):.1f}")
    print(f"samples_during_upload={during}")


if __name__ == "__main__":
    main()
