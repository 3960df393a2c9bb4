#!/usr/bin/env bash
# `cargo deny check` with deny.toml: licences, banned crates and sources, from Cargo.lock alone;
# security advisories too when the RustSec advisory database (a git repository) can be fetched.
# Where it cannot (a network that reaches only package registries), this says so on one line
# and checks the other three.
set -euo pipefail
cd "$(dirname "$0")/.."
deny=$(scripts/ensure-cargo-deny.sh)
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
    "$deny" check --hide-inclusion-graph
else
    echo "deny: advisories NOT checked: the RustSec advisory database could not be fetched" >&2
    "$deny" --offline check --hide-inclusion-graph licenses bans sources
fi
