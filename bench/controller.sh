#!/usr/bin/env bash
# The controller at scale: 10,000 Routes, 1,000 Services with 10,000 endpoints (EndpointSlices)
# in the in-process fake API server, the real controller, two real proxies and a real upstream,
# all in one test process built with the `dist` profile (fat LTO, one codegen unit: what the
# container image ships) (tests/tests/bench.rs). Prints the change-to-served latency
# (p50/p90/p99/max over 30 Route changes, measured by traffic through both proxies) on a quiet
# cluster and with 100 endpoint changes per second in the background, the bytes sent per change
# per proxy, the proxies' apply time per change and what they rebuilt, the snapshot size on the
# wire and live heap. Bounded: every wait in the benchmark has a deadline.
#
# PROFILE=release bench/controller.sh builds the quicker `release` profile instead (no LTO; a
# few dependencies less optimised): for a loaded or small machine; say so with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --profile "${PROFILE:-dist}" --locked --workspace --test bench -- --ignored --nocapture "$@"
