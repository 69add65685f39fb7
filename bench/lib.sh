# Shell helpers shared by the load scripts that measure a service against an nginx
# reference in the same run (bench/key-repo.sh, bench/update-server.sh). Sourced, not run:
#   . "$(dirname "$0")/lib.sh"
# Every helper keeps the exact behaviour the scripts had when each carried its own copy.

# Installs nginx and wrk (Debian packages) when either is missing; sets NGINX.
bench_need_nginx_wrk() {
  if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "installing nginx and wrk (Debian packages)..." >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx wrk >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# A scratch directory in WORK; the processes whose ids are added to PIDS, and the nginx
# started by bench_start_nginx, are stopped and WORK removed when the script exits.
bench_workdir() {
  WORK=$(mktemp -d)
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

wait_url() { # file [tries] -> URL: the address a service prints as `listening on URL`
  for _ in $(seq "${2:-300}"); do grep -q '^listening on ' "$1" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^listening on //p' "$1"
}

# Starts nginx over TLS 1.3 on a free loopback port (NGINX_PORT), serving ROOT with the
# given certificate and key; EXTRA lines go into the http block before the server.
bench_start_nginx() { # CERT KEY ROOT DEFAULT_TYPE [EXTRA]
  local extra=""
  [ -z "${5:-}" ] || extra="$5"$'\n'
  NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/nginx-tmp"
  cat > "$WORK/nginx.conf" <<NGX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  keepalive_requests 1000000;
${extra}  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $1;
    ssl_certificate_key $2;
    ssl_protocols TLSv1.3;
    root $3;
    default_type $4;
  }
}
NGX
  "$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
  sleep 0.3
}

# Runs wrk with the given arguments, logs its output to $WORK/wrk.log and prints it; fails
# when any response was not 2xx/3xx.
bench_wrk() { # wrk arguments...
  local out
  out=$(wrk "$@")
  echo "$out" >> "$WORK/wrk.log"
  local non2xx; non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
  [ -z "$non2xx" ] || { echo "error responses during the run: $non2xx" >&2; echo "$out" >&2; exit 1; }
  echo "$out"
}
