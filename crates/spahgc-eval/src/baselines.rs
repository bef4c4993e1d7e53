//! Baselines that SpaHGC must beat, trained on the same embeddings and targets.
//!
//! - [`MeanBaseline`]: every spot gets the training mean of each gene.
//! - [`knn_exemplar`]: the mean expression of the k most similar reference spots (BLEEP-style
//!   exemplar retrieval), through the same bank and retrieval as SpaHGC's reference nodes.
//! - [`PcaRidge`]: standardised embeddings, PCA to 256 components, then ridge regression (the
//!   HEST-Benchmark protocol, with its `alpha = 100 / (components × genes)`; unlike HEST we fit
//!   an intercept, so predictions sit at the right level for RMSE — correlations are unchanged).
//! - [`Mlp`]: a 2-layer perceptron on the embedding, `Linear(D→256) → ReLU → Dropout(0.2) →
//!   Linear(256→G)`, trained full-batch on MSE with AdamW (lr 1e-3, weight decay 1e-4) for a
//!   fixed 300 epochs.

use candle_core::Tensor;
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use spahgc_bank::ReferenceBank;
use spahgc_model::ModelError;
use spahgc_model::nn::{AdamW, Linear, Noise, ParamSource, Weights, draw, seeded, to_array, to_tensor, trainable};

use crate::EvalError;

/// Predicts the training mean of every gene.
pub struct MeanBaseline {
    means: Array1<f32>,
}

impl MeanBaseline {
    /// Fits on training targets (spots × genes).
    pub fn fit(targets: ArrayView2<f32>) -> Result<Self, EvalError> {
        let means = targets.mean_axis(Axis(0)).ok_or_else(|| EvalError::Input("no training spot".into()))?;
        Ok(Self { means })
    }

    /// The prediction for `n` spots.
    pub fn predict(&self, n: usize) -> Array2<f32> {
        self.means.broadcast((n, self.means.len())).expect("a row broadcasts").to_owned()
    }
}

/// Mean normalised expression of each query's `k` most similar bank spots (cosine similarity).
pub fn knn_exemplar(bank: &ReferenceBank, queries: ArrayView2<f32>, k: usize) -> Result<Array2<f32>, EvalError> {
    let hits = bank.top_k(queries, k, None)?;
    let mut out = Array2::zeros((queries.nrows(), bank.meta().genes.len()));
    for (mut row, neighbours) in out.rows_mut().into_iter().zip(hits) {
        for hit in &neighbours {
            row += &bank.expression(hit.index);
        }
        row /= neighbours.len().max(1) as f32;
    }
    Ok(out)
}

/// Standardisation and PCA followed by ridge regression.
pub struct PcaRidge {
    mean: Array1<f64>,
    /// Per-feature standard deviation on the training spots (1 where a feature is constant).
    scale: Array1<f64>,
    /// Features × components.
    components: Array2<f64>,
    /// Components × genes.
    weights: Array2<f64>,
    intercept: Array1<f64>,
}

impl PcaRidge {
    /// Fits on training features (spots × dimensions) and targets (spots × genes), keeping at most
    /// `n_components` principal components.
    pub fn fit(features: ArrayView2<f32>, targets: ArrayView2<f32>, n_components: usize) -> Result<Self, EvalError> {
        let (n, d) = features.dim();
        if n < 2 || targets.nrows() != n {
            return Err(EvalError::Input(format!(
                "ridge needs ≥ 2 spots with targets, got {n} and {}",
                targets.nrows()
            )));
        }
        let x = features.mapv(f64::from);
        let mean = x.mean_axis(Axis(0)).expect("n ≥ 2");
        let scale = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 0.0 { s } else { 1.0 });
        let centred = (&x - &mean) / &scale;
        // Principal axes: eigenvectors of the covariance, largest eigenvalues first.
        let cov = centred.t().dot(&centred) / (n - 1) as f64;
        let eigen = SymmetricEigen::new(DMatrix::from_row_slice(d, d, cov.as_slice().expect("contiguous")));
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]).then(a.cmp(&b)));
        let p = n_components.min(d).min(n - 1);
        let mut components = Array2::zeros((d, p));
        for (j, &i) in order[..p].iter().enumerate() {
            let v = eigen.eigenvectors.column(i);
            // Fix each axis's sign (largest entry positive) so the fit is deterministic.
            let sign =
                if v.iter().fold(0f64, |m, &x| if x.abs() > m.abs() { x } else { m }) < 0.0 { -1.0 } else { 1.0 };
            for r in 0..d {
                components[[r, j]] = sign * v[r];
            }
        }
        let z = centred.dot(&components);
        let y = targets.mapv(f64::from);
        let intercept = y.mean_axis(Axis(0)).expect("n ≥ 2");
        let yc = &y - &intercept;
        let alpha = 100.0 / (p as f64 * y.ncols().max(1) as f64);
        let mut gram = z.t().dot(&z);
        for i in 0..p {
            gram[[i, i]] += alpha;
        }
        let rhs = z.t().dot(&yc);
        let cholesky = DMatrix::from_row_slice(p, p, gram.as_slice().expect("contiguous"))
            .cholesky()
            .ok_or_else(|| EvalError::Input("ridge system is not positive definite".into()))?;
        let solved = cholesky.solve(&DMatrix::from_row_slice(p, rhs.ncols(), rhs.as_slice().expect("contiguous")));
        let weights = Array2::from_shape_fn((p, rhs.ncols()), |(i, j)| solved[(i, j)]);
        Ok(Self { mean, scale, components, weights, intercept })
    }

    /// Predicts targets for features (spots × dimensions).
    pub fn predict(&self, features: ArrayView2<f32>) -> Array2<f32> {
        let centred = (features.mapv(f64::from) - &self.mean) / &self.scale;
        (centred.dot(&self.components).dot(&self.weights) + &self.intercept).mapv(|v| v as f32)
    }
}

