#!/usr/bin/env bash
# OSCORE transport benchmark (issue 3), all on loopback, in one run:
#  1. a 1 MiB OSCORE block-wise GET (1024-byte blocks) between aiocoap 0.4.17 peers, and the
#     same transfer with our client and server; prints both medians and the ratio;
#  2. 1,000 concurrent clients, each with its own OSCORE context, fetching 256 KiB from one
#     server; prints the aggregate goodput (MB/s, 10^6 bytes) and the peak memory (VmHWM of the
#     process holding the server and all clients).
# Times are request times only (no interpreter or process start-up on either side).
# Usage: bench/oscore.sh [RUNS]   (default 5; env CLIENTS, SIZE override the load test)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
CLIENTS=${CLIENTS:-1000}
SIZE=${SIZE:-262144}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

bash scripts/peers/aiocoap.sh >/dev/null
cargo build --release --quiet -p oscore --example bench
BENCH="$CARGO_TARGET_DIR/release/examples/bench"
PY=.peers/aiocoap/venv/bin/python
PEERS=oscore/tests/peers

work=$(mktemp -d)
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# --- 1a. aiocoap <-> aiocoap ------------------------------------------------------------
secret=0102030405060708090a0b0c0d0e0f10 salt=9e7ca92223786340
mkdir -p "$work/srv" "$work/cli" "$work/serve"
printf '{"sender-id_hex": "01", "recipient-id_hex": "", "secret_hex": "%s", "salt_hex": "%s"}' "$secret" "$salt" > "$work/srv/settings.json"
printf '{"sender-id_hex": "", "recipient-id_hex": "01", "secret_hex": "%s", "salt_hex": "%s"}' "$secret" "$salt" > "$work/cli/settings.json"
head -c 1048576 /dev/urandom > "$work/serve/blob"
port=$("$PY" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" "$PEERS/aiocoap_server.py" --port "$port" --context "$work/srv" --serve "$work/serve" --exit-after 600 > "$work/srv.log" 2>&1 &
srv_pid=$!
for _ in $(seq 100); do grep -q ready "$work/srv.log" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/srv.log" || { echo "aiocoap server did not start:"; cat "$work/srv.log"; exit 1; }
want=$(sha256sum < "$work/serve/blob" | cut -d' ' -f1)
aio_times=()
for i in $(seq "$RUNS"); do
  "$PY" "$PEERS/aiocoap_client.py" --context "$work/cli" --out "$work/got" "coap://127.0.0.1:$port/blob" 2> "$work/cli.log" \
    || { cat "$work/cli.log"; exit 1; }
  [ "$(sha256sum < "$work/got" | cut -d' ' -f1)" = "$want" ] || { echo "aiocoap transfer: digest mismatch"; exit 1; }
  t=$(sed -n 's/^elapsed //p' "$work/cli.log")
  echo "aiocoap<->aiocoap run $i: $t s"
  aio_times+=("$t")
done
kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
aio=$(median "${aio_times[@]}")

# --- 1b. ours <-> ours --------------------------------------------------------------------
"$BENCH" transfer --size 1048576 --runs "$RUNS" | tee "$work/ours.log"
ours=$(sed -n 's/^median_s=//p' "$work/ours.log")

echo
echo "1 MiB OSCORE block-wise GET, median of $RUNS: aiocoap<->aiocoap ${aio} s, ours ${ours} s"
awk -v a="$aio" -v o="$ours" 'BEGIN { printf "ratio (aiocoap / ours): %.1fx faster\n", a / o }'

# --- 2. 1,000 concurrent clients ------------------------------------------------------------
ulimit -n 8192 2>/dev/null || true
echo
"$BENCH" load --clients "$CLIENTS" --size "$SIZE" | tee "$work/load.log"
gp=$(sed -n 's/^goodput_MBps=//p' "$work/load.log")
mem=$(sed -n 's/^peak_rss_MiB=//p' "$work/load.log")
echo "$CLIENTS clients x $SIZE bytes: aggregate goodput ${gp} MB/s, peak memory ${mem} MiB"
