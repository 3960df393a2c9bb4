#!/usr/bin/env bash
# Throughput and latency of hookway-proxy against nginx, with wrk.
#
# Targets, interleaved (every other round in reverse order), RUNS runs each, median reported:
#   direct           wrk -> upstream nginx (`return 200`): the rig's ceiling
#   nginx            wrk -> nginx reverse proxy (1 worker, keep-alive upstream) -> upstream
#   haproxy          wrk -> HAProxy in HTTP mode (1 thread, keep-alive, http-reuse always) -> upstream
#   tcp-floor        wrk -> HAProxy in TCP mode: a byte forwarder, one upstream connection per
#                    client connection, no HTTP parsing at all. No HTTP proxy can cost less than
#                    this per request: it is the floor of what the kernel's TCP work costs on the
#                    proxy's core (two sockets, one read and one write on each, per request)
#   hookway          wrk -> hookway-proxy, empty chain -> upstream
#   hookway-hdr1     one `headers` plugin (sets a request and a response header)
#   hookway-hdr3     three `headers` plugins (a header-only chain)
#   hookway-wasm     one `wasm` filter doing what hookway-hdr1 does (a request and a response header;
#                    bench/wasm/set_headers.wasm, from proxy/tests/wasm/set_headers.wat)
#   hookway-extproc  one `ext_proc` plugin, headers only: the request headers go to an ext_proc
#                    server that answers CONTINUE (one gRPC round trip per request; response
#                    headers SKIP); the server (bench/ext-server, one thread) runs on the load CPU
#   hookway-extproc2 the same with the response headers sent too (two round trips per request)
#   hookway-extauthz one `ext_authz` plugin against a server that allows everything
#                    (the Envoy targets wait up to 1 s for an answer instead of 200 ms, so that a
#                    loaded machine or callgrind does not turn a slow answer into a 500)
#   hookway-rewrite  one `proxy_rewrite` plugin (Host and one request header)
#   hookway-acl      ip_restriction (white 127.0.0.0/8) + auth (apikey from a Secret, sent by wrk)
#                    + rate_limiting (local, a limit never reached)
#   hookway-log      access_log, JSON lines to a file (the file is emptied after each run)
#   hookway-hm2      a hookway Route with two `headers` plugins (one sets a request header, the
#                    other a response header) to a core Service (Service.spec.backends)
#   gateway-hm2      the same as a Gateway API HTTPRoute with RequestHeaderModifier and
#                    ResponseHeaderModifier filters to the same core Service: lowered onto the
#                    same plugins, it must cost no more per request (issue 16)
#   *-tls            the same over TLS 1.3 (nginx, hookway empty chain, hookway-hdr3)
#   nginx-json       nginx proxying a 64 KiB JSON file, no compression
#   hookway-json     hookway proxying the same file, empty chain
#   nginx-gzip       nginx proxying the file with `gzip on; gzip_comp_level 6` (Accept-Encoding: gzip)
#   hookway-gzip     hookway with `compression` (gzip only, level 6) on the same file
# SYSCALLS=1 adds system calls and TCP segments per request of the proxies (perf's syscall
# tracepoints, /proc/net/snmp): the kernel work each proxy asks for, which no user-space speed-up
# removes.
# INSTR=1 adds instructions per request of every plain-HTTP hookway target, counted by callgrind
# (repeatable to the instruction, so per-plugin costs below the noise of req/s show up);
# INSTR_KEEP=dir keeps each target's callgrind profile there for callgrind_annotate.
# On a 2-core machine the proxy under test is pinned to core 0, wrk and the upstream to core 1,
# so the proxy is the bottleneck and the figures compare. Every hookway target is a route of one
# hookway-proxy process in standalone mode (`--manifests DIR`, written below), so the chains
# differ and nothing else does.
#
# Usage: bench/proxy.sh            (DURATION=5 RUNS=3 CONNS=64 to change; ONLY="hookway hookway-hdr3"
#                                   runs a subset; HOOKWAY_BIN=path skips the build)
# Installs wrk, nginx and haproxy with apt-get when missing. Every run is bounded (DURATION seconds).
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
HA_PORT=$((BASE_PORT + 8))
HA_TCP_PORT=$((BASE_PORT + 9))
EXT_PROC_PORT=$((BASE_PORT + 10))
EXT_AUTHZ_PORT=$((BASE_PORT + 11))
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
API_KEY=bench-key-0123456789

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work" # nginx workers (nobody) read the JSON file below it
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  echo "installing wrk, nginx and haproxy..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx haproxy >/dev/null
fi

