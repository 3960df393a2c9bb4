#!/usr/bin/env bash
# The controller at scale: 10,000 Routes, 1,000 Services with 10,000 endpoints (EndpointSlices),
# the real controller, two real proxies and a real upstream, all in one test process built with
# the `dist` profile (fat LTO, one codegen unit: what the container image ships)
# (tests/tests/bench.rs). Prints the change-to-served latency (p50/p90/p99/max over 30 Route
# changes, measured by traffic through both proxies) on a quiet cluster and with endpoint churn
# in the background (EndpointSlice patches on a fixed schedule of 100/s, up to 32 in flight; the
# rate reached is printed), the bytes sent per change per proxy, the proxies' apply time per
# change and what they rebuilt, CPU time per series, the snapshot size on the wire and live heap;
# then a fleet of 10 more proxies (hookway-proxy processes at nice 19) restarting at once, 5 times,
# with one Route change timed each time (change -> published, -> served by the 2 steady proxies,
# -> served by the whole new fleet) and the status patches.
# Bounded: every wait in the benchmark has a deadline. bench/CONTROLLER.md has the method and runs.
#
# Where the objects live:
#   bench/controller.sh                 the in-process fake API server (the default)
#   REAL_API=1 bench/controller.sh      a real kube-apiserver + etcd, started for the run in a temp
#                                       folder by ../shared/k8s/start.sh and stopped afterwards
#                                       (also if the test process dies: a watchdog); one line says
#                                       it was skipped when ../shared/k8s is absent
#   HOOKWAY_BENCH_KUBECONFIG=PATH bench/controller.sh
#                                       a real API server already running (a fresh namespace each
#                                       run; it is left there)
# Sizes: HOOKWAY_BENCH_ROUTES (default 10000, more than 245) and HOOKWAY_BENCH_SERVICES (default a
# tenth of the Routes), for a quick check of the harness.
#
# PROFILE=release bench/controller.sh builds the quicker `release` profile instead (no LTO; a
# few dependencies less optimised): for a loaded or small machine; say so with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${REAL_API:-}" ] && [ "${REAL_API}" != 0 ]; then
  export HOOKWAY_BENCH_API=real
fi
# The restarting fleet runs as real hookway-proxy processes at nice 19 (tests/tests/bench/fleet.rs):
# the same profile's binary, built here (the library is the one the test links).
cargo build --profile "${PROFILE:-dist}" --locked -p hookway-proxy --bin hookway-proxy
export HOOKWAY_BENCH_PROXY_BIN="$PWD/target/${PROFILE:-dist}/hookway-proxy"
exec cargo test --profile "${PROFILE:-dist}" --locked --workspace --test bench -- --ignored --nocapture "$@"
