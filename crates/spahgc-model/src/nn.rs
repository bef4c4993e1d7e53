//! Building blocks on candle tensors: parameters, linear layers, LayerNorm, dropout, and the
//! message-passing operations (scatter-mean, segment softmax attention) the network is made of.
//!
//! Everything random (initial weights, dropout, feature masks) comes from one seeded ChaCha
//! generator, so a seed fixes a training run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor, Var};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ModelError;
use crate::kernels::{Csr, EdgeAttention, ScatterMean};

/// Named tensors, ordered by name.
pub type Weights = BTreeMap<String, Tensor>;

/// How a fresh parameter is initialised.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Uniform on ±1/√fan_in (PyTorch's default for linear layers).
    FanInUniform {
        fan_in: usize,
    },
    /// Normal with this standard deviation, redrawn outside ±2σ.
    TruncatedNormal {
        std: f64,
    },
    Zeros,
    Ones,
}

/// Where a network's parameters come from: fresh from a seeded generator, or from a map of
/// existing tensors (trained weights, variables, frozen copies).
pub enum ParamSource<'a> {
    /// Draws each parameter and records it.
    Fresh { rng: &'a mut ChaCha8Rng, drawn: Weights },
    /// Looks each parameter up by name, checks its shape and records the name.
    Existing { weights: &'a Weights, used: BTreeSet<String> },
}

impl ParamSource<'_> {
    /// The parameter `name` of `shape`.
    pub fn get(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor, ModelError> {
        match self {
            ParamSource::Fresh { rng, drawn } => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = match init {
                    Init::FanInUniform { fan_in } => {
                        let bound = 1.0 / (fan_in as f32).sqrt();
                        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                    }
                    Init::TruncatedNormal { std } => (0..n).map(|_| truncated_normal(rng) * std as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
                drawn.insert(name.to_string(), tensor.clone());
                Ok(tensor)
            }
            ParamSource::Existing { weights, used } => {
                used.insert(name.to_string());
                let tensor =
                    weights.get(name).ok_or_else(|| ModelError::Weights(format!("tensor {name} is missing")))?;
                if tensor.dims() != shape || tensor.dtype() != DType::F32 {
                    return Err(ModelError::Weights(format!(
                        "tensor {name}: expected f32 {shape:?}, got {:?} {:?}",
                        tensor.dtype(),
                        tensor.dims()
                    )));
                }
                Ok(tensor.clone())
            }
        }
    }
}

/// Fresh parameters for whatever `build` constructs, drawn from `rng`.
pub fn draw<T>(
    rng: &mut ChaCha8Rng,
    build: impl FnOnce(&mut ParamSource) -> Result<T, ModelError>,
) -> Result<Weights, ModelError> {
    let mut src = ParamSource::Fresh { rng, drawn: Weights::new() };
    build(&mut src)?;
    let ParamSource::Fresh { drawn, .. } = src else { unreachable!("constructed as Fresh") };
    Ok(drawn)
}

/// AdamW with decoupled weight decay and PyTorch's betas (0.9, 0.999) and epsilon (1e-8). Each
/// variable is updated in one pass over host memory: the same arithmetic as a chain of tensor
/// operations without a dozen full-size temporaries per parameter and step.
pub struct AdamW {
    vars: Vec<Var>,
    first_moment: Vec<Vec<f32>>,
    second_moment: Vec<Vec<f32>>,
    steps: i32,
    learning_rate: f32,
    weight_decay: f32,
}

impl AdamW {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    pub fn new(vars: Vec<Var>, learning_rate: f64, weight_decay: f64) -> Self {
        let zeros = || vars.iter().map(|v| vec![0.0; v.elem_count()]).collect();
        Self {
            first_moment: zeros(),
            second_moment: zeros(),
            vars,
            steps: 0,
            learning_rate: learning_rate as f32,
            weight_decay: weight_decay as f32,
        }
    }

    /// Back-propagates `loss` and takes one step on every variable it reaches.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<(), ModelError> {
        let grads = loss.backward()?;
        self.steps += 1;
        let first_scale = 1.0 / (1.0 - Self::BETA1.powi(self.steps));
        let second_scale = 1.0 / (1.0 - Self::BETA2.powi(self.steps));
        let decay = 1.0 - self.learning_rate * self.weight_decay;
        for ((var, m), v) in self.vars.iter().zip(&mut self.first_moment).zip(&mut self.second_moment) {
            let Some(grad) = grads.get(var) else { continue };
            let grad: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let mut theta: Vec<f32> = var.flatten_all()?.to_vec1()?;
            for (((t, g), m), v) in theta.iter_mut().zip(&grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = Self::BETA1 * *m + (1.0 - Self::BETA1) * g;
                *v = Self::BETA2 * *v + (1.0 - Self::BETA2) * g * g;
                let step = (*m * first_scale) / ((*v * second_scale).sqrt() + Self::EPS);
                *t = *t * decay - self.learning_rate * step;
            }
            var.set(&Tensor::from_vec(theta, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

/// Trainable variables initialised from `initial`, and the same variables as weights (tensors
/// that track gradients into the variables) to build a network from.
pub fn trainable(initial: &Weights) -> Result<(Vec<Var>, Weights), ModelError> {
    let mut vars = Vec::with_capacity(initial.len());
    let mut weights = Weights::new();
    for (name, tensor) in initial {
        let var = Var::from_tensor(tensor)?;
        weights.insert(name.clone(), var.as_tensor().clone());
        vars.push(var);
    }
    Ok((vars, weights))
}

/// A standard normal draw, redrawn until it lies within ±2.
fn truncated_normal(rng: &mut ChaCha8Rng) -> f32 {
    loop {
        // Box–Muller on two uniforms in (0, 1].
        let u1: f32 = 1.0 - rng.random::<f32>();
        let u2: f32 = rng.random::<f32>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

/// `x · W (+ b)` with `W` stored inputs × outputs.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer initialised as PyTorch's `nn.Linear` (uniform on ±1/√inputs, bias too).
    pub fn standard(
        src: &mut ParamSource,
        name: &str,
        inputs: usize,
        outputs: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        let init = Init::FanInUniform { fan_in: inputs };
        Self::with_init(src, name, inputs, outputs, bias.then_some(init), init)
    }

    /// A layer with truncated-normal weights and a zero bias (the attention projections).
    pub fn attention(src: &mut ParamSource, name: &str, inputs: usize, outputs: usize) -> Result<Self, ModelError> {
        Self::with_init(src, name, inputs, outputs, Some(Init::Zeros), Init::TruncatedNormal { std: 0.02 })
    }

    fn with_init(
        src: &mut ParamSource,
        name: &str,
        inputs: usize,
        outputs: usize,
        bias: Option<Init>,
        weight: Init,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            weight: src.get(&format!("{name}.weight"), &[inputs, outputs], weight)?,
            bias: bias.map(|init| src.get(&format!("{name}.bias"), &[outputs], init)).transpose()?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let y = x.matmul(&self.weight)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Layer normalisation over the last dimension, written from primitive operations so that it
/// has a backward pass (candle's fused kernel has none).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gain: Tensor,
    shift: Tensor,
}

impl LayerNorm {
    const EPS: f64 = 1e-5;

    pub fn new(src: &mut ParamSource, name: &str, width: usize) -> Result<Self, ModelError> {
        Ok(Self {
            gain: src.get(&format!("{name}.weight"), &[width], Init::Ones)?,
            shift: src.get(&format!("{name}.bias"), &[width], Init::Zeros)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + Self::EPS)?.sqrt()?)?;
        Ok(normed.broadcast_mul(&self.gain)?.broadcast_add(&self.shift)?)
    }
}

/// A 2-D array as a tensor.
pub fn to_tensor(a: ArrayView2<f32>) -> Result<Tensor, ModelError> {
    Ok(Tensor::from_vec(a.iter().copied().collect::<Vec<f32>>(), a.dim(), &Device::Cpu)?)
}

/// A 2-D tensor as an array.
pub fn to_array(t: &Tensor) -> Result<Array2<f32>, ModelError> {
    let (rows, cols) = t.dims2()?;
    let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(Array2::from_shape_vec((rows, cols), values).expect("a tensor's shape matches its element count"))
}

/// LeakyReLU.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor, ModelError> {
    Ok(candle_nn::ops::leaky_relu(x, slope)?)
}

/// The randomness of a forward pass: dropout masks in training, none at inference.
pub struct Noise<'a> {
    rng: Option<&'a mut ChaCha8Rng>,
}

impl<'a> Noise<'a> {
    /// Training: dropout active, masks drawn from `rng`.
    pub fn training(rng: &'a mut ChaCha8Rng) -> Self {
        Self { rng: Some(rng) }
    }

    /// Inference: dropout is the identity.
    pub fn none() -> Self {
        Self { rng: None }
    }

    /// Inverted dropout with drop probability `p`.
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor, ModelError> {
        match self.keep(x.elem_count(), p) {
            Some(mask) => Ok(x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?),
            None => Ok(x.clone()),
        }
    }

    /// `n` inverted-dropout multipliers (0 with probability `p`, else 1/(1 − p)), or `None`
    /// when nothing is dropped.
    fn keep(&mut self, n: usize, p: f64) -> Option<Vec<f32>> {
        let rng = self.rng.as_deref_mut()?;
        if p <= 0.0 {
            return None;
        }
        Some(bernoulli_mask(rng, n, p, (1.0 / (1.0 - p)) as f32))
    }
}

/// `n` draws from `rng`: 0 with probability `p`, else `kept`.
pub(crate) fn bernoulli_mask(rng: &mut ChaCha8Rng, n: usize, p: f64, kept: f32) -> Vec<f32> {
    (0..n).map(|_| if rng.random::<f64>() < p { 0.0 } else { kept }).collect()
}

/// A seeded generator.
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// How attention along edges scores and drops: `heads` heads side by side, scores through
/// LeakyReLU with `negative_slope`, attention weights dropped with probability `dropout` in
/// training.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    pub heads: usize,
    pub negative_slope: f64,
    pub dropout: f64,
}

/// Directed edges, grouped by destination for message passing.
#[derive(Debug, Clone)]
pub struct Edges {
    csr: Arc<Csr>,
}

impl Edges {
    /// Edges `(source, destination)` into `n_dst` destination nodes.
    pub fn new(edges: &[(u32, u32)], n_dst: usize) -> Result<Self, ModelError> {
        if let Some(&(s, d)) = edges.iter().find(|e| e.1 as usize >= n_dst) {
            return Err(ModelError::Input(format!("edge {s} → {d} points past the {n_dst} destination nodes")));
        }
        Ok(Self { csr: Arc::new(Csr::new(edges, n_dst)) })
    }

    /// The same edges pointing the other way, into `n_src` nodes.
    pub fn reversed(edges: &[(u32, u32)], n_src: usize) -> Result<Self, ModelError> {
        let flipped: Vec<(u32, u32)> = edges.iter().map(|&(s, d)| (d, s)).collect();
        Self::new(&flipped, n_src)
    }

    /// Mean of the source rows of `x` arriving at each destination (0 where none arrive).
    pub fn scatter_mean(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(x.contiguous()?.apply_op1(ScatterMean(self.csr.clone()))?)
    }

    /// Multi-head attention along the edges: each destination attends over the sources that
    /// reach it. `q` holds destination rows, `k` and `v` source rows (all heads side by side).
    /// Score = LeakyReLU(⟨q, k⟩ / √(head width)), softmax over the edges arriving at each
    /// destination, dropout on the weights, weighted sum of the values.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scoring: Scoring,
        noise: &mut Noise,
    ) -> Result<Tensor, ModelError> {
        let Scoring { heads, negative_slope, dropout } = scoring;
        let op = EdgeAttention {
            csr: self.csr.clone(),
            heads,
            negative_slope: negative_slope as f32,
            keep: noise.keep(self.csr.n_edges() * heads, dropout),
        };
        Ok(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
    }
}

/// Mean over genes of the Pearson correlation between the columns of `a` and `b` (spots ×
/// genes); a constant column contributes 0.
pub fn mean_column_pearson(a: &Tensor, b: &Tensor) -> Result<Tensor, ModelError> {
    const EPS: f64 = 1e-8;
    let ac = a.broadcast_sub(&a.mean_keepdim(0)?)?;
    let bc = b.broadcast_sub(&b.mean_keepdim(0)?)?;
    let covariance = (&ac * &bc)?.sum(0)?;
    let norms = ((ac.sqr()?.sum(0)? + EPS)?.sqrt()? * (bc.sqr()?.sum(0)? + EPS)?.sqrt()?)?;
    Ok(covariance.div(&norms)?.mean_all()?)
}

/// BGRL's loss between two views' node embeddings: 2 − 2 · mean cosine similarity of rows.
pub fn bootstrap_loss(online: &Tensor, target: &Tensor) -> Result<Tensor, ModelError> {
    let unit = |x: &Tensor| -> Result<Tensor, ModelError> {
        Ok(x.broadcast_div(&(x.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?)?)
    };
    let cosine = (unit(online)? * unit(target)?)?.sum(1)?.mean_all()?;
    Ok(cosine.affine(-2.0, 2.0)?)
}
