#!/usr/bin/env bash
# Update-server benchmarks, each against a reference measured on the same machine in the
# same run:
#  1. blob download throughput (GET /v1/releases/{id}/payload, TLS 1.3, keep-alive, wrk with
#     concurrent connections) against nginx serving the identical file over TLS with the
#     same certificate; prints both and the ratio (issue 4 asks for >= 0.8);
#  2. `publisher publish` of a 1 GiB image through real key-repo and update-server
#     processes: the update server's peak resident memory (VmHWM) during the upload
#     (issue 4 asks for < 128 MiB) and the upload time.
#
# Usage: bench/update-server.sh [DURATION_SECONDS] [CONNECTIONS]
# Env: BLOB_MIB (download test blob, default 8), UPLOAD_MIB (default 1024), ROUNDS (3).
# Needs nginx and wrk (Debian packages; installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-16}"
THREADS=2
ROUNDS="${ROUNDS:-3}"
BLOB_MIB="${BLOB_MIB:-8}"
UPLOAD_MIB="${UPLOAD_MIB:-1024}"

. bench/lib.sh
bench_need_nginx_wrk

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p key-repo -p update-server -p publisher --quiet
KR="$CARGO_TARGET_DIR/release/key-repo"
US="$CARGO_TARGET_DIR/release/update-server"
PB="$CARGO_TARGET_DIR/release/publisher"

bench_workdir

VENDOR=fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe
CLASS=1492af14-2569-5e48-bf42-9b2d51f2ab45

# Key repository with a publisher client.
"$KR" init --dir "$WORK/kr" --json >/dev/null
PUBC=$("$KR" clients add --config "$WORK/kr/key-repo.toml" --name pub --role publisher --product "$VENDOR/$CLASS" --json)
KEY_REPO_LOG=warn "$KR" serve --config "$WORK/kr/key-repo.toml" --listen 127.0.0.1:0 > "$WORK/kr.out" 2> "$WORK/kr.err" &
PIDS+=($!)
KR_URL=$(wait_url "$WORK/kr.out")
[ -n "$KR_URL" ] || { cat "$WORK/kr.err" >&2; exit 1; }

# Publisher key; update server trusting it and the key repository's tokens.
"$PB" keygen --out "$WORK/keys" --kid bench-key >/dev/null
"$US" init --dir "$WORK/us" >/dev/null
"$US" publishers add --config "$WORK/us/update-server.toml" --kid bench-key \
  --public-key "$WORK/keys/signing-key.pub.pem" --vendor-id "$VENDOR" >/dev/null
ISS=$(python3 -c "import tomllib; print(tomllib.load(open('$WORK/kr/key-repo.toml','rb'))['issuer'])")
AUD=$(python3 -c "import tomllib; print(tomllib.load(open('$WORK/kr/key-repo.toml','rb'))['audience'])")
cat >> "$WORK/us/update-server.toml" <<TOML

[[auth.issuers]]
issuer = "$ISS"
audience = "$AUD"
jwks_url = "$KR_URL/.well-known/jwks.json"
ca_file = "$WORK/kr/tls/ca.pem"
TOML
UPDATE_SERVER_LOG=warn "$US" serve --config "$WORK/us/update-server.toml" --listen 127.0.0.1:0 > "$WORK/us.out" 2> "$WORK/us.err" &
US_PID=$!
PIDS+=($US_PID)
US_URL=$(wait_url "$WORK/us.out")
[ -n "$US_URL" ] || { cat "$WORK/us.err" >&2; exit 1; }
CA="$WORK/us/tls/ca.pem"

echo "$PUBC" | json_field client_secret > "$WORK/secret"
chmod 600 "$WORK/secret"
cat > "$WORK/publisher.toml" <<TOML
[key_repo]
url = "$KR_URL"
ca_file = "$WORK/kr/tls/ca.pem"
client_id = "$(echo "$PUBC" | json_field client_id)"
client_secret_file = "$WORK/secret"

[update_server]
url = "$US_URL"
ca_file = "$CA"
TOML

