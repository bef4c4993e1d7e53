#!/usr/bin/env bash
# Installs spahgc's C library into PREFIX:
#   PREFIX/include/spahgc.h
#   PREFIX/lib/libspahgc.so.X.Y.Z (+ libspahgc.so.X, libspahgc.so links), PREFIX/lib/libspahgc.a
#   PREFIX/lib/spahgc/onnxruntime/libonnxruntime.so   (found by libspahgc.so at run time)
#   PREFIX/lib/pkgconfig/spahgc.pc, PREFIX/lib/cmake/Spahgc/SpahgcConfig*.cmake
# Usage: scripts/install-capi.sh PREFIX   (SPAHGC_NO_BUILD=1: install what is built, from
#   SPAHGC_LIB_DIR, default target/release)
set -euo pipefail
prefix="${1:?usage: scripts/install-capi.sh PREFIX}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [[ "${SPAHGC_NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p spahgc-capi --lib
fi
built="${SPAHGC_LIB_DIR:-target/release}"
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
major="${version%%.*}"
ort="${SPAHGC_ORT_LIB:-$root/.spahgc/onnxruntime/libonnxruntime.so}"
[[ -f "$ort" ]] || { echo "no ONNX Runtime at $ort: run scripts/setup.sh or set SPAHGC_ORT_LIB" >&2; exit 1; }
mkdir -p "$prefix"/{include,lib/pkgconfig,lib/cmake/Spahgc,lib/spahgc/onnxruntime}
prefix="$(cd "$prefix" && pwd)"
install -m 644 include/spahgc.h "$prefix/include/"
# Debug line tables stay in target/; the installed library is a fifth of the size without them.
objcopy --strip-debug "$built/libspahgc.so" "$prefix/lib/libspahgc.so.$version"
chmod 755 "$prefix/lib/libspahgc.so.$version"
ln -sf "libspahgc.so.$version" "$prefix/lib/libspahgc.so.$major"
ln -sf "libspahgc.so.$major" "$prefix/lib/libspahgc.so"
objcopy --strip-debug "$built/libspahgc.a" "$prefix/lib/libspahgc.a"
install -m 755 "$ort" "$prefix/lib/spahgc/onnxruntime/libonnxruntime.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" crates/spahgc-capi/spahgc.pc.in > "$prefix/lib/pkgconfig/spahgc.pc"
install -m 644 crates/spahgc-capi/cmake/SpahgcConfig.cmake "$prefix/lib/cmake/Spahgc/"
sed -e "s|@VERSION@|$version|" crates/spahgc-capi/cmake/SpahgcConfigVersion.cmake.in \
  > "$prefix/lib/cmake/Spahgc/SpahgcConfigVersion.cmake"
echo "installed spahgc $version into $prefix"
