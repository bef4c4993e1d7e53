"""Reads an .h5ad written by tests/python.rs with anndata and checks every value, then writes the
same AnnData with anndata itself and checks that both files have the same HDF5 layout (objects,
dtypes, shapes, and attributes down to string type, character set and dataspace)."""

import sys

import importlib.metadata

import anndata
import h5py
import numpy as np

path, reference = sys.argv[1], sys.argv[2]
a = anndata.read_h5ad(path)

assert a.shape == (5, 3), a.shape
assert list(a.obs_names) == ["3x4", "3x5", "4x4", "10x2", "ünïcode"], list(a.obs_names)
assert list(a.var_names) == ["ERBB2", "ESR1", "GAPDH"], list(a.var_names)
x = np.arange(15, dtype=np.float32).reshape(5, 3) / 4
assert a.X.dtype == np.float32 and np.allclose(a.X, x), a.X
assert list(a.obs.columns) == ["in_tissue", "x", "y", "array_row", "barcode"], list(a.obs.columns)
obs = a.obs
assert obs["in_tissue"].dtype == bool and list(obs["in_tissue"]) == [True, False, True, True, False]
assert obs["x"].dtype == np.float64 and np.allclose(obs["x"], [1.5, 2.5, 3.5, 4.5, 5.5])
assert obs["y"].dtype == np.float64 and np.allclose(obs["y"], [-1, 0, 1e6, 2, np.nan], equal_nan=True)
assert obs["array_row"].dtype == np.int64 and list(obs["array_row"]) == [3, 3, 4, 10, -1]
assert list(obs["barcode"]) == ["AAAC-1", "AAAG-1", "AACT-1", "ACGT-1", "TTTT-1"], list(obs["barcode"])
assert a.var.shape == (3, 0), a.var
assert list(a.obsm) == ["spatial"], list(a.obsm)
spatial = a.obsm["spatial"]
assert spatial.dtype == np.float64 and spatial.shape == (5, 2)
assert np.array_equal(spatial, np.array([[1.5, -1], [2.5, 0], [3.5, 1e6], [4.5, 2], [5.5, 7]]))
assert a.uns == {"provenance": "spahgc test", "note": "µm"}, a.uns
assert not (a.varm or a.obsp or a.varp or a.layers)

a.write_h5ad(reference)


def layout(f):
    """Every object of `f` with its kind, type and attributes, as comparable tuples."""

    def describe_type(t, space):
        kind = type(t).__name__
        if isinstance(t, h5py.h5t.TypeStringID):
            kind += f" vlen={t.is_variable_str()} cset={t.get_cset()}"
        else:
            kind += f" {t.dtype}"
        return kind, space.get_simple_extent_type()

    out = {}

    def visit(name, obj):
        attrs = {}
        for key in obj.attrs:
            attr = h5py.h5a.open(obj.id, key.encode())
            value = obj.attrs[key]
            value = value.tolist() if isinstance(value, np.ndarray) else value
            attrs[key] = (describe_type(attr.get_type(), attr.get_space()), attr.shape, value)
        if isinstance(obj, h5py.Dataset):
            kind = (describe_type(obj.id.get_type(), obj.id.get_space()), obj.shape, obj.chunks, obj.compression)
        else:
            kind = "group"
        out["/" + name] = (kind, attrs)

    visit("", f)
    f.visititems(visit)
    return out


with h5py.File(path) as ours, h5py.File(reference) as theirs:
    ours, theirs = layout(ours), layout(theirs)
diff = [(k, ours.get(k), theirs.get(k)) for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
assert not diff, "layout differs from anndata's:\n" + "\n".join(f"{k}\n  ours:    {o}\n  anndata: {t}" for k, o, t in diff)
print(f"anndata {importlib.metadata.version('anndata')} read {a.n_obs} x {a.n_vars}; layout matches anndata's ({len(ours)} objects)")
