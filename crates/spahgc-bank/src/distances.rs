//! Distances between reference spots' features (embedding followed by normalised expression),
//! which the reference–reference kNN edges of every graph are drawn from. A graph's reference
//! nodes are a subset of the bank, so a small bank computes all pairs once and every graph looks
//! its distances up instead of multiplying feature matrices again.

use ndarray::{Array2, ArrayView2, s};

use crate::ReferenceBank;

/// Banks up to this many spots keep every pairwise distance (at most 64 MB).
const CACHED_PAIRS_MAX_SPOTS: usize = 4096;

/// Squared Euclidean distances between every pair of rows: ‖a‖² + ‖b‖² − 2 a·b, the products
/// as one matrix multiplication, clamped at 0 against rounding.
pub fn squared_distances(rows: ArrayView2<f32>) -> Array2<f32> {
    let squares: Vec<f32> = rows.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut gram = rows.dot(&rows.t());
    for ((i, j), v) in gram.indexed_iter_mut() {
        *v = (squares[i] + squares[j] - 2.0 * *v).max(0.0);
    }
    gram
}

impl ReferenceBank {
    /// Reference features of the bank's spots: embedding followed by normalised expression.
    pub fn features(&self, rows: &[usize]) -> Array2<f32> {
        let dim = self.meta().embedding_dim;
        let mut features = Array2::zeros((rows.len(), dim + self.meta().genes.len()));
        for (mut out, &row) in features.rows_mut().into_iter().zip(rows) {
            out.slice_mut(s![..dim]).assign(&self.embedding(row));
            out.slice_mut(s![dim..]).assign(&self.expression(row));
        }
        features
    }

    /// Squared distances between the features of every pair of bank spots, computed on first
    /// use; `None` for a bank too large to hold them or with non-finite features.
    pub fn feature_distances(&self) -> Option<&Array2<f32>> {
        self.distances
            .get_or_init(|| {
                if self.len() > CACHED_PAIRS_MAX_SPOTS {
                    return None;
                }
                let features = self.features(&(0..self.len()).collect::<Vec<_>>());
                features.iter().all(|v| v.is_finite()).then(|| squared_distances(features.view()))
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn distances_are_squared_euclidean() {
        let d = squared_distances(array![[0.0f32, 0.0], [3.0, 4.0], [1.0, 0.0]].view());
        assert_eq!(d, array![[0.0, 25.0, 1.0], [25.0, 0.0, 20.0], [1.0, 20.0, 0.0]]);
    }

    #[test]
    fn a_bank_caches_the_distances_of_its_features() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = crate::test_support::random_bank(dir.path(), 3);
        let all = bank.feature_distances().unwrap();
        assert_eq!(all.dim(), (bank.len(), bank.len()));
        let rows = [4, 0, 9];
        let direct = squared_distances(bank.features(&rows).view());
        for (a, &i) in rows.iter().enumerate() {
            for (b, &j) in rows.iter().enumerate() {
                let (x, y) = (direct[[a, b]], all[[i, j]]);
                assert!((x - y).abs() <= 1e-3 * x.max(1.0), "{i},{j}: {x} vs {y}");
            }
        }
    }
}
