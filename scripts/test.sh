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
stage "format" bash -c 'cargo fmt --all -- --check && cargo fmt --manifest-path fuzz/Cargo.toml -- --check'
mkdir -p target
# Lints and build in one compile. `cargo clippy` is `cargo check` with clippy-driver wrapping rustc
# for the workspace's crates; wrapping `cargo build` the same way lints every crate and target as
# `cargo clippy --all-targets -- -D warnings` does while it compiles them, instead of a separate
# check of every dependency (four minutes here). The tests run with the same wrapper, which is
# part of what cargo fingerprints: nothing compiles twice. The fuzz build lints the fuzz crate.
linted() {
  env RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" \
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" "$@"
}
# Every crate, test and the C library where the bindings load it (target/release/libspahgc.so),
# with the features `cargo test --workspace` resolves, so the test stage compiles nothing again.
stage "build and clippy" linted cargo build --release --workspace --all-targets --locked
# The WebAssembly components (Debian's Rust, std built for wasm32-wasip2), which the Rust tests
# run in their sandbox. (Building the fuzz targets beside them was tried: 1569 s for both, against
# 582 + 776 s one after the other.)
stage "wasm components" bash scripts/build-component.sh
stage "tests" linted bash -c 'set -o pipefail; cargo test --release --workspace --locked --no-fail-fast 2>&1 | tee target/test-output.log'
# The bindings run against the C library, the spahgc binary and the test bundle that the Rust
# tests built (target/test-bundle).
stage "python binding" .spahgc/venv/bin/python -m pytest plugins/python/tests -q -p no:cacheprovider
stage "java binding" bash plugins/java/build.sh test
stage "qupath script" bash plugins/qupath/check.sh
# The cohort workflow (Snakemake) on this machine and on a one-node Slurm cluster it starts and stops.
stage "cohort workflow" bash tests/cohort/run.sh
# Every fuzz target for 20 s after its committed regression inputs (libFuzzer + AddressSanitizer,
# built into fuzz/target; the engine targets use the test bundle and the components from above),
# two targets at a time: each fuzzes on one core.
stage "fuzz" linted env FUZZ_JOBS=2 bash scripts/fuzz.sh 20
echo "==> all stages took $(($(date +%s) - total_start)) s"
# One closing line over every Rust test binary (cargo prints one result line per binary); the
# binding stages above print their own counts.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' target/test-output.log
