#!/usr/bin/env bash
# The main job, end to end on real data: installs what is missing, builds spahgc, trains the
# default bundle once (SpaHGC on her2st B4, C2, C3, C4, C5 with the default encoder and the
# committed panel; about four minutes on two cores, kept in .spahgc/bundles/default), then
# predicts expression for a region of a whole-slide image and for the spots of her2st section C3
# (its own spots excluded from the references).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data=${SPAHGC_DATA:-$root/../shared/data}
out=${SPAHGC_DEMO_OUT:-$root/out/demo}
bundle="$root/.spahgc/bundles/default"

bash scripts/setup.sh
cargo build --release --locked -p spahgc-cli
spahgc="$root/target/release/spahgc"

# Trained again when missing or when it no longer opens (a bundle of an older format, say).
if ! "$spahgc" bundle info "$bundle" >/dev/null 2>&1; then
  "$spahgc" train --her2st "$data/her2st" --sections B4,C2,C3,C4,C5 --out "$bundle"
fi
"$spahgc" bundle info "$bundle"
"$spahgc" predict --slide "$data/wsi/cmu_small_region.svs" --region 0,0,2000,1500 --out "$out/cmu_small_region"
"$spahgc" predict --her2st "$data/her2st" --section C3 --out "$out/her2st-C3"
echo "demo outputs are in $out"
