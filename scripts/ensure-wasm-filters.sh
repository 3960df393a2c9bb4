#!/usr/bin/env bash
# Builds the AssemblyScript Proxy-Wasm example filter (examples/wasm) with the SDK from npm, into
# target/wasm-filters/greeting.wasm (or $HOOKWAY_WASM_FILTERS/greeting.wasm), and prints its path.
# The packages install under target/wasm-filters/build (never into the source tree). Rebuilt only
# when a source is newer than the module. Without npm it says so and exits 0: the test that runs
# the filter (proxy/tests/e2e/wasm.rs) then skips with one line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${HOOKWAY_WASM_FILTERS:-$root/target/wasm-filters}
src=$root/examples/wasm
module=$out/greeting.wasm
if ! command -v npm >/dev/null 2>&1; then
  echo "ensure-wasm-filters: npm not found; the AssemblyScript filter is not built" >&2
  exit 0
fi
if [ -f "$module" ] && [ -z "$(find "$src/assembly" "$src/package.json" "$src/package-lock.json" -newer "$module" 2>/dev/null)" ]; then
  echo "$module"
  exit 0
fi
work=$out/build
mkdir -p "$work"
rm -rf "$work/assembly"
cp -r "$src/assembly" "$src/package.json" "$src/package-lock.json" "$work/"
cd "$work"
npm ci --no-audit --no-fund --loglevel=error >&2
# --use abort=abort_proc_exit: the SDK's documented flag (an abort becomes proc_exit, a trap).
npx --no-install asc assembly/index.ts -b "$module.tmp" --use abort=abort_proc_exit --optimize 2>build.log \
  || { cat build.log >&2; exit 1; }
mv "$module.tmp" "$module"
echo "$module"
