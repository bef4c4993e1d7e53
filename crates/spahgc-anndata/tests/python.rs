//! Round trip through Python: anndata reads what we write, and the layout matches anndata's own.

use std::process::Command;

use ndarray::{Array2, array};
use spahgc_anndata::{AnnData, Column, write_h5ad};

#[test]
fn anndata_reads_what_we_write() {
    let Some(python) = spahgc_testdata::python_with(&["anndata", "h5py"]) else { return };
    let strings = |s: &[&str]| -> Vec<String> { s.iter().map(|s| s.to_string()).collect() };
    let obs_names = strings(&["3x4", "3x5", "4x4", "10x2", "ünïcode"]);
    let var_names = strings(&["ERBB2", "ESR1", "GAPDH"]);
    let barcodes = strings(&["AAAC-1", "AAAG-1", "AACT-1", "ACGT-1", "TTTT-1"]);
    // Column-major on purpose: the writer must store it row-major.
    let x = Array2::from_shape_fn((3, 5), |(g, s)| (s * 3 + g) as f32 / 4.0);
    let spatial = array![[1.5, -1.0], [2.5, 0.0], [3.5, 1e6], [4.5, 2.0], [5.5, 7.0]];
    let xs = spatial.column(0).to_vec();
    let ys = [-1.0, 0.0, 1e6, 2.0, f64::NAN];
    let data = AnnData {
        obs_names: &obs_names,
        obs: vec![
            ("in_tissue", Column::Bool(&[true, false, true, true, false])),
            ("x", Column::F64(&xs)),
            ("y", Column::F64(&ys)),
            ("array_row", Column::I64(&[3, 3, 4, 10, -1])),
            ("barcode", Column::Text(&barcodes)),
        ],
        var_names: &var_names,
        x: x.t(),
        obsm: vec![("spatial", spatial.view())],
        uns: vec![("provenance", "spahgc test"), ("note", "µm")],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pred.h5ad");
    write_h5ad(&path, &data).unwrap();
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_back.py"))
        .arg(&path)
        .arg(dir.path().join("reference.h5ad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "read_back.py failed ({}):\n{stderr}", out.status);
    print!("{}", String::from_utf8_lossy(&out.stdout));
}
