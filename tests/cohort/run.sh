#!/usr/bin/env bash
# The cohort workflow (workflows/cohort) end to end, on this machine and on a one-node Slurm
# cluster: the same outputs both ways, a bad slide and a missing one failing alone, bad sample
# sheets refused before any job, and shards of a slide that concatenate to the whole.
# Needs what the Rust tests build (target/release/spahgc, target/test-bundle/bundle), the venv of
# scripts/setup.sh (Snakemake) and ../shared/data. Works in target/cohort-test.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export PATH="$root/.spahgc/venv/bin:$PATH"
spahgc="$root/target/release/spahgc"
bundle="$root/target/test-bundle/bundle"
data="$root/../shared/data"
tmp="$root/target/cohort-test"
for need in "$spahgc" "$bundle"; do
  [ -e "$need" ] || { echo "cohort: missing $need (run the Rust tests first)" >&2; exit 1; }
done
# Without the shared data, skip as the Rust tests do, except where it is required (CI).
if [ ! -d "$data/her2st" ] || [ ! -d "$data/wsi" ]; then
  [ "${SPAHGC_REQUIRE_DATA:-}" != 1 ] || { echo "cohort: SPAHGC_REQUIRE_DATA=1 but $data is missing" >&2; exit 1; }
  echo "cohort: skipped: no $data"
  exit 0
fi

passed=0
step() {
  local name=$1 start
  shift
  start=$(date +%s)
  echo "--> $name"
  "$@"
  passed=$((passed + 1))
  echo "--> $name: ok, $(($(date +%s) - start)) s"
}
fail() { echo "cohort: FAILED: $*" >&2; exit 1; }

# A cluster left by an interrupted run would hold the ports: stop it before clearing its files.
bash scripts/slurm-cluster.sh stop "$tmp/slurm" >/dev/null
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'bash scripts/slurm-cluster.sh stop "$tmp/slurm"' EXIT

# Two her2st images (regions with tissue: 119 and 188 spots, 3 and 4 blocks) and a small slide
# with resolution metadata (18 spots); 50 spots per shard splits the images into 3 and 4 jobs.
printf 'slide_id\tpath\tregion\tmpp\n' >"$tmp/samples.tsv"
printf 'cmu\t%s\t\t\n' "$data/wsi/cmu_small_region.svs" >>"$tmp/samples.tsv"
for s in B4 C3; do
  printf '%s\t%s\t0,0,6000,6000\t0.69\n' "$s" "$data/her2st/ST-imgs/$s.jpg" >>"$tmp/samples.tsv"
done

# Runs the workflow on sample sheet $1 into $tmp/$2, with the remaining arguments; from $tmp, where
# Snakemake keeps its .snakemake directory. Each run starts an embedding cache of its own, so the
# shard jobs of a run (on Slurm, several at once) write it concurrently; shards of one slide share
# the tiles along their blocks' margins.
workflow() {
  local sheet=$1 out=$2
  shift 2
  cat >"$tmp/$out.yaml" <<EOF
samples: $sheet
bundle: $bundle
cache_dir: $tmp/cache-$out
outdir: $tmp/$out
spahgc: $spahgc
spots_per_shard: 50
threads: 1
mem_mb: 2000
${extra_config:-}
EOF
  (cd "$tmp" && snakemake -s "$root/workflows/cohort/Snakefile" --configfile "$tmp/$out.yaml" "$@")
}

local_run() { workflow "$1" "$2" --workflow-profile "$root/workflows/cohort/profiles/local" --cores 2 >"$tmp/$2.log" 2>&1 || { tail -n 40 "$tmp/$2.log"; fail "workflow $2"; }; }

# Status checks every 2 s instead of Slurm-friendly intervals keep the test short.
slurm_run() {
  workflow "$tmp/samples.tsv" slurm-out --workflow-profile "$root/workflows/cohort/profiles/slurm" \
    --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 >"$tmp/slurm-out.log" 2>&1 ||
    { tail -n 40 "$tmp/slurm-out.log"; fail "workflow on Slurm"; }
}

failures() {
  head -c 100000 /dev/urandom >"$tmp/bad.svs"
  cp "$tmp/samples.tsv" "$tmp/samples-failures.tsv"
  printf 'bad\t%s\t\t\nmissing\t%s\t\t\n' "$tmp/bad.svs" "$tmp/no-such-slide.svs" >>"$tmp/samples-failures.tsv"
  # This run also names the bundle's own bank as `bank`, which must change nothing.
  extra_config="bank: $bundle/bank.spb" local_run "$tmp/samples-failures.tsv" failures
  # The other slides come out as in the full run; the two bad ones are listed as unreadable.
  python tests/cohort/compare.py "$tmp/local" "$tmp/failures"
  local listed
  listed=$(tail -n +2 "$tmp/failures/failures.tsv" | cut -f1,3,4 | tr '\t\n' ' |')
  [ "$listed" = "bad 3 unreadable-slide|missing 3 unreadable-slide|" ] || fail "failures.tsv lists: $listed"
  cat "$tmp/failures/failures.tsv"
}

# A bad sheet ($1: its text) stops the workflow before any job: non-zero exit, a message naming
# the problem ($2), no output directory.
refused() {
  printf '%b' "$1" >"$tmp/refused.tsv"
  if workflow "$tmp/refused.tsv" refused --cores 2 >"$tmp/refused.log" 2>&1; then
    fail "sheet accepted: $1"
  fi
  grep -F "$2" "$tmp/refused.log" || { cat "$tmp/refused.log"; fail "no message '$2'"; }
  [ ! -e "$tmp/refused" ] || fail "outputs created for a refused sheet"
}

bad_sheets() {
  refused 'slide_id\tslide\nA\ta.svs\n' "refused.tsv, line 1: missing column path"
  refused 'slide_id\tpath\nA\ta.svs\nA\tb.svs\n' "refused.tsv, line 3: duplicate slide_id 'A' (first on line 2)"
}

# spahgc itself: the rows of shards 0..2 of a whole her2st image, in order, are the unsharded rows.
shards() {
  local args=(predict --slide "$data/her2st/ST-imgs/B4.jpg" --mpp 0.69 --bundle "$bundle" --cache-dir "$tmp/cache"
    --threads 2 --json --quiet)
  "$spahgc" "${args[@]}" --plan
  "$spahgc" "${args[@]}" --out "$tmp/whole" >/dev/null
  for i in 0 1 2; do
    "$spahgc" "${args[@]}" --shard "$i/3" --out "$tmp/shard-$i" >/dev/null
  done
  head -n 1 "$tmp/whole/expression.csv" >"$tmp/shards.csv"
  for i in 0 1 2; do tail -n +2 "$tmp/shard-$i/expression.csv"; done >>"$tmp/shards.csv"
  cmp "$tmp/whole/expression.csv" "$tmp/shards.csv" || fail "shards differ from the whole"
  echo "$(($(wc -l <"$tmp/shards.csv") - 1)) rows in 3 shards = the unsharded expression.csv"
}

total_start=$(date +%s)
step "start the Slurm cluster" bash scripts/slurm-cluster.sh start "$tmp/slurm"
step "workflow on this machine" local_run "$tmp/samples.tsv" local
step "workflow on Slurm" slurm_run
step "same outputs both ways" python tests/cohort/compare.py "$tmp/local" "$tmp/slurm-out"
step "bad slides fail alone" failures
step "bad sample sheets refused" bad_sheets
step "shards concatenate to the whole" shards
echo "cohort: $passed passed, 0 failed ($(($(date +%s) - total_start)) s)"
