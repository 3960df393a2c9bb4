#!/usr/bin/env bash
# Runs the proxy's and the controller's /metrics expositions through `promtool check metrics`
# (Prometheus' own parser and naming lint: `_total` counters, base units, help texts...), and the
# chart's alerting rules through `promtool check rules` and their unit tests
# (`promtool test rules tests/prometheus/alerts.test.yaml`).
#
# - Installs Debian's `prometheus` package (scripts/ensure-prometheus.sh) when promtool is missing.
# - Proxy: starts `hookway-proxy --manifests` on examples/quickstart plus Routes that make every
#   metric family appear (an `ip_restriction` that denies loopback, a `circuit_breaker` in front
#   of a closed port, an `extra_params` that fails on a conflicting body field, a Route proxied to the
#   proxy's own admin listener for upstream latencies), on free loopback ports; sends a few
#   requests so every labelled metric has series, and checks what GET /metrics returns.
# - Controller: its rendering function, populated like a running controller, dumped by the test
#   controller/tests/all/metrics_exposition.rs (HOOKWAY_METRICS_OUT).
# - With HOOKWAY_METRICS_DIR=DIR, both expositions are kept as DIR/proxy.prom and
#   DIR/controller.prom (tests/chart checks the rules' and the dashboard's metric names against
#   them).
#
# Exit status non-zero, with promtool's findings on stderr, when an exposition or the rules have
# a problem.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "check-metrics: $*" >&2; }

# A free loopback port (the kernel picks it; a small race before the proxy binds is acceptable).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# GET with a bounded wait; prints the body. curl is preferred, python3 otherwise.
http_get() {
    local url="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -sS --max-time 5 "$url"
    else
        python3 - "$url" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.read().decode(), end="")
PY
    fi
}

# POST of a JSON body (second argument) with a bounded wait; prints the answer's body.
http_post_json() {
    local url="$1" body="$2"
    if command -v curl >/dev/null 2>&1; then
        curl -sS --max-time 5 -H 'content-type: application/json' --data "$body" "$url"
    else
        python3 - "$url" "$body" <<'PY'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),
                             headers={"content-type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=5).read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.read().decode(), end="")
PY
    fi
}

check() {
    local what="$1" file="$2"
    if ! promtool check metrics < "$file" >"$workdir/$what.promtool" 2>&1; then
        log "$what: promtool check metrics failed:"
        cat "$workdir/$what.promtool" >&2
        return 1
    fi
    log "$what: $(grep -c '^# TYPE' "$file") metric families, promtool check metrics OK"
}

scripts/ensure-prometheus.sh >/dev/null
command -v python3 >/dev/null 2>&1 || { log "python3 is needed to pick free ports"; exit 1; }

