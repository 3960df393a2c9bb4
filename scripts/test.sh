#!/usr/bin/env bash
# Runs every test of the project. What the tests need (redis-server, the Helm SDK, promtool...) is
# installed by the scripts/ensure-*.sh next to this one, from the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(scripts/ensure-python.sh)
# Includes tests/tests/all/real_api.rs: a real kube-apiserver from ../shared/k8s (or
# $HOOKWAY_KUBE_APISERVER), skipped with one line when absent (docs/testing.md).
cargo test --workspace --locked "$@"
scripts/check-metrics.sh
"$python" -m pytest -q tests/chart