/// A 2-layer perceptron from embeddings to normalised expression.
pub struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Mlp {
    const HIDDEN: usize = 256;
    const DROPOUT: f64 = 0.2;
    const EPOCHS: usize = 300;
    const LEARNING_RATE: f64 = 1e-3;
    const WEIGHT_DECAY: f64 = 1e-4;

    fn new(src: &mut ParamSource, inputs: usize, outputs: usize) -> Result<Self, ModelError> {
        Ok(Self {
            hidden: Linear::standard(src, "hidden", inputs, Self::HIDDEN, true)?,
            output: Linear::standard(src, "output", Self::HIDDEN, outputs, true)?,
        })
    }

    fn forward(&self, x: &Tensor, noise: &mut Noise) -> Result<Tensor, ModelError> {
        let h = noise.dropout(&self.hidden.forward(x)?.relu()?, Self::DROPOUT)?;
        self.output.forward(&h)
    }

    /// Trains on `features` (spots × D) and `targets` (spots × G); `seed` fixes the run.
    pub fn fit(features: ArrayView2<f32>, targets: ArrayView2<f32>, seed: u64) -> Result<Self, EvalError> {
        let (d, g) = (features.ncols(), targets.ncols());
        let mut rng = seeded(seed);
        let initial = draw(&mut rng, |src| Self::new(src, d, g))?;
        let (vars, weights) = trainable(&initial)?;
        let model = Self::new(&mut ParamSource::Existing { weights: &weights, used: Default::default() }, d, g)?;
        let mut optimiser = AdamW::new(vars, Self::LEARNING_RATE, Self::WEIGHT_DECAY);
        let (x, y) = (to_tensor(features)?, to_tensor(targets)?);
        for _ in 0..Self::EPOCHS {
            let predicted = model.forward(&x, &mut Noise::training(&mut rng))?;
            optimiser.backward_step(&(predicted - &y)?.sqr()?.mean_all()?)?;
        }
        let frozen: Weights = weights.iter().map(|(k, v)| (k.clone(), v.detach())).collect();
        Ok(Self::new(&mut ParamSource::Existing { weights: &frozen, used: Default::default() }, d, g)?)
    }

    /// Predictions for `features` (spots × D).
    pub fn predict(&self, features: ArrayView2<f32>) -> Result<Array2<f32>, EvalError> {
        Ok(to_array(&self.forward(&to_tensor(features)?, &mut Noise::none())?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ridge_recovers_a_linear_map_through_its_principal_axes() {
        // Features live in a 3-d subspace of 10 dimensions; targets are linear in them. Ridge
        // shrinks the fit slightly, so the error is judged against the targets' spread.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let latent = Array2::from_shape_fn((200, 3), |_| rng.random_range(-10.0..10.0f64));
        let mixing = Array2::from_shape_fn((3, 10), |_| rng.random_range(-1.0..1.0f64));
        let map = Array2::from_shape_fn((3, 2), |_| rng.random_range(-1.0..1.0f64));
        let x = latent.dot(&mixing).mapv(|v| v as f32);
        let y = (latent.dot(&map) + 5.0).mapv(|v| v as f32);
        let model = PcaRidge::fit(x.view(), y.view(), 3).unwrap();
        let err = (&model.predict(x.view()) - &y).iter().fold(0f32, |m, d| m.max(d.abs()));
        let spread = y.iter().fold(0f32, |m, v| m.max((v - 5.0).abs()));
        assert!(err < 0.05 * spread, "max error {err} against a spread of {spread}");
        // With fewer components than the signal needs, the fit must be visibly worse.
        let one = PcaRidge::fit(x.view(), y.view(), 1).unwrap();
        let err_one = (&one.predict(x.view()) - &y).iter().fold(0f32, |m, d| m.max(d.abs()));
        assert!(err_one > 0.2 * spread, "one component cannot fit a 3-d map: {err_one}");
        assert!(PcaRidge::fit(x.slice(ndarray::s![..1, ..]), y.slice(ndarray::s![..1, ..]), 3).is_err());
    }

    #[test]
    fn the_mean_baseline_predicts_training_means() {
        let y = ndarray::array![[1.0f32, 0.0], [3.0, 1.0]];
        let p = MeanBaseline::fit(y.view()).unwrap().predict(3);
        assert_eq!(p, ndarray::array![[2.0f32, 0.5], [2.0, 0.5], [2.0, 0.5]]);
    }
}
