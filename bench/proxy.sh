#!/usr/bin/env bash
# Throughput and latency of hookway-proxy against nginx, with wrk.
#
# Targets (HTTP and TLS), interleaved, RUNS runs each, median reported:
#   direct   wrk -> upstream nginx (`return 200`): the rig's ceiling
#   nginx    wrk -> nginx reverse proxy (1 worker, keep-alive upstream) -> upstream
#   hookway  wrk -> hookway-proxy (empty chain) -> upstream
# On a 2-core machine the proxy under test is pinned to core 0, wrk and the upstream to core 1,
# so the proxy is the bottleneck and the figures compare.
#
# Usage: bench/proxy.sh            (DURATION=5 RUNS=3 CONNS=64 to change)
# Installs wrk and nginx with apt-get when missing. Every run is bounded (DURATION seconds).
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
BASE_PORT=${BASE_PORT:-28000}
UP_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
NGINX_TLS_PORT=$((BASE_PORT + 2))
HW_PORT=$((BASE_PORT + 3))
HW_TLS_PORT=$((BASE_PORT + 4))
HW_ADMIN_PORT=$((BASE_PORT + 5))
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  echo "installing wrk and nginx..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null
fi

echo "building hookway-proxy (release)..." >&2
(cd "$root" && cargo build --release -q -p hookway-proxy)
hookway="$root/target/release/hookway-proxy"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

nginx_conf() { # name, server blocks
  mkdir -p "$work/$1/logs"
  cat >"$work/$1/nginx.conf" <<CONF
worker_processes 1;
pid $work/$1/nginx.pid;
error_log $work/$1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1/body;
  proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fastcgi;
  uwsgi_temp_path $work/$1/uwsgi;
  scgi_temp_path $work/$1/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}

nginx_conf upstream "server { listen 127.0.0.1:$UP_PORT; location / { return 200 'ok\n'; } }"
nginx_conf proxy "
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }"

cat >"$work/snapshot.json" <<JSON
{"version": 1, "hash": "",
 "routes": [{"key": {"namespace": "bench", "name": "all"}, "hosts": [],
   "rules": [{"path_type": "Prefix", "path": "/", "methods": [], "headers": [], "query": []}],
   "priority": 0, "created": 0, "upstream": {"namespace": "bench", "name": "up"}, "chain": []}],
 "upstreams": [{"key": {"namespace": "bench", "name": "up"}, "scheme": "http", "balance": "round-robin",
   "hash_header": null, "endpoints": [{"address": "127.0.0.1", "port": $UP_PORT, "weight": 1}],
   "connect_timeout_ms": 1000, "request_timeout_ms": 5000, "retries": 0, "retry_on_status": [],
   "tls_server_name": null, "tls_insecure_skip_verify": false}],
 "certificates": [], "secrets": [], "default_chain": []}
JSON

taskset -c "$LOAD_CPU" nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -g 'daemon off;' &
pids+=($!)
taskset -c "$PROXY_CPU" nginx -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' &
pids+=($!)
taskset -c "$PROXY_CPU" "$hookway" --snapshot "$work/snapshot.json" --worker-threads 1 \
  --http-addr "127.0.0.1:$HW_PORT" --https-addr "127.0.0.1:$HW_TLS_PORT" \
  --admin-addr "127.0.0.1:$HW_ADMIN_PORT" --default-cert "$work/cert.pem" \
  --default-key "$work/key.pem" --log-level "warn,rustls=error" &
pids+=($!)

for port in $UP_PORT $NGINX_PORT $HW_PORT; do
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

to_ms() { # wrk latency (123.45us | 1.23ms | 1.01s) -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

run() { # name url -> appends "rps p50 p99" to $work/name
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s --latency "$2" 2>&1)
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errors" ] && echo "  $1: $errors" >&2
  echo "$rps $p50 $p99" >>"$work/$1"
  echo "  $1: $rps req/s p50 ${p50}ms p99 ${p99}ms" >&2
}

targets=(
  "direct|http://127.0.0.1:$UP_PORT/"
  "nginx|http://127.0.0.1:$NGINX_PORT/"
  "hookway|http://127.0.0.1:$HW_PORT/"
  "nginx-tls|https://127.0.0.1:$NGINX_TLS_PORT/"
  "hookway-tls|https://127.0.0.1:$HW_TLS_PORT/"
)
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS" >&2
  for t in "${targets[@]}"; do run "${t%%|*}" "${t#*|}"; done
done

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1" | median; }

direct=$(col direct 1)
nginx=$(col nginx 1)
nginx_tls=$(col nginx-tls 1)
echo
echo "| target | req/s | p50 ms | p99 ms | vs direct | vs nginx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for t in direct nginx hookway nginx-tls hookway-tls; do
  rps=$(col "$t" 1)
  base=$nginx
  case $t in *-tls) base=$nginx_tls ;; esac
  awk -v t="$t" -v r="$rps" -v p50="$(col "$t" 2)" -v p99="$(col "$t" 3)" -v d="$direct" -v n="$base" \
    'BEGIN { printf "| %s | %.0f | %s | %s | %.2f | %.2f |\n", t, r, p50, p99, r / d, r / n }'
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s, median of $RUNS interleaved runs; proxy on CPU $PROXY_CPU," \
  "wrk and upstream on CPU $LOAD_CPU; hookway with an empty chain (--worker-threads 1)."
