"""Merges the shards of one slide for the cohort workflow, and writes the slide's status.

    merge_slide.py --slide-id ID --path SLIDE --plan PLAN.json --out SLIDE.json [SHARD.json ...]

An ok slide gets expression.csv (the shards' rows in shard order under one header: the unsharded
file exactly) and expression.h5ad (obs gains `slide_id`) beside SLIDE.json, which is written last
and holds {"status": "ok", spots, in_tissue, seconds (summed over shards), shards}. A slide whose
plan or any shard failed gets only SLIDE.json, with the first failure record.
"""

import argparse
import json
import os

import anndata as ad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--path", required=True, help="the slide, as the sample sheet names it")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("shards", nargs="*")
    args = parser.parse_args()

    records = [load(p) for p in [args.plan, *args.shards]]
    failed = next((r for r in records if r["status"] != "ok"), None)
    status = {"slide_id": args.slide_id, "path": args.path}
    if failed is not None:
        status.update(failed)
    else:
        shards = records[1:]
        out_dir = os.path.dirname(args.out)
        shard_dirs = [p.removesuffix(".json") for p in args.shards]  # spahgc's --out beside each record
        concat_csv([os.path.join(d, "expression.csv") for d in shard_dirs], os.path.join(out_dir, "expression.csv"))
        slide = ad.concat([ad.read_h5ad(os.path.join(d, "expression.h5ad")) for d in shard_dirs], merge="same")
        slide.obs["slide_id"] = args.slide_id
        slide.write_h5ad(os.path.join(out_dir, "expression.h5ad"))
        status.update(
            status="ok",
            spots=sum(r["spots"] for r in shards),
            in_tissue=sum(r["in_tissue"] for r in shards),
            seconds=sum(r["seconds"] for r in shards),
            shards=len(shards),
        )
    with open(args.out, "w") as f:
        json.dump(status, f, indent=1)
        f.write("\n")


def load(path):
    with open(path) as f:
        return json.load(f)


def concat_csv(parts, out):
    """Writes the rows of `parts` in order under their common header."""
    header = None
    with open(out, "w") as w:
        for part in parts:
            with open(part) as r:
                first = r.readline()
                if header is None:
                    header = first
                    w.write(header)
                elif first != header:
                    raise SystemExit(f"merge_slide: {part} has other columns than {parts[0]}")
                w.writelines(r)


if __name__ == "__main__":
    main()