hookway=${HOOKWAY_BIN:-}
if [ -z "$hookway" ]; then
  echo "building hookway-proxy (profile dist: fat LTO, one codegen unit, as shipped)..." >&2
  (cd "$root" && cargo build --profile dist -q -p hookway-proxy)
  hookway="$root/target/dist/hookway-proxy"
fi
# The Envoy targets' gRPC servers (bench/ext-server), only where the binary has `envoy-ext`.
# Built together with hookway-proxy so that cargo resolves the same features and reuses every
# compiled dependency (EXT_PROFILE: release with HOOKWAY_BIN, else dist).
# (The catalogue is read whole first: `grep -q` in a pipe would stop reading at the first match
# and the proxy fail on a broken pipe.)
catalogue=$("$hookway" --print-catalogue)
has_ext=0
if grep -q '"ext_proc"' <<<"$catalogue"; then has_ext=1; fi
if [ "$has_ext" = 1 ]; then
  ext_profile=${EXT_PROFILE:-$([ -n "${HOOKWAY_BIN:-}" ] && echo release || echo dist)}
  echo "building the bench ext_proc/ext_authz server (profile $ext_profile)..." >&2
  (cd "$root" && cargo build --profile "$ext_profile" --locked -q -p hookway-proxy -p hookway-bench-ext)
  ext_server="$root/target/$ext_profile/hookway-bench-ext"
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The 64 KiB JSON document (an array of small user records, like an API listing).
mkdir -p "$work/www"
awk 'BEGIN {
  s = "["
  for (i = 0; length(s) < 65536 - 160; i++)
    s = s sprintf("{\"id\":%d,\"name\":\"user-%d\",\"email\":\"u%d@example.com\",\"score\":%d,\"active\":%s},",
                  i, (i * 7919) % 100000, i, (i * 31) % 1000, (i % 3 == 0) ? "true" : "false")
  printf "%s{}]\n", s
}' >"$work/www/data.json"

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

# Upstream: `ok` for every path, the JSON document for every path ending in .json.
nginx_conf upstream "server {
    listen 127.0.0.1:$UP_PORT;
    location / { return 200 'ok\n'; }
    location ~ \.json\$ { root $work/www; default_type application/json; try_files /data.json =404; }
  }"
proxy_block="proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffers 16 8k;"
nginx_conf proxy "
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  ssl_certificate $work/cert.pem;
  ssl_certificate_key $work/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    location / { $proxy_block }
    location /gzip/ { $proxy_block
      gzip on; gzip_comp_level 6; gzip_types application/json; }
  }"

# HAProxy: the same reverse proxy in HTTP mode, and a plain TCP forwarder (the floor).
cat >"$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend http
  mode http
  option forwardfor
  bind 127.0.0.1:$HA_PORT
  default_backend up
backend up
  mode http
  http-reuse always
  server up 127.0.0.1:$UP_PORT
listen tcp-floor
  mode tcp
  bind 127.0.0.1:$HA_TCP_PORT
  server up 127.0.0.1:$UP_PORT
CFG

# hookway: one route per chain, all to the same upstream.
mkdir -p "$work/manifests"
wasm_sha=$(sha256sum "$root/bench/wasm/set_headers.wasm" | cut -d" " -f1)
cat >"$work/manifests/bench.yaml" <<YAML
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: up, namespace: bench}
spec:
  nodes: [{address: "127.0.0.1", port: $UP_PORT}]