workdir="$(mktemp -d -t hookway-metrics.XXXXXX)"
proxy_pid=""
cleanup() {
    if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# Both cargo commands below select the whole workspace with its tests, as scripts/test.sh's
# `cargo test --workspace` does: after it they build nothing. (`-p hookway-proxy` or
# `-p hookway-controller` would resolve the dependencies' features differently and compile most
# of the dependency tree a second time: minutes on a small machine.)
log "building hookway-proxy (the workspace's test build)"
proxy_bin=$(cargo test --workspace --locked --no-run --message-format json-render-diagnostics \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "hookway-proxy" \
            and m["target"]["kind"] == ["bin"] and not m["profile"]["test"]:
        print(m["executable"])
')
[ -x "$proxy_bin" ] || { log "no hookway-proxy binary in the test build"; exit 1; }

# --- proxy -------------------------------------------------------------------------------
mkdir "$workdir/manifests"
cp examples/quickstart/*.yaml "$workdir/manifests/"
http_port="$(free_port)"
admin_port="$(free_port)"
cat >"$workdir/manifests/metrics-extra.yaml" <<YAML
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: deny-loopback, namespace: hookway-system}
spec:
  plugin: ip_restriction
  config: {ip_list_type: black, ip_black_list: [127.0.0.0/8, "::1"]}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: breaker, namespace: hookway-system}
spec:
  plugin: circuit_breaker
  config: {minimum_requests: 2, failure_percent: 0.5, break_period: 60}
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: closed, namespace: default}
spec:
  nodes: [{address: 127.0.0.1, port: 9}]
  retries: {attempts: 0}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: denied, namespace: default}
spec:
  rules: [{path: {type: Exact, value: /denied}}]
  service: closed
  plugins: {deny-loopback: {}}
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: breaker, namespace: default}
spec:
  rules: [{path: {type: Exact, value: /breaker}}]
  service: closed
  plugins: {breaker: {}}
---
apiVersion: hookway.dev/v1alpha1
kind: GatewayPlugin
metadata: {name: strict-params, namespace: hookway-system}
spec:
  plugin: extra_params
  config: {params: [{name: \$.tenant, position: body, value: a, conflict: error}]}
---
apiVersion: hookway.dev/v1alpha1
kind: Service
metadata: {name: admin, namespace: default}
spec:
  nodes: [{address: 127.0.0.1, port: $admin_port}]
---
apiVersion: hookway.dev/v1alpha1
kind: Route
metadata: {name: admin-health, namespace: default}
spec:
  rules: [{path: {type: Exact, value: /healthz}}]
  service: admin
  plugins: {strict-params: {}}
YAML
"$proxy_bin" --manifests "$workdir/manifests" --no-https \
    --http-addr "127.0.0.1:$http_port" --admin-addr "127.0.0.1:$admin_port" \
    >"$workdir/proxy.log" 2>&1 &
proxy_pid=$!
ready=""
for _ in $(seq 1 100); do
    if http_get "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    log "the proxy did not become ready; its log:"; cat "$workdir/proxy.log" >&2; exit 1
fi
# Traffic: the mock route (200), a denied one (403), a closed upstream behind the breaker
# (502 + connect errors, then the breaker opens: 503), the quickstart's local upstream on :8081
# (whatever it answers), the proxy's own /healthz through a Route (200, upstream latency), the
# same with a JSON body whose field extra_params refuses to overwrite (400, a plugin failure).
base="http://127.0.0.1:$http_port"
for _ in 1 2 3; do http_get "$base/hello" >/dev/null || true; done
http_get "$base/denied" >/dev/null || true
for _ in 1 2 3 4; do http_get "$base/breaker" >/dev/null || true; done
http_get "$base/anything" >/dev/null || true
http_get "$base/healthz" >/dev/null || true
http_post_json "$base/healthz" '{"tenant": "b"}' >/dev/null || true
http_get "http://127.0.0.1:$admin_port/metrics" >"$workdir/proxy.prom"
for family in hookway_requests_total hookway_upstream_connect_errors_total \
    hookway_upstream_duration_seconds_bucket hookway_plugin_failures_total \
    hookway_plugin_hook_duration_seconds_bucket hookway_plugin_decisions_total \
    hookway_circuit_breaker_state hookway_access_log_dropped_lines_total; do
    grep -q "^$family[{ ]" "$workdir/proxy.prom" \
        || { log "proxy: no $family series after traffic"; cat "$workdir/proxy.prom" >&2; exit 1; }
done
status=0
check proxy "$workdir/proxy.prom" || status=1

# --- controller --------------------------------------------------------------------------
HOOKWAY_METRICS_OUT="$workdir/controller.prom" \
    cargo test --workspace --locked -q --test all -- metrics_exposition >&2
check controller "$workdir/controller.prom" || status=1
if [ -n "${HOOKWAY_METRICS_DIR:-}" ]; then
    mkdir -p "$HOOKWAY_METRICS_DIR"
    cp "$workdir/proxy.prom" "$workdir/controller.prom" "$HOOKWAY_METRICS_DIR/"
fi

# --- alerting rules ----------------------------------------------------------------------
rules=charts/hookway/files/prometheus-rules.yaml
if promtool check rules "$rules" >"$workdir/rules.promtool" 2>&1 \
    && promtool test rules tests/prometheus/alerts.test.yaml >>"$workdir/rules.promtool" 2>&1; then
    log "rules: promtool check rules and test rules OK ($(grep -c -- '- alert:' "$rules") alerts)"
else
    log "rules: promtool failed:"; cat "$workdir/rules.promtool" >&2; status=1
fi

exit "$status"
