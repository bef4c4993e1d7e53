//! Reference banks: spots of reference sections with measured expression, their image
//! embeddings, and top-k cosine retrieval over them: exact, or through an attached approximate
//! index for banks of millions of spots.
//!
//! A bank file (format in `format.rs`) opens memory-mapped on Unix: its arrays are used in place,
//! never copied; embeddings are stored as f32 or f16. Several bank files are searched as one
//! bank through a shard list (`shards.rs`). This crate knows nothing of images or ONNX and
//! compiles to `wasm32-wasip2` (where the file is read into memory instead).

mod build;
mod distances;
mod error;
mod format;
mod retrieve;
mod shards;

pub use build::{BankSection, BankWriter, Normalise, build_bank, build_bank_with};
pub use distances::squared_distances;
pub use error::BankError;
pub use format::{BankFile, BankMeta, EmbeddingPrecision, Embeddings, FORMAT_VERSION, SectionInfo};
pub use retrieve::{APPROXIMATE_FROM_SPOTS, ApproximateIndex, Neighbour, best_k, inverse_norm};
pub use shards::{ReferenceBank, join_banks};

#[cfg(test)]
mod test_support {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use spahgc_core::{CountMatrix, Normalisation, Section, Spot};

    use crate::{BankSection, ReferenceBank, build_bank};

    /// A random section of `spots` spots over genes G0..G9, with embeddings of `dim` dimensions.
    pub fn random_section(name: &str, spots: usize, dim: usize, rng: &mut ChaCha8Rng) -> (Section, Array2<f32>) {
        let genes: Vec<String> = (0..10).map(|g| format!("G{g}")).collect();
        let (mut indptr, mut indices, mut values) = (vec![0], Vec::new(), Vec::new());
        for _ in 0..spots {
            for g in 0..10u32 {
                if rng.random_bool(0.6) {
                    indices.push(g);
                    values.push(rng.random_range(1..50) as f32);
                }
            }
            indptr.push(indices.len());
        }
        let section = Section {
            name: name.into(),
            spots: (0..spots).map(|i| Spot { id: format!("{name}-{i}"), x: i as f64, y: 2.0 * i as f64 }).collect(),
            counts: CountMatrix::from_csr(genes, indptr, indices, values).unwrap(),
            image: None,
            microns_per_pixel: None,
            spot_diameter_px: None,
        };
        let embeddings = Array2::from_shape_fn((spots, dim), |_| rng.random_range(-1.0..1.0f32));
        (section, embeddings)
    }

    /// A bank of sections "A" (30 spots) and "B" (20 spots), 16-d embeddings, in `dir`.
    pub fn random_bank(dir: &std::path::Path, seed: u64) -> (ReferenceBank, Vec<(Section, Array2<f32>)>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let parts = vec![random_section("A", 30, 16, &mut rng), random_section("B", 20, 16, &mut rng)];
        let inputs: Vec<BankSection> =
            parts.iter().map(|(s, e)| BankSection { section: s, embeddings: e.view() }).collect();
        let genes: Vec<String> = ["G3", "G1", "G7"].iter().map(|g| g.to_string()).collect();
        let path = dir.join("bank.spb");
        build_bank(&path, &inputs, &genes, Normalisation::MinMax, &"ab".repeat(32)).unwrap();
        (ReferenceBank::open(&path).unwrap(), parts)
    }
}
