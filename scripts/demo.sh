#!/usr/bin/env bash
# The main job, end to end on real data: installs what is missing, builds spahgc, embeds every
# spot of her2st section C3 with the default encoder (a second run is served from the on-disk
# cache), builds a reference bank from the other four sections, and shows the cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data=${SPAHGC_DATA:-$root/../shared/data}
out=${SPAHGC_DEMO_OUT:-$root/out/demo}

bash scripts/setup.sh
cargo build --release --locked -p spahgc-cli
spahgc="$root/target/release/spahgc"
mkdir -p "$out"

"$spahgc" embed --her2st "$data/her2st" --section C3 --out "$out/C3-embeddings.npy"
"$spahgc" embed --her2st "$data/her2st" --section C3 --out "$out/C3-embeddings.npy"
"$spahgc" bank build --her2st "$data/her2st" --sections B4,C2,C4,C5 \
  --panel panels/her2st-250.txt --out "$out/bank-B4-C2-C4-C5.spb"
"$spahgc" bank info "$out/bank-B4-C2-C4-C5.spb"
"$spahgc" cache stats
echo "demo outputs are in $out"