publish() { # image seq out -> release id
  "$PB" publish --config "$WORK/publisher.toml" --signing-key "$WORK/keys/signing-key.pem" \
    --image "$1" --vendor-id "$VENDOR" --class-id "$CLASS" --sequence "$2" --version "1.0.$2" \
    --type T2 --out "$3" --json | json_field release_id
}
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$US_PID/status"; }

# --- 2. 1 GiB upload: peak memory of the update server -------------------------------
head -c $((UPLOAD_MIB << 20)) /dev/zero > "$WORK/big.img"
BEFORE=$(hwm_kib)
T0=$(date +%s.%N)
BIG_ID=$(publish "$WORK/big.img" 1 "$WORK/rel-big")
T1=$(date +%s.%N)
AFTER=$(hwm_kib)
rm -f "$WORK/big.img" "$WORK/rel-big/payload.enc"
# The big blob is not needed any more: free the disk before the download test.
python3 - "$BEFORE" "$AFTER" "$T0" "$T1" "$UPLOAD_MIB" "$BIG_ID" <<'PY'
import sys
b, a, t0, t1, mib, rid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
print(f"upload: publish of a {mib} MiB image (release {rid[:16]}…) took {t1-t0:.1f} s "
      f"(encrypt + key store + upload + server-side verify)")
print(f"upload: update-server peak RSS {a/1024:.1f} MiB (before the upload {b/1024:.1f} MiB; "
      f"target < 128 MiB) -> {'PASS' if a < 128*1024 else 'FAIL'}")
PY

# --- 1. download throughput vs nginx -------------------------------------------------
head -c $((BLOB_MIB << 20)) /dev/urandom > "$WORK/small.img"
ID=$(publish "$WORK/small.img" 2 "$WORK/rel-small")
mkdir -p "$WORK/www"
cp "$WORK/rel-small/payload.enc" "$WORK/www/blob"
chmod 711 "$WORK"; chmod -R a+rX "$WORK/www"
bench_start_nginx "$WORK/us/tls/cert.pem" "$WORK/us/tls/key.pem" "$WORK/www" application/octet-stream \
  "  sendfile on;
  # Larger read buffers than the default (2 32k) so that nginx is a strong reference.
  output_buffers 4 256k;"
cmp -s <(curl -sf --cacert "$CA" "https://localhost:$NGINX_PORT/blob") "$WORK/www/blob" \
  || { echo "nginx does not serve the blob" >&2; cat "$WORK/nginx-error.log" >&2; exit 1; }
cmp -s <(curl -sf --cacert "$CA" "$US_URL/v1/releases/$ID/payload") "$WORK/www/blob" \
  || { echo "update-server does not serve the blob" >&2; exit 1; }

run_wrk() { # URL -> bytes/s
  bench_wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$1" | awk '/Transfer\/sec/ {print $2}' | python3 -c '
import sys
v = sys.stdin.read().strip()
mult = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
for u in ("GB", "MB", "KB", "B"):
    if v.endswith(u):
        print(int(float(v[:-len(u)]) * mult[u])); break
'
}

echo "download: ${BLOB_MIB} MiB blob; ${THREADS} wrk threads, ${CONNS} connections, ${DURATION}s per run, ${ROUNDS} rounds; $(nproc) cores"
: > "$WORK/rounds"
for r in $(seq "$ROUNDS"); do
  ng=$(run_wrk "https://127.0.0.1:$NGINX_PORT/blob")
  us=$(run_wrk "$US_URL/v1/releases/$ID/payload")
  printf 'round %s: nginx %7.1f MiB/s | update-server %7.1f MiB/s | ratio %.2f\n' "$r" \
    "$(python3 -c "print($ng/1048576)")" "$(python3 -c "print($us/1048576)")" "$(python3 -c "print($us/$ng)")"
  echo "$ng $us" >> "$WORK/rounds"
done
python3 - "$WORK/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
ratios = [us / ng for ng, us in rows]
print(f"download: median nginx {statistics.median(r[0] for r in rows)/2**20:.1f} MiB/s, "
      f"update-server {statistics.median(r[1] for r in rows)/2**20:.1f} MiB/s; "
      f"ratio update-server/nginx median {statistics.median(ratios):.2f} "
      f"(min {min(ratios):.2f}, max {max(ratios):.2f}; target >= 0.8)")
PY
