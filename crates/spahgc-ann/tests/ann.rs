//! The approximate index against exact search on clustered data, its determinism, and the
//! errors of damaged or mismatched files.

use std::path::Path;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spahgc_ann::{AnnIndex, AnnParams, EmbeddingRows, F16Rows, F16RowsWriter, exact_top_k};

const DIM: usize = 64;

/// `n` unit rows around 40 cluster centres, and 100 queries from the same clusters.
fn clustered(dir: &Path, n: usize) -> (F16Rows, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let centres = Array2::from_shape_fn((40, DIM), |_| rng.random_range(-1.0f32..1.0));
    let point = |rng: &mut ChaCha8Rng| -> Vec<f32> {
        let c = centres.row(rng.random_range(0..40));
        let v: Vec<f32> = c.iter().map(|x| x + 0.4 * rng.random_range(-1.0f32..1.0)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    };
    let mut writer = F16RowsWriter::create(&dir.join("rows.f16"), DIM).unwrap();
    for _ in 0..n {
        writer.push(&point(&mut rng)).unwrap();
    }
    let mut queries = Array2::zeros((100, DIM));
    for mut q in queries.rows_mut() {
        q.assign(&ndarray::Array1::from(point(&mut rng)));
    }
    (writer.finish().unwrap(), queries)
}

fn small_params() -> AnnParams {
    AnnParams { components: 48, connectivity: 12, sample: 1500, ..Default::default() }
}

#[test]
fn the_index_finds_what_exact_search_finds_and_rebuilds_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, queries) = clustered(tmp.path(), 5000);
    assert_eq!(rows.shape(), (5000, DIM));
    let exact = exact_top_k(&rows, queries.view(), 7);
    let index = AnnIndex::build(&rows, small_params(), &tmp.path().join("a")).unwrap();
    let found = index.search(&rows, queries.view(), 7).unwrap();
    let hits: usize =
        found.iter().zip(&exact).map(|(a, e)| a.iter().filter(|n| e.iter().any(|m| m.index == n.index)).count()).sum();
    let recall = hits as f64 / 700.0;
    assert!(recall >= 0.95, "recall@7 {recall}");
    for (a, e) in found.iter().zip(&exact) {
        // Similarities are exact (from the rows), so a shared neighbour scores the same.
        for n in a {
            if let Some(m) = e.iter().find(|m| m.index == n.index) {
                assert!((m.similarity - n.similarity).abs() < 1e-5);
            }
        }
    }

    // The same seed builds the same files; opening again gives the same answers.
    AnnIndex::build(&rows, small_params(), &tmp.path().join("b")).unwrap();
    for file in ["ann.json", "projection.f32", "graph.usearch"] {
        let (a, b) = (tmp.path().join("a").join(file), tmp.path().join("b").join(file));
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{file} differs between builds");
    }
    let reopened = AnnIndex::open(&tmp.path().join("a")).unwrap();
    assert_eq!(reopened.search(&rows, queries.view(), 7).unwrap(), found);
}

#[test]
fn damaged_or_mismatched_files_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, queries) = clustered(tmp.path(), 600);
    let dir = tmp.path().join("index");
    let index = AnnIndex::build(&rows, AnnParams { sample: 300, ..small_params() }, &dir).unwrap();

    // Queries or rows of another dimension.
    let e = index.candidates(queries.slice(ndarray::s![.., ..10]), 5).unwrap_err().to_string();
    assert!(e.contains("queries have 10 dimensions") && e.contains("has 64"), "{e}");
    let other_dir = tmp.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (other, _) = clustered(&other_dir, 500);
    let e = index.search(&other, queries.view(), 5).unwrap_err().to_string();
    assert!(e.contains("covers 600 rows of 64 dimensions"), "{e}");

    // ann.json claiming another dimension; a truncated projection; a graph of another index.
    let meta = dir.join("ann.json");
    let original = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, original.replace("\"dim\": 64", "\"dim\": 65")).unwrap();
    let e = AnnIndex::open(&dir).map(drop).unwrap_err().to_string();
    assert!(e.contains("projection.f32") && e.contains("65 dimensions"), "{e}");
    std::fs::write(&meta, &original).unwrap();
    let projection = dir.join("projection.f32");
    let bytes = std::fs::read(&projection).unwrap();
    std::fs::write(&projection, &bytes[..bytes.len() - 4]).unwrap();
    assert!(AnnIndex::open(&dir).map(drop).unwrap_err().to_string().contains("projection.f32"));
    std::fs::write(&projection, &bytes).unwrap();
    let small =
        AnnIndex::build(&other, AnnParams { components: 8, sample: 300, ..small_params() }, &tmp.path().join("s"));
    drop(small.unwrap());
    std::fs::copy(tmp.path().join("s/graph.usearch"), dir.join("graph.usearch")).unwrap();
    let e = AnnIndex::open(&dir).map(drop).unwrap_err().to_string();
    assert!(e.contains("graph.usearch") && e.contains("500 rows of 8"), "{e}");

    // An f16 file whose header does not fit its length.
    let f16 = tmp.path().join("rows.f16");
    let bytes = std::fs::read(&f16).unwrap();
    std::fs::write(&f16, &bytes[..bytes.len() - 2]).unwrap();
    let e = F16Rows::open(&f16).map(drop).unwrap_err().to_string();
    assert!(e.contains("600 rows of 64 values"), "{e}");
}
