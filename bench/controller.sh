#!/usr/bin/env bash
# The controller at scale: 10,000 Routes in the in-process fake API server, the real controller,
# two real proxies and a real upstream, all in one test process built with the `dist` profile
# (fat LTO, one codegen unit: what the container image ships) (tests/tests/bench.rs). Prints the change-to-served latency (p50/p90/p99/max over 30 Route
# changes, measured by traffic through both proxies), the snapshot size on the wire and resident
# memory. Bounded: every wait in the benchmark has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --profile dist --locked -p hookway-tests --test bench -- --ignored --nocapture "$@"