---
apiVersion: v1
kind: Secret
metadata: {name: bench-keys, namespace: bench}
stringData: {bench: "$API_KEY"}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hdr-a, namespace: bench}
spec:
  plugin: headers
  status: enable
  order: 100
  config: {request: {set: {x-env: bench}}, response: {set: {x-served-by: hookway}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hdr-b, namespace: bench}
spec:
  plugin: headers
  status: enable
  order: 110
  config: {request: {add: {x-forwarded-by: hookway}, remove: [x-debug]}, response: {remove: [x-powered-by]}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hdr-c, namespace: bench}
spec:
  plugin: headers
  status: enable
  order: 120
  config: {request: {rename: {x-legacy-user: x-user}}, response: {set: {strict-transport-security: "max-age=31536000"}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: rewrite, namespace: bench}
spec:
  plugin: proxy_rewrite
  status: enable
  order: 100
  config: {host: upstream.bench, headers: {x-env: bench}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: ip, namespace: bench}
spec:
  plugin: ip_restriction
  status: enable
  order: 10
  config: {ip_list_type: white, ip_white_list: ["127.0.0.0/8"]}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: keys, namespace: bench}
spec:
  plugin: auth
  status: enable
  order: 20
  config: {credentials: [{type: apikey, secret: bench-keys}]}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: limit, namespace: bench}
spec:
  plugin: rate_limiting
  status: enable
  order: 30
  config: {second: 1000000000, key: ip, policy: local}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: log, namespace: bench}
spec:
  plugin: access_log
  status: enable
  order: 1
  config: {format: json, output: file, path: "$work/access.log"}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: gzip6, namespace: bench}
spec:
  plugin: compression
  status: enable
  order: 5
  config: {algorithms: [gzip], gzip_level: 6}
YAML
# The wasm target only where the binary has the `wasm` feature (a --no-default-features build
# has not).
has_wasm=0
if grep -q '"wasm"' <<<"$catalogue"; then has_wasm=1; fi
if [ "$has_wasm" = 1 ]; then
  cat >>"$work/manifests/bench.yaml" <<YAML
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: wasm-hdr, namespace: bench}
spec:
  plugin: wasm
  status: enable
  order: 100
  config: {file: "$root/bench/wasm/set_headers.wasm", sha256: $wasm_sha}
YAML
fi
# The Envoy plugins, against bench/ext-server through hookway Services (h2c, no grant needed).
if [ "$has_ext" = 1 ]; then
  cat >>"$work/manifests/bench.yaml" <<YAML
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: extproc, namespace: bench}
spec:
  nodes: [{address: "127.0.0.1", port: $EXT_PROC_PORT}]
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: extauthz, namespace: bench}
spec:
  nodes: [{address: "127.0.0.1", port: $EXT_AUTHZ_PORT}]
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: extproc-req, namespace: bench}
spec:
  plugin: ext_proc
  status: enable
  order: 100
  config: {target: {service: extproc}, message_timeout: 1s, processing_mode: {request_header_mode: SEND, response_header_mode: SKIP}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: extproc-both, namespace: bench}
spec:
  plugin: ext_proc
  status: enable
  order: 100
  config: {target: {service: extproc}, message_timeout: 1s, processing_mode: {request_header_mode: SEND, response_header_mode: SEND}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: extauthz-allow, namespace: bench}
spec:
  plugin: ext_authz
  status: enable
  order: 100
  config: {target: {service: extauthz}, timeout: 1s}
YAML
fi
# The Gateway API pair: the same core Service and EndpointSlice behind both.
cat >>"$work/manifests/bench.yaml" <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: core-up, namespace: bench}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: core-up-1, namespace: bench, labels: {kubernetes.io/service-name: core-up}}
addressType: IPv4
ports: [{name: http, port: $UP_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: core, namespace: bench}
spec: {backends: [{name: core-up, port: 80}]}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hm-req, namespace: bench}
spec: {plugin: headers, status: enable, config: {request: {set: {x-env: bench}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: hm-resp, namespace: bench}
spec: {plugin: headers, status: enable, config: {response: {set: {x-served-by: hookway}}}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: hm2, namespace: bench}
spec: {rules: [{path: {type: Prefix, value: /hm2/}}], service: core, plugins: {hm-req: {}, hm-resp: {}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: hookway}
spec: {controllerName: hookway.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: bench}
spec:
  gatewayClassName: hookway
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw-hm2, namespace: bench}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /gw-hm2/}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-env, value: bench}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by, value: hookway}]}
    backendRefs: [{name: core-up, port: 80}]
