#!/usr/bin/env bash
# The whole test suite: setup, formatting, lints, then every test. README's test command; .ci/run
# runs exactly this. Everything builds once, with the release profile, into target/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests that need ../shared/data or the installed encoder skip without them on a developer's
# machine; in CI they must run, so a missing file is a failure there.
if [ "${CI:-}" = "true" ]; then
  export SPAHGC_REQUIRE_DATA=1
fi

total_start=$(date +%s)
stage() {
  local name=$1 start
  shift
  start=$(date +%s)
  echo "==> $name"
  "$@"
  echo "==> $name took $(($(date +%s) - start)) s"
}

stage "setup" bash scripts/setup.sh
stage "format" cargo fmt --all -- --check
stage "clippy" cargo clippy --release --workspace --all-targets --locked -- -D warnings
stage "tests" cargo test --release --workspace --locked
echo "==> all stages took $(($(date +%s) - total_start)) s"
