#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 600) with libFuzzer, on the
# committed corpus in fuzz/corpus/<target>/ (new inputs are added there; commit the useful ones).
# Stable Rust: the flags below are the ones cargo-fuzz passes for `--sanitizer none`. Not run in
# CI; CI replays the corpus through `hookway_proxy::fuzzing` (cargo test -p hookway-proxy fuzzing).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(canonical_path router manifests snapshot multipart aksk_header sub_filter http1_response)
fi
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros (as cargo-fuzz does).
triple=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bins --target "$triple"
mkdir -p artifacts
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  # A finding ends that target's run (its input is in artifacts/<target>/); the others still run.
  if ! ./target/"$triple"/release/"$t" "corpus/$t" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"artifacts/$t.log" 2>&1; then
    echo "   FINDING: see artifacts/$t/ and artifacts/$t.log"
    status=1
  fi
  grep -E '^(Done|stat::(number_of_executed_units|new_units_added|average_exec_per_sec))|SUMMARY' \
    "artifacts/$t.log" | sed 's/^/   /'
done
exit $status
