#!/usr/bin/env bash
# Runs every test of the project. What the tests need (redis-server, helm SDK, promtool...) is
# installed by the scripts next to this one, from the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
for prereq in scripts/ensure-*.sh; do
  [ -e "$prereq" ] || continue
  bash "$prereq" --install-only
done
cargo test --workspace --locked "$@"
