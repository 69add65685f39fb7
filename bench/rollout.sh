#!/usr/bin/env bash
# Rollout benchmark (issue 6), all on loopback, in one run:
#  1. the whole chain as real processes (key repository, update server, dispatcher, one fleet
#     process of DEVICES simulated devices); one T1 release of SIZE bytes rolled out to every
#     device in a single batch (64 pushes at a time, the dispatcher's default). Prints devices
#     per second, the total time (rollout created -> last device confirmed), the dispatcher's
#     CPU time and peak memory (VmHWM, from /proc), its CPU per second while the fleet only
#     checks in (measured for 10 s before the release), and the rollout's own CPU per device
#     (CPU during the rollout less that idle rate);
#  2. the reference: the same SIZE bytes fetched DEVICES times (REF_COUNT to override), 64 at a
#     time, over OSCORE block-wise from an aiocoap 0.4.17 server by an aiocoap client; prints
#     fetches per second and the ratio ours / aiocoap.
# A device's update is more than the fetch (verify two signatures, decrypt into the inactive
# slot, check digests, switch, self-test, confirm, report), so a ratio near or above 1 means
# the dispatcher's distribution is not the bottleneck.
# Usage: bench/rollout.sh          (env DEVICES=1000 SIZE=1048576 REF_COUNT=$DEVICES)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-1000}
SIZE=${SIZE:-1048576}
REF_COUNT=${REF_COUNT:-$DEVICES}
# aiocoap's OSCORE replay window is 32 sequence numbers wide: with many block-wise requests
# in flight on one context, blocks arrive outside the window, are refused and retried, and
# throughput collapses (64 at a time stalled for minutes). 8 at a time is its best here.
REF_CONCURRENCY=${REF_CONCURRENCY:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

bash scripts/peers/aiocoap.sh >/dev/null
cargo build --release --quiet --bin ics-suit --example rollout_bench
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

work=$(mktemp -d)
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "${SKIP_OURS:-}" ]; then
echo "== ours: rollout of $SIZE bytes to $DEVICES devices"
"$CARGO_TARGET_DIR/release/examples/rollout_bench" --exe "$CARGO_TARGET_DIR/release/ics-suit" \
  --devices "$DEVICES" --size "$SIZE" | tee "$work/ours.log"
ours_dps=$(sed -n 's/^devices_per_s=//p' "$work/ours.log")
ours_total=$(sed -n 's/^total_s=//p' "$work/ours.log")
installed=$(sed -n 's/^installed=//p' "$work/ours.log")
fi

echo
echo "== reference: aiocoap, $REF_COUNT OSCORE block-wise GETs of $SIZE bytes, $REF_CONCURRENCY at a time"
PY=.peers/aiocoap/venv/bin/python
secret=0102030405060708090a0b0c0d0e0f10 salt=9e7ca92223786340
mkdir -p "$work/srv" "$work/cli" "$work/serve"
printf '{"sender-id_hex": "01", "recipient-id_hex": "", "secret_hex": "%s", "salt_hex": "%s"}' "$secret" "$salt" > "$work/srv/settings.json"
printf '{"sender-id_hex": "", "recipient-id_hex": "01", "secret_hex": "%s", "salt_hex": "%s"}' "$secret" "$salt" > "$work/cli/settings.json"
head -c "$SIZE" /dev/urandom > "$work/serve/blob"
want=$(sha256sum < "$work/serve/blob" | cut -d' ' -f1)
port=$("$PY" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" oscore/tests/peers/aiocoap_server.py --port "$port" --context "$work/srv" --serve "$work/serve" --exit-after 7200 > "$work/srv.log" 2>&1 &
srv_pid=$!
for _ in $(seq 100); do grep -q ready "$work/srv.log" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/srv.log" || { echo "aiocoap server did not start:"; cat "$work/srv.log"; exit 1; }
"$PY" bench/peers/aiocoap_many.py --context "$work/cli" --count "$REF_COUNT" --concurrency "$REF_CONCURRENCY" \
  --sha256 "$want" "coap://127.0.0.1:$port/blob" | tee "$work/ref.log"
ref_s=$(sed -n 's/^elapsed //p' "$work/ref.log")

echo
[ -n "${SKIP_OURS:-}" ] && exit 0
echo "ours:    $installed of $DEVICES devices updated in ${ours_total} s: ${ours_dps} devices/s"
awk -v n="$REF_COUNT" -v t="$ref_s" 'BEGIN { printf "aiocoap: %d fetches in %.2f s: %.1f fetches/s\n", n, t, n / t }'
awk -v d="$ours_dps" -v n="$REF_COUNT" -v t="$ref_s" 'BEGIN { printf "ratio (ours devices/s / aiocoap fetches/s): %.2f\n", d / (n / t) }'
grep -E '^dispatcher_(cpu_s|idle_cpu_per_s|rollout_cpu_ms_per_device|peak_rss_MiB)=' "$work/ours.log" | sed 's/^/dispatcher: /'
grep -E '^fleet_(cpu_s|peak_rss_MiB|peak_rss_per_device_KiB)=' "$work/ours.log" | sed 's/^/device fleet: /'
