#!/usr/bin/env bash
# Makes sure Prometheus' server and promtool are installed and prints the server's path.
#
# Installs Debian's `prometheus` package (which holds both `prometheus` and `promtool`) with
# apt-get when either binary is missing. Only the binaries are used: the tests start their own
# server on loopback with their own configuration (the package's service is not needed).
# Exit status non-zero, with the reason on stderr, when they cannot be installed.
set -euo pipefail

log() { echo "ensure-prometheus: $*" >&2; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "prometheus/promtool missing and apt-get unavailable"; exit 1
    fi
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo -n"; else
            log "prometheus/promtool missing and not root (no sudo)"; exit 1
        fi
    fi
    log "installing Debian's prometheus package with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >&2 \
        || { $sudo_cmd apt-get update -q >&2 \
             && $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >&2; } \
        || { log "apt-get install prometheus failed"; exit 1; }
fi
for bin in prometheus promtool; do
    command -v "$bin" >/dev/null 2>&1 || { log "$bin not found after install"; exit 1; }
done
command -v prometheus
