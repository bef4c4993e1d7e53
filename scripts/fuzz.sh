#!/usr/bin/env bash
# Fuzzes every boundary where outside bytes enter spahgc (fuzz/fuzz_targets/: manifests, bank
# file, cache entry, gene panel, her2st and Visium files, engine requests, the C ABI, the
# WebAssembly component) with cargo-fuzz: libFuzzer + AddressSanitizer, each input under a memory
# budget (-rss_limit_mb, -malloc_limit_mb) and a time limit. A panic, a sanitizer report, an
# allocation over budget or a timeout fails the run and leaves the input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 30)] [TARGET...]   (default: every target)
#   FUZZ_JOBS=N  runs N targets at once (default 1)
#
# Before fuzzing, each target runs the inputs committed in fuzz/regressions/<target>/ (findings
# already fixed). Seeds come from fuzz/seeds.py; the corpora grow in fuzz/corpus/ (not committed).
# The engine targets need the test bundle (`cargo test --release` builds it into
# target/test-bundle/) and the C ABI and component targets the setup's ONNX Runtime and
# .spahgc/wasm components (scripts/build-component.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-30}"
[ $# -gt 0 ] && shift
jobs="${FUZZ_JOBS:-1}"

CARGO_FUZZ_VERSION=0.13.2
tools="$root/.spahgc/tools"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
  # Not linted: a clippy-driver wrapper from scripts/test.sh is for spahgc's crates only.
  env -u RUSTC_WORKSPACE_WRAPPER cargo install --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
  for target in "${targets[@]}"; do cargo fuzz build --fuzz-dir fuzz --codegen-units 16 "$target"; done
else
  mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
  cargo fuzz build --fuzz-dir fuzz --codegen-units 16
fi
bin="$root/fuzz/target/x86_64-unknown-linux-gnu/release"
python3 fuzz/seeds.py "$root" fuzz/corpus
logs="$root/fuzz/target/logs"
mkdir -p "$logs"

# Budgets per input: the engine, C ABI and component targets hold ONNX Runtime, a model and
# (component) wasmtime; the parsers hold one small file.
budget() {
  case "$1" in
    engine_* | capi_* | component_*) echo "-rss_limit_mb=6144 -malloc_limit_mb=2048 -timeout=120" ;;
    *) echo "-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10" ;;
  esac
}

# fuzz TARGET: the committed regressions, then SECONDS of fuzzing; one summary line.
fuzz() {
  local target=$1 scratch="$root/fuzz/target/tmp/$1" log="$logs/$1.log"
  local -a limits
  read -r -a limits <<< "$(budget "$target")"
  mkdir -p "$scratch" "fuzz/corpus/$target" "fuzz/artifacts/$target"
  : > "$log"
  if [ -d "fuzz/regressions/$target" ]; then
    TMPDIR="$scratch" "$bin/$target" "${limits[@]}" fuzz/regressions/"$target"/* >> "$log" 2>&1 ||
      { echo "$target: a committed regression input fails again (see $log)"; rm -rf "$scratch"; return 1; }
  fi
  local status=0
  TMPDIR="$scratch" "$bin/$target" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" "fuzz/corpus/$target" >> "$log" 2>&1 || status=$?
  rm -rf "$scratch"
  local runs cov ft corpus
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  if [ "$status" -ne 0 ]; then
    echo "$target: FAILED after ${runs:-?} executions (exit $status); input in fuzz/artifacts/$target/, log $log"
    grep -m 1 -A 12 -E 'panicked|ERROR: (AddressSanitizer|libFuzzer)|==ERROR' "$log" || tail -n 20 "$log"
    return 1
  fi
  printf '%-18s %6s s %10s executions   coverage %6s edges %7s features   corpus %5s inputs\n' \
    "$target" "$seconds" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$corpus"
}

failed=0
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  fuzz "$target" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target found a problem" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, nothing found"
