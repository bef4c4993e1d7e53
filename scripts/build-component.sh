#!/usr/bin/env bash
# Builds spahgc's two WebAssembly components (wasm32-wasip2) from Debian packages only:
#   .spahgc/wasm/spahgc-predictor.wasm                world `predictor` (encoder inside, tract)
#   .spahgc/wasm/spahgc-predictor-host-encoder.wasm   world `predictor-with-host-encoder`
# Debian's rustc-web builds the standard library for the target from rust-web-src (build-std);
# wasm-component-ld from the rustup toolchain links the components. SIMD (simd128, which wasmtime
# runs) makes tract's encoder 5x faster. No debug info: it would quintuple the files' size.
# Artifacts share the workspace's target directory; the components are installed in the setup
# directory, where `spahgc wasm` and the tests find them. Usage: scripts/build-component.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/apt-install.sh" rustc-web rust-web-src cargo-web lld-19 clang-19 wasi-libc \
  libclang-rt-19-dev-wasm32

linker="$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld"
[ -x "$linker" ] || { echo "build-component: $linker not found (it ships with the rustup toolchain)" >&2; exit 1; }
out="$root/.spahgc/wasm"
mkdir -p "$out"

build() { # build NAME [cargo feature arguments...]
  local name="$1"; shift
  (cd "$root" && env PATH="/usr/bin:/usr/lib/llvm-19/bin:$PATH" RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_DIR="$root/target" CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    RUSTFLAGS="-C target-feature=+simd128 -C link-self-contained=no -L native=/usr/lib/wasm32-wasi -C linker=$linker" \
    /usr/bin/cargo rustc --release --locked -p spahgc-component --target wasm32-wasip2 \
      --crate-type cdylib -Zbuild-std=std,panic_abort "$@")
  local built="$root/target/wasm32-wasip2/release/spahgc_component.wasm"
  cp "$built" "$out/$name.wasm.part" && mv "$out/$name.wasm.part" "$out/$name.wasm"
  echo "build-component: $out/$name.wasm ($(du -h "$out/$name.wasm" | cut -f1))"
}
build spahgc-predictor
build spahgc-predictor-host-encoder --no-default-features
