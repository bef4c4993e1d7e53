#!/usr/bin/env bash
# The long versions of the reliability tests that docs/reliability.md describes: 50 kills per
# writer, 20 rounds of four processes on one cache, 100 + 100 sandbox limit breaches, and
# ten-minute soaks of eight threads through Rust and through the C ABI. About 40 minutes on two
# cores. Run after scripts/setup.sh and scripts/build-component.sh; the short versions run in the
# test suite (scripts/test.sh). Each test prints its figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPAHGC_REQUIRE_DATA=1
export SPAHGC_KILLS=${SPAHGC_KILLS:-50}
export SPAHGC_CACHE_ROUNDS=${SPAHGC_CACHE_ROUNDS:-20}
export SPAHGC_SANDBOX_ROUNDS=${SPAHGC_SANDBOX_ROUNDS:-100}
export SPAHGC_SOAK_SECONDS=${SPAHGC_SOAK_SECONDS:-600}
run() {
  echo "==> $*"
  cargo test --release --locked "$@" -- --nocapture --test-threads 1 2>&1 | grep -E '^(test |[a-z ]+: )'
}
run -p spahgc-cli --test crash --test shared_cache
run -p spahgc-wasm-host --test exhaustion
run -p spahgc-engine --test soak
run -p spahgc-capi --test c soak
