#!/usr/bin/env bash
# 1,000 simulated devices in ONE process receive a 256 KiB update each over CoAP + OSCORE
# (Block1) from a load generator playing the dispatcher; prints memory per device and
# installs per second. Then starts 10,000 devices to show they fit.
# Usage: bench/fleet.sh [COUNT] [SIZE_KIB] [CONCURRENCY]     (defaults 1000 256 64)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
size=${2:-256}
conc=${3:-64}
# One UDP socket per device, plus the load generator's.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p device-sim --bin device-sim --example fleet_bench
target/release/examples/fleet_bench "$count" "$size" "$conc"
echo "--- starting 10000 devices (no updates), to show they fit"
target/release/examples/fleet_bench 10000 "$size" "$conc" --start-only
