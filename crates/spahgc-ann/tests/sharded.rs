//! A bank of two shards, each with its own index beside its file, searched as one.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spahgc_ann::AnnParams;
use spahgc_bank::{BankSection, EmbeddingPrecision, Normalise, ReferenceBank, build_bank, build_bank_with, join_banks};
use spahgc_core::{CountMatrix, Normalisation, Section, Spot};

const DIM: usize = 32;

/// A section of `spots` spots over two genes, with embeddings around 20 shared cluster centres.
fn section(name: &str, spots: usize, rng: &mut ChaCha8Rng, centres: &Array2<f32>) -> (Section, Array2<f32>) {
    let genes = vec!["G0".to_string(), "G1".to_string()];
    let indptr: Vec<usize> = (0..=spots).map(|i| 2 * i).collect();
    let indices: Vec<u32> = (0..spots).flat_map(|_| [0, 1]).collect();
    let values: Vec<f32> = (0..2 * spots).map(|_| rng.random_range(1..30) as f32).collect();
    let section = Section {
        name: name.into(),
        spots: (0..spots).map(|i| Spot { id: format!("{name}-{i}"), x: i as f64, y: 0.0 }).collect(),
        counts: CountMatrix::from_csr(genes, indptr, indices, values).unwrap(),
        image: None,
        microns_per_pixel: None,
        spot_diameter_px: None,
    };
    let embeddings = Array2::from_shape_fn((spots, DIM), |(i, d)| {
        centres[[i % centres.nrows(), d]] + 0.3 * rng.random_range(-1.0f32..1.0)
    });
    (section, embeddings)
}

/// Two bank files of 1200 (f32) and 900 spots (f16), normalised alike, in `dir`.
fn two_banks(dir: &Path) -> [PathBuf; 2] {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let centres = Array2::from_shape_fn((20, DIM), |_| rng.random_range(-1.0f32..1.0));
    let (a, ea) = section("A", 1200, &mut rng, &centres);
    let (b, eb) = section("B", 900, &mut rng, &centres);
    let genes = ["G0".to_string(), "G1".to_string()];
    let paths = [dir.join("a.spb"), dir.join("b.spb")];
    let first = build_bank(
        &paths[0],
        &[BankSection { section: &a, embeddings: ea.view() }],
        &genes,
        Normalisation::MinMax,
        "e",
    )
    .unwrap();
    build_bank_with(
        &paths[1],
        &[BankSection { section: &b, embeddings: eb.view() }],
        Normalise::As(&first.norm),
        EmbeddingPrecision::F16,
        "e",
    )
    .unwrap();
    paths
}

#[test]
fn each_shard_is_searched_through_its_own_index() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("both.banks");
    let exact = join_banks(&list, &two_banks(tmp.path())).unwrap();
    let params = AnnParams { components: 24, connectivity: 12, sample: 800, ..Default::default() };
    let built = spahgc_ann::build_beside(&exact, params).unwrap();
    assert_eq!(built.iter().map(|i| i.dir().file_name().unwrap().to_owned()).collect::<Vec<_>>(), ["a.ann", "b.ann"]);

    let mut approximate = ReferenceBank::open(&list).unwrap();
    assert_eq!(spahgc_ann::attach_beside(&mut approximate, Some(0)).unwrap(), 2);
    assert!(approximate.searches_index() && !exact.searches_index());
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let queries = Array2::from_shape_fn((100, DIM), |_| rng.random_range(-1.0f32..1.0));
    for exclude in [None, Some("A")] {
        let want = exact.top_k(queries.view(), 7, exclude).unwrap();
        let got = approximate.top_k(queries.view(), 7, exclude).unwrap();
        let mut found = 0;
        for (want, got) in want.iter().zip(&got) {
            assert_eq!(got.len(), 7);
            found += got.iter().filter(|n| want.iter().any(|w| w.index == n.index)).count();
            if exclude.is_some() {
                assert!(got.iter().all(|n| n.index >= 1200), "section A (rows 0..1200) is excluded");
            }
        }
        let recall = found as f64 / 700.0;
        assert!(recall >= 0.95, "recall@7 {recall} with exclude {exclude:?}");
    }
}