YAML
route() { # name, path prefix, plugin aliases (space-separated)
  local refs="{}"
  if [ -n "$3" ]; then refs="{$(printf '%s: {}, ' $3 | sed 's/, $//')}"; fi
  cat >>"$work/manifests/bench.yaml" <<YAML
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: $1, namespace: bench}
spec: {rules: [{path: {type: Prefix, value: $2}}], service: up, plugins: $refs}
YAML
}
route empty /empty/ ""
route hdr1 /hdr1/ "hdr-a"
route hdr3 /hdr3/ "hdr-a hdr-b hdr-c"
if [ "$has_wasm" = 1 ]; then route wasm /wasm/ "wasm-hdr"; fi
if [ "$has_ext" = 1 ]; then
  route extproc /extproc/ "extproc-req"
  route extproc2 /extproc2/ "extproc-both"
  route extauthz /extauthz/ "extauthz-allow"
fi
route rewrite /rewrite/ "rewrite"
route acl /acl/ "ip keys limit"
route log /log/ "log"
route json /json/ ""
route gzip /gzip/ "gzip6"
"$hookway" --manifests "$work/manifests" --check >&2

taskset -c "$LOAD_CPU" nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -g 'daemon off;' &
pids+=($!)
upstream_master=$!
if [ "$has_ext" = 1 ]; then
  taskset -c "$LOAD_CPU" "$ext_server" "127.0.0.1:$EXT_PROC_PORT" "127.0.0.1:$EXT_AUTHZ_PORT" &
  pids+=($!)
fi
taskset -c "$PROXY_CPU" nginx -p "$work/proxy" -c "$work/proxy/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_master=$!
taskset -c "$PROXY_CPU" "$hookway" --manifests "$work/manifests" --worker-threads 1 \
  --http-addr "127.0.0.1:$HW_PORT" --https-addr "127.0.0.1:$HW_TLS_PORT" \
  --admin-addr "127.0.0.1:$HW_ADMIN_PORT" --default-cert "$work/cert.pem" \
  --default-key "$work/key.pem" --log-level "warn,rustls=error" &
pids+=($!)
hookway_pid=$!
taskset -c "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
pids+=($!)
haproxy_pid=$!

for url in "http://127.0.0.1:$UP_PORT/" "http://127.0.0.1:$NGINX_PORT/" "http://127.0.0.1:$HW_PORT/empty/" \
  "http://127.0.0.1:$HA_PORT/" "http://127.0.0.1:$HA_TCP_PORT/"; do
  for _ in $(seq 50); do
    curl -fsS "$url" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# CPU time of the process serving a target, in clock ticks (user + system, all threads): CPU
# per request does not depend on what else the machine runs, unlike req/s.
upstream_worker=$(pgrep -P "$upstream_master" | head -1)
nginx_worker=$(pgrep -P "$nginx_master" | head -1)
ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
server_pid() {
  case "$1" in
  direct) echo "$upstream_worker" ;;
  nginx*) echo "$nginx_worker" ;;
  haproxy | tcp-floor) echo "$haproxy_pid" ;;
  *) echo "$hookway_pid" ;;
  esac
}

