#!/usr/bin/env bash
# Exhaustion benchmark (issue 13 item 3), on loopback, in one run: a real dispatcher (release
# build, default limits) is attacked with IDLE TLS connections that complete their handshake
# and send nothing, plus one unauthenticated upload of UPLOAD bytes to POST /v1/releases, all
# from the same address as the legitimate client. Meanwhile a legitimate authenticated
# request (GET /v1/status, new connection each time) is timed, against the same request
# timed before the attack (the reference, same run). Prints the legitimate request's latency
# under attack (worst of the samples), the ratio to the reference, and the dispatcher's peak
# resident memory above its idle figure. Targets: < 1 s and < 64 MiB.
# Usage: bench/exhaustion.sh          (env IDLE=1000 UPLOAD=1073741824 SAMPLES=20)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-1000}
UPLOAD=${UPLOAD:-1073741824}
SAMPLES=${SAMPLES:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet -p dispatcher
BIN="$CARGO_TARGET_DIR/release/dispatcher"
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" init --dir "$work/d" --listen 127.0.0.1:0 --coap-listen 127.0.0.1:0 > /dev/null
DISPATCHER_LOG=warn "$BIN" serve --config "$work/d/dispatcher.toml" > "$work/serve.out" 2> "$work/serve.err" &
pid=$!
for _ in $(seq 100); do grep -q '^dispatcher listening' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^dispatcher listening \(https:[^ ]*\) .*/\1/p' "$work/serve.out")
[ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }
port=${url##*:}

echo "== dispatcher $url: $IDLE idle TLS connections + a $((UPLOAD >> 20)) MiB unauthenticated upload"
python3 bench/peers/exhaustion.py --port "$port" --ca "$work/d/tls/ca.pem" \
  --token "$(cat "$work/d/admin.token")" --pid "$pid" \
  --idle "$IDLE" --upload "$UPLOAD" --samples "$SAMPLES" | tee "$work/out"
kill -0 "$pid" 2>/dev/null || { echo "the dispatcher died"; cat "$work/serve.err"; exit 1; }

get() { sed -n "s/^$1=//p" "$work/out"; }
ref=$(get ref_latency_ms); lat=$(get attack_latency_ms); grown=$(get rss_above_idle_kib)
echo
echo "legitimate request: ${lat} ms under attack (worst of $SAMPLES), ${ref} ms without (median)," \
  "ratio $(python3 -c "print(f'{$lat / max($ref, 0.001):.1f}')") (target < 1000 ms)"
echo "dispatcher RSS above idle: $((grown / 1024)) MiB (peak; idle $(( $(get idle_rss_kib) / 1024 )) MiB; target < 64 MiB)"
echo "upload: $(get upload_sent_mib) MiB of $((UPLOAD >> 20)) MiB pushed in $(get upload_s) s (HTTP/1.1: read and discarded), answer $(get upload_status);" \
  "$(get samples_during_upload) of $SAMPLES legitimate requests completed while it was being sent"
ok=1
python3 -c "import sys; sys.exit(0 if $lat < 1000 else 1)" || { echo "FAIL: latency target"; ok=0; }
[ "$grown" -lt $((64 * 1024)) ] || { echo "FAIL: memory target"; ok=0; }
[ "$ok" = 1 ] && echo "targets met"
