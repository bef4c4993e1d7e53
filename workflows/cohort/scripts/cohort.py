"""Gathers the slides of the cohort workflow into one table, a summary and the list of failures.

    cohort.py --h5ad COHORT.h5ad --summary SUMMARY.csv --failures FAILURES.tsv SLIDE.json ...

COHORT.h5ad: every spot of the ok slides (obs names `<slide_id>:<spot>`, obs `slide_id`, `x`, `y`,
`in_tissue`, obsm `spatial`). SUMMARY.csv: per ok slide, slide_id, spots, in_tissue_spots, seconds
and the mean predicted expression of each gene. FAILURES.tsv: slide_id, path, exit_code, kind,
error per failed slide (the header alone when none failed).
"""

import argparse
import csv
import json
import os

import anndata as ad
import numpy as np
import pandas as pd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5ad", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--failures", required=True)
    parser.add_argument("slides", nargs="+", help="each slide's slide.json, in sample sheet order")
    args = parser.parse_args()

    statuses = []
    for path in args.slides:
        with open(path) as f:
            statuses.append((os.path.dirname(path), json.load(f)))
    ok = [(d, s) for d, s in statuses if s["status"] == "ok"]

    slides = []
    for slide_dir, status in ok:
        slide = ad.read_h5ad(os.path.join(slide_dir, "expression.h5ad"))
        slide.obs_names = status["slide_id"] + ":" + slide.obs_names
        slides.append(slide)
    if slides:
        cohort = ad.concat(slides, merge="same")
    else:  # every slide failed: an empty table
        cohort = ad.AnnData()
    cohort.write_h5ad(args.h5ad)

    genes = list(cohort.var_names)
    rows = []
    for (_, status), slide in zip(ok, slides):
        means = np.asarray(slide.X, dtype=np.float64).mean(axis=0) if slide.n_obs else np.full(len(genes), np.nan)
        row = {"slide_id": status["slide_id"], "spots": status["spots"], "in_tissue_spots": status["in_tissue"]}
        rows.append({**row, "seconds": status["seconds"], **dict(zip(genes, means))})
    columns = ["slide_id", "spots", "in_tissue_spots", "seconds", *genes]
    pd.DataFrame(rows, columns=columns).to_csv(args.summary, index=False)

    with open(args.failures, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["slide_id", "path", "exit_code", "kind", "error"])
        for _, s in statuses:
            if s["status"] != "ok":
                w.writerow([s["slide_id"], s["path"], s["exit_code"], s["kind"], " ".join(s["error"].split())])


if __name__ == "__main__":
    main()