H="http://127.0.0.1"
S="https://127.0.0.1"
GZ="Accept-Encoding: gzip"
AUTH="Authorization: $API_KEY"
# name | url | wrk header | baseline for "vs nginx" | baseline for "vs empty chain"
targets=(
  "direct|$H:$UP_PORT/||direct|"
  "nginx|$H:$NGINX_PORT/||nginx|"
  "haproxy|$H:$HA_PORT/||nginx|"
  "tcp-floor|$H:$HA_TCP_PORT/||nginx|"
  "hookway|$H:$HW_PORT/empty/||nginx|hookway"
  "hookway-hdr1|$H:$HW_PORT/hdr1/||nginx|hookway"
  "hookway-hdr3|$H:$HW_PORT/hdr3/||nginx|hookway"
  "hookway-wasm|$H:$HW_PORT/wasm/||nginx|hookway"
  "hookway-extproc|$H:$HW_PORT/extproc/||nginx|hookway"
  "hookway-extproc2|$H:$HW_PORT/extproc2/||nginx|hookway"
  "hookway-extauthz|$H:$HW_PORT/extauthz/||nginx|hookway"
  "hookway-rewrite|$H:$HW_PORT/rewrite/||nginx|hookway"
  "hookway-acl|$H:$HW_PORT/acl/|$AUTH|nginx|hookway"
  "hookway-log|$H:$HW_PORT/log/||nginx|hookway"
  "hookway-hm2|$H:$HW_PORT/hm2/||nginx|hookway"
  "gateway-hm2|$H:$HW_PORT/gw-hm2/||nginx|hookway-hm2"
  "nginx-tls|$S:$NGINX_TLS_PORT/||nginx-tls|"
  "hookway-tls|$S:$HW_TLS_PORT/empty/||nginx-tls|hookway-tls"
  "hookway-hdr3-tls|$S:$HW_TLS_PORT/hdr3/||nginx-tls|hookway-tls"
  "nginx-json|$H:$NGINX_PORT/json/data.json||nginx-json|"
  "hookway-json|$H:$HW_PORT/json/data.json||nginx-json|hookway-json"
  "nginx-gzip|$H:$NGINX_PORT/gzip/data.json|$GZ|nginx-gzip|"
  "hookway-gzip|$H:$HW_PORT/gzip/data.json|$GZ|nginx-gzip|hookway-json"
)
# A --no-default-features binary: no wasm target, no Envoy targets.
kept=()
for t in "${targets[@]}"; do
  [[ "$has_wasm" = 0 && "$t" == hookway-wasm\|* ]] && continue
  [[ "$has_ext" = 0 && "$t" == hookway-ext* ]] && continue
  kept+=("$t")
done
targets=("${kept[@]}")
field() { IFS='|' read -r -a f <<<"$1"; echo "${f[$2]:-}"; }
selected() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# Sanity: every target answers 200 (a 401 or 404 would be counted as throughput otherwise).
echo "checks:" >&2
for t in "${targets[@]}"; do
  name=$(field "$t" 0) url=$(field "$t" 1) header=$(field "$t" 2)
  out=$(curl -sk -o "$work/body" -D "$work/head" -w '%{http_code} %{size_download}' \
    ${header:+-H "$header"} "$url")
  enc=$(awk -F': *' 'tolower($1) == "content-encoding" {print $2}' "$work/head" | tr -d '\r')
  echo "  $name: status/bytes $out ${enc:+($enc)}" >&2
  [ "${out%% *}" = 200 ] || { echo "$name does not answer 200" >&2; exit 1; }
done
for _ in $(seq 30); do [ -s "$work/access.log" ] && break; sleep 0.1; done
[ -s "$work/access.log" ] || { echo "access_log wrote nothing" >&2; exit 1; }
for t in nginx-gzip hookway-gzip; do
  url=$(field "$(printf '%s\n' "${targets[@]}" | grep "^$t|")" 1)
  curl -s -H "$GZ" "$url" | gzip -d | cmp -s - "$work/www/data.json" ||
    { echo "$t: the gzip body does not decode to the file" >&2; exit 1; }
done

