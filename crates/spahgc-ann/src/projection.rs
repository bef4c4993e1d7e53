//! The projection of unit embeddings onto their leading principal components, fitted on a
//! sample by subspace iteration (seeded, so the same sample gives the same projection).

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Power iterations of the subspace: enough for the leading components of embedding spectra,
/// whose eigenvalues fall off quickly.
const ITERATIONS: usize = 4;

/// `x ↦ ((x / |x|) - mean) · basis / scale`: unit rows centred, onto `components` directions,
/// scaled so that the sample's values lie in [-1, 1].
pub(crate) struct Projection {
    pub(crate) mean: Array1<f32>,
    /// dim × components, orthonormal columns.
    pub(crate) basis: Array2<f32>,
    pub(crate) scale: f32,
}

impl Projection {
    /// Fits the projection on `sample` (rows × dim, any norm) keeping `components` directions.
    pub(crate) fn fit(sample: ArrayView2<f32>, components: usize, seed: u64) -> Self {
        let dim = sample.ncols();
        let mut unit = sample.to_owned();
        normalise_rows(&mut unit);
        let mean = unit.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(dim));
        let centred = &unit - &mean;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut basis = Array2::from_shape_fn((dim, components), |_| rng.random_range(-1.0f32..1.0));
        orthonormalise(&mut basis);
        for _ in 0..ITERATIONS {
            basis = centred.t().dot(&centred.dot(&basis));
            orthonormalise(&mut basis);
        }
        let projected = centred.dot(&basis);
        let scale = projected.iter().fold(0f32, |m, v| m.max(v.abs()));
        Self { mean, basis, scale: if scale > 0.0 { scale } else { 1.0 } }
    }

    /// `rows` (any norm) projected.
    pub(crate) fn apply(&self, rows: ArrayView2<f32>) -> Array2<f32> {
        let mut unit = rows.to_owned();
        normalise_rows(&mut unit);
        (&unit - &self.mean).dot(&self.basis) / self.scale
    }
}

/// Scales each row to unit length; zero rows stay zero.
fn normalise_rows(rows: &mut Array2<f32>) {
    for mut row in rows.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
}

/// Modified Gram–Schmidt on the columns; a column with nothing left (the sample spans fewer
/// directions than asked for) becomes zero and adds nothing to a projection.
fn orthonormalise(m: &mut Array2<f32>) {
    for j in 0..m.ncols() {
        for i in 0..j {
            let d = m.column(i).dot(&m.column(j));
            let previous = m.column(i).to_owned();
            m.column_mut(j).scaled_add(-d, &previous);
        }
        let norm = m.column(j).dot(&m.column(j)).sqrt();
        let mut column = m.column_mut(j);
        if norm > 1e-6 { column /= norm } else { column.fill(0.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basis_is_orthonormal_and_finds_the_spread_directions() {
        // Unit points near the first axis, spread along the second and third, barely along the
        // others.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let sample = Array2::from_shape_fn((500, 8), |(_, j)| match j {
            0 => 1.0,
            1 | 2 => 0.1 * rng.random_range(-1.0f32..1.0),
            _ => 0.001 * rng.random_range(-1.0f32..1.0),
        });
        let p = Projection::fit(sample.view(), 2, 7);
        let gram = p.basis.t().dot(&p.basis);
        for ((i, j), v) in gram.indexed_iter() {
            assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-4, "{gram}");
        }
        let on_axes: f32 = p.basis.slice(ndarray::s![1..3, ..]).iter().map(|v| v * v).sum();
        let off_axes = 2.0 - on_axes;
        assert!(off_axes < 0.01, "{}", p.basis);
        let projected = p.apply(sample.view());
        assert!(projected.iter().all(|v| v.abs() <= 1.0 + 1e-5));
        assert_eq!(Projection::fit(sample.view(), 2, 7).basis, p.basis, "seeded: the same projection");
    }
}
