#!/usr/bin/env bash
# Key fetches per second and p99 latency of key-repo (GET /v1/keys/{kid} with a cached,
# verified bearer token, TLS, keep-alive) against nginx serving a static JSON file of the
# same size over TLS with the same certificate, on the same machine, in the same run.
# Prints the throughput ratio key-repo / nginx (issue 8 asks for >= 0.5).
#
# Usage: bench/key-repo.sh [DURATION_SECONDS] [CONNECTIONS]
# Needs nginx and wrk (Debian packages; installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-32}"
THREADS=2
ROUNDS="${ROUNDS:-3}"

. bench/lib.sh
bench_need_nginx_wrk

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p key-repo --quiet
BIN="$CARGO_TARGET_DIR/release/key-repo"

bench_workdir

PRODUCT=fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe/1492af14-2569-5e48-bf42-9b2d51f2ab45
"$BIN" init --dir "$WORK/repo" --json >/dev/null
CFG="$WORK/repo/key-repo.toml"
CA="$WORK/repo/tls/ca.pem"
PUB=$("$BIN" clients add --config "$CFG" --name pub --role publisher --product "$PRODUCT" --json)
DISP=$("$BIN" clients add --config "$CFG" --name disp --role dispatcher --product "$PRODUCT" --json)

KEY_REPO_LOG=warn "$BIN" serve --config "$CFG" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.err" &
PIDS+=($!)
URL=$(wait_url "$WORK/serve.out" 100)
[ -n "$URL" ] || { cat "$WORK/serve.err" >&2; exit 1; }

token() {
  local creds=$1 id secret
  id=$(echo "$creds" | json_field client_id); secret=$(echo "$creds" | json_field client_secret)
  curl -sf --cacert "$CA" -u "$id:$secret" -d grant_type=client_credentials "$URL/oauth/token" | json_field access_token
}
T_PUB=$(token "$PUB")
T_DISP=$(token "$DISP")
# A 32-byte symmetric COSE_Key {1: 4, 2: h'62656e6368', -1: 32 random bytes}.
COSE=$(python3 -c "import os,base64; print(base64.b64encode(bytes.fromhex('a301040245' + b'bench'.hex() + '205820') + os.urandom(32)).decode())")
curl -sf --cacert "$CA" -X PUT -H "authorization: Bearer $T_PUB" -H 'content-type: application/json' \
  -d "{\"product\":\"$PRODUCT\",\"cose_key\":\"$COSE\"}" "$URL/v1/keys/bench-1" >/dev/null
mkdir -p "$WORK/www/v1/keys"
curl -sf --cacert "$CA" -H "authorization: Bearer $T_DISP" "$URL/v1/keys/bench-1" > "$WORK/www/v1/keys/bench-1"
SIZE=$(wc -c < "$WORK/www/v1/keys/bench-1")
# nginx workers run unprivileged: let them reach the document root (only www is readable).
chmod 711 "$WORK"; chmod -R a+rX "$WORK/www"

# nginx: same certificate, same body, keep-alive, one worker per core.
bench_start_nginx "$WORK/repo/tls/cert.pem" "$WORK/repo/tls/key.pem" "$WORK/www" application/json
cmp -s <(curl -sf --cacert "$CA" "https://localhost:$NGINX_PORT/v1/keys/bench-1") "$WORK/www/v1/keys/bench-1" \
  || { echo "nginx does not serve the file" >&2; cat "$WORK/nginx-error.log" >&2; exit 1; }

run_wrk() { # URL [header] -> "rps p99_ms"
  local out
  if [ -n "${2:-}" ]; then
    out=$(bench_wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "$2" "$1")
  else
    out=$(bench_wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$1")
  fi
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  python3 - "$rps" "$p99" <<'PY'
import sys
rps, p99 = float(sys.argv[1]), sys.argv[2]
unit = {'us': 1e-3, 'ms': 1.0, 's': 1e3}
for u in ('us', 'ms', 's'):
    if p99.endswith(u):
        v = float(p99[:-len(u)]) * unit[u]
        break
print(f"{rps:.0f} {v:.3f}")
PY
}

echo "payload ${SIZE} bytes; ${THREADS} wrk threads, ${CONNS} connections, ${DURATION}s per run, ${ROUNDS} rounds"
echo "CPU cores: $(nproc)"
: > "$WORK/rounds"
for r in $(seq "$ROUNDS"); do
  # Alternate the two servers so background load affects both alike.
  read -r ng ngp < <(run_wrk "https://127.0.0.1:$NGINX_PORT/v1/keys/bench-1")
  read -r kr krp < <(run_wrk "$URL/v1/keys/bench-1" "Authorization: Bearer $T_DISP")
  printf 'round %s: nginx %8s req/s p99 %8s ms | key-repo %8s req/s p99 %8s ms | ratio %s\n' \
    "$r" "$ng" "$ngp" "$kr" "$krp" "$(python3 -c "print(f'{$kr/$ng:.2f}')")"
  echo "$ng $ngp $kr $krp" >> "$WORK/rounds"
done
python3 - "$WORK/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
ratios = [kr / ng for ng, _, kr, _ in rows]
med = lambda i: statistics.median(r[i] for r in rows)
print(f"median: key-repo {med(2):.0f} req/s (p99 {med(3):.2f} ms), "
      f"nginx static {med(0):.0f} req/s (p99 {med(1):.2f} ms)")
print(f"ratio key-repo/nginx throughput: median {statistics.median(ratios):.2f}, "
      f"min {min(ratios):.2f}, max {max(ratios):.2f} (target >= 0.5)")
PY
