"""Checks that two outputs of the cohort workflow hold the same predictions.

    compare.py OUTDIR_A OUTDIR_B

cohort.h5ad: the same spots, genes and obs; X, obs x/y and obsm["spatial"] within 1e-6.
summary.csv: the same slides and columns; every number within 1e-6 but `seconds` (run time).
"""

import sys

import anndata as ad
import numpy as np
import pandas as pd

TOLERANCE = 1e-6


def close(what, a, b):
    np.testing.assert_allclose(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0, atol=TOLERANCE, err_msg=what
    )


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a_dir, b_dir = sys.argv[1:]
    a, b = (ad.read_h5ad(f"{d}/cohort.h5ad") for d in (a_dir, b_dir))
    assert list(a.obs_names) == list(b.obs_names), "cohort.h5ad: other spots"
    assert list(a.var_names) == list(b.var_names), "cohort.h5ad: other genes"
    assert list(a.obs.columns) == list(b.obs.columns), "cohort.h5ad: other obs columns"
    assert (a.obs["slide_id"].astype(str) == b.obs["slide_id"].astype(str)).all(), "cohort.h5ad: obs slide_id"
    assert (a.obs["in_tissue"] == b.obs["in_tissue"]).all(), "cohort.h5ad: obs in_tissue"
    for column in ("x", "y"):
        close(f"cohort.h5ad: obs {column}", a.obs[column], b.obs[column])
    close("cohort.h5ad: obsm spatial", a.obsm["spatial"], b.obsm["spatial"])
    close("cohort.h5ad: X", a.X, b.X)

    sa, sb = (pd.read_csv(f"{d}/summary.csv") for d in (a_dir, b_dir))
    assert list(sa.columns) == list(sb.columns), "summary.csv: other columns"
    assert list(sa["slide_id"]) == list(sb["slide_id"]), "summary.csv: other slides"
    numbers = [c for c in sa.columns if c not in ("slide_id", "seconds")]
    close("summary.csv", sa[numbers], sb[numbers])
    print(f"compare: {a_dir} and {b_dir} agree: {a.n_obs} spots of {len(sa)} slides, {a.n_vars} genes")


if __name__ == "__main__":
    main()