to_ms() { # wrk latency (123.45us | 1.23ms | 1.01s) -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

log_requests=0
log_lines=0
run() { # name url [header] -> appends "rps p50 p99 cpu-us-per-request" to $work/name
  local out pid before after requests cpu_us sys_us user_before user_pct
  pid=$(server_pid "$1")
  before=$(cpu_ticks "$pid")
  user_before=$(user_ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s --latency \
    ${3:+-H "$3"} "$2" 2>&1)
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  after=$(cpu_ticks "$pid")
  user_pct=$(awk -v u=$(($(user_ticks "$pid") - user_before)) -v t=$((after - before)) \
    'BEGIN { printf "%d", (t > 0 ? u * 100 / t : 0) }')
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v n="$requests" \
    'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
  sys_us=$(awk -v t=$((after - before - $(user_ticks "$pid") + user_before)) -v hz="$ticks_per_s" \
    -v n="$requests" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errors" ] && echo "  $1: $errors" >&2
  echo "$rps $p50 $p99 $cpu_us $sys_us" >>"$work/$1"
  echo "  $1: $rps req/s p50 ${p50}ms p99 ${p99}ms cpu ${cpu_us}us/req (kernel ${sys_us}, user ${user_pct}%)" >&2
  if [ "$1" = hookway-log ]; then # lines written vs requests completed, then empty the file
    sleep 0.5
    log_requests=$((log_requests + $(awk '/requests in/ {print $1}' <<<"$out")))
    log_lines=$((log_lines + $(wc -l <"$work/access.log")))
    : >"$work/access.log"
  fi
}

: >"$work/access.log"
# Every other round runs the targets in reverse order, so that a target's place in the round
# (what ran just before it, how long the round has been going) does not favour it.
reversed=()
for ((i = ${#targets[@]} - 1; i >= 0; i--)); do reversed+=("${targets[i]}"); done
for r in $(seq "$RUNS"); do
  echo "run $r/$RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  order=("${targets[@]}")
  [ $((r % 2)) = 0 ] && order=("${reversed[@]}")
  for t in "${order[@]}"; do
    selected "$(field "$t" 0)" || continue
    run "$(field "$t" 0)" "$(field "$t" 1)" "$(field "$t" 2)"
  done
done

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
col() { [ -s "$work/$1" ] && awk -v c="$2" '{print $c}' "$work/$1" | median; }

echo
echo "| target | req/s | p50 ms | p99 ms | vs direct | vs nginx | vs empty chain | CPU µs/req | of it kernel |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
direct=$(col direct 1 || echo 0)
for t in "${targets[@]}"; do
  name=$(field "$t" 0) nginx_base=$(field "$t" 3) empty_base=$(field "$t" 4)
  rps=$(col "$name" 1) || continue
  awk -v t="$name" -v r="$rps" -v p50="$(col "$name" 2)" -v p99="$(col "$name" 3)" \
    -v d="$direct" -v n="$(col "$nginx_base" 1 || echo 0)" \
    -v e="$( [ -n "$empty_base" ] && col "$empty_base" 1 || echo 0)" -v cpu="$(col "$name" 4)" -v sys="$(col "$name" 5)" \
    'function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "" }
     BEGIN { printf "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", t, r, p50, p99,
             (t ~ /json|gzip/) ? "" : ratio(r, d), ratio(r, n), ratio(r, e), cpu, sys }'
done
echo
echo "wrk -t1 -c$CONNS -d${DURATION}s, median of $RUNS interleaved runs; proxy on CPU $PROXY_CPU," \
  "wrk and upstream on CPU $LOAD_CPU; hookway --worker-threads 1, standalone (--manifests)." \
  "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
if [ "$log_requests" -gt 0 ]; then
  dropped=$(curl -s "http://127.0.0.1:$HW_ADMIN_PORT/metrics" |
    awk '$1 == "hookway_access_log_dropped_lines_total" {print $2}')
  echo "access_log: $log_lines lines written for $log_requests requests wrk completed" \
    "(requests in flight when wrk stops are logged too); dropped lines: ${dropped:-?}."
fi

# System calls and TCP segments per request (SYSCALLS=1), in a separate wrk run per proxy so the
# tracing does not touch the figures above. Segments count the whole loopback (both hops).
if [ "${SYSCALLS:-0}" = 1 ]; then
  if ! perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
    echo "SYSCALLS=1: perf's syscall tracepoints are not available here; skipped" >&2
  else
    echo
    echo "| target | system calls/request | of them read/recv | write/send | epoll_wait | TCP segments/request |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for t in "${targets[@]}"; do
      name=$(field "$t" 0) url=$(field "$t" 1) header=$(field "$t" 2)
      [[ "$name" =~ ^(nginx|haproxy|tcp-floor|hookway|hookway-hdr3|nginx-tls|hookway-tls)$ ]] || continue
      selected "$name" || continue
      segs_before=$(awk '/^Tcp:/ && $2 ~ /[0-9]/ {print $12}' /proc/net/snmp)
      perf stat -x, -e 'syscalls:sys_enter_*' -p "$(server_pid "$name")" -o "$work/perf.$name" \
        -- sleep "$DURATION" >/dev/null 2>&1 &
      perf_pid=$!
      out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" ${header:+-H "$header"} "$url" 2>&1)
      wait "$perf_pid" || true
      segs=$(($(awk '/^Tcp:/ && $2 ~ /[0-9]/ {print $12}' /proc/net/snmp) - segs_before))
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      awk -F, -v t="$name" -v n="$n" -v segs="$segs" '
        $1 + 0 > 0 { all += $1
          if ($3 ~ /_(read|readv|recvfrom|recvmsg)$/) rd += $1
          if ($3 ~ /_(write|writev|sendto|sendmsg)$/) wr += $1
          if ($3 ~ /_epoll_wait$|_epoll_pwait/) ep += $1 }
        END { printf "| %s | %.2f | %.2f | %.2f | %.3f | %.2f |\n", t, all / n, rd / n, wr / n, ep / n, segs / n }' \
        "$work/perf.$name"
    done
    echo
    echo "perf stat on the serving process during ${DURATION}s of wrk; a request takes 2 TCP segments per hop (request, answer), ACKs ride along."
  fi
fi

# Instructions per request (INSTR=1): a second hookway-proxy under callgrind serves the same
# manifests; for each plain-HTTP hookway target the counters are zeroed, INSTR_REQUESTS requests
# are sent on one keep-alive connection, and the counters are dumped. Unlike req/s on a shared
# VM, instruction counts repeat exactly, so small per-plugin costs show up.
if [ "${INSTR:-0}" = 1 ]; then
  INSTR_REQUESTS=${INSTR_REQUESTS:-2000}
  cg_port=$((BASE_PORT + 6))
  # Uncompressed names: every kept dump is readable by callgrind_annotate on its own.
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no \
    --compress-strings=no --compress-pos=no \
    "$hookway" --manifests "$work/manifests" --worker-threads 1 \
    --http-addr "127.0.0.1:$cg_port" --admin-addr "127.0.0.1:$((BASE_PORT + 7))" \
    --log-level warn 2>"$work/cg.log" &
  cg_pid=$!
  pids+=("$cg_pid")
  for _ in $(seq 300); do
    curl -fsS "$H:$cg_port/empty/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo
  echo "| target | instructions/request | vs empty chain |"
  echo "| --- | ---: | ---: |"
  base_ir=""
  for t in "${targets[@]}"; do
    name=$(field "$t" 0) url=$(field "$t" 1) header=$(field "$t" 2)
    [[ "$name" =~ ^(hookway|gateway) && "$url" == "$H:$HW_PORT/"* ]] || continue
    selected "$name" || continue
    url="$H:$cg_port/${url#"$H:$HW_PORT/"}"
    urls=()
    for _ in $(seq "$INSTR_REQUESTS"); do urls+=("$url"); done
    curl -s ${header:+-H "$header"} "${urls[@]:0:100}" >/dev/null # warm-up
    code=$(curl -s -o /dev/null -w '%{http_code}' ${header:+-H "$header"} "$url")
    [ "$code" = 200 ] || { echo "$name under callgrind answers $code, not 200" >&2; exit 1; }
    callgrind_control -z "$cg_pid" >/dev/null
    curl -s ${header:+-H "$header"} "${urls[@]}" >/dev/null
    callgrind_control -d "$cg_pid" >/dev/null
    dump=$(ls -t "$work"/cg."$cg_pid".* | head -1)
    [ -n "${INSTR_KEEP:-}" ] && cp "$dump" "$INSTR_KEEP/$name.callgrind" # for callgrind_annotate
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    per=$((ir / INSTR_REQUESTS))
    [ "$name" = hookway ] && base_ir=$per
    awk -v t="$name" -v p="$per" -v b="${base_ir:-0}" \
      'BEGIN { printf "| %s | %d | %s |\n", t, p, (b > 0 ? sprintf("%+.1f %%", (p - b) * 100 / b) : "") }'
  done
  echo
  echo "callgrind, $INSTR_REQUESTS requests per target on one keep-alive connection (curl), all" \
    "threads of the process counted (the access_log writer included)."
fi
