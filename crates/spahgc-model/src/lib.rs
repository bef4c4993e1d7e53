//! SpaHGC (Shi, Wang, Wan, Min, CVPR 2026): a heterogeneous graph network that predicts a target
//! section's spot expression from image embeddings and retrieved reference spots, trained with
//! masked graph contrastive learning. Tensors and autodiff come from candle, on CPU.
//!
//! # The network
//! Target nodes carry image embeddings (D); reference nodes carry `[embedding ‖ normalised
//! expression]` (D + G). Both are projected to H (no bias) and pass one shared block
//! `LeakyReLU → Dropout(0.2) → Linear(H→H, no bias) → LayerNorm → LeakyReLU`. The references'
//! expression token `Linear(G→H, no bias)` stays fixed through the layers. Each of the L layers
//! averages, per node type, a mean-aggregation SAGE convolution over same-type edges with cross
//! node dual attention (CNDA) over the refer edges, then applies LeakyReLU. CNDA attends from
//! targets over `[x_ref ‖ LayerNorm(token)]` and from references over targets; scores are
//! LeakyReLU(⟨q, k⟩/√(H/heads)) with a softmax over the edges reaching each node. The readout
//! pools each target over its references with the same attention (CNAP, `t + attended`) and
//! maps to G genes.
//!
//! # Training
//! One section graph per step; each training section's references come from the other training
//! sections. Complementary Bernoulli masks over feature entries (targets 0.1, references 0.9)
//! give two views; the online network sees the first and predicts from it, a target encoder
//! sees the second without gradients, and the BGRL loss `2 − 2·cos` ties the two per node type.
//! Loss = MSE + 0.5·(1 − mean per-gene r) + 0.2·BGRL(targets) + 0.1·BGRL(references); AdamW
//! (lr 1e-4, weight decay 1e-4); a fixed number of epochs (200).
//!
//! # Computation
//! Tensors and autodiff are candle's, on the CPU. Message passing (mean aggregation, segment
//! softmax attention) runs as fused host kernels with hand-written backward passes
//! (`kernels.rs`, checked against finite differences in `tests/gradients.rs`): nothing of edges ×
//! width is materialised. AdamW updates each parameter in one pass over host memory.
//!
//! # Deviations from the reference implementation
//! - No checkpoint is picked by test-section PCC (that leaks the test section into the model);
//!   training runs a fixed number of epochs and the last weights are the model.
//! - The target encoder is the frozen initial copy as in the reference, or optionally an EMA of
//!   the online encoder ([`TargetEncoder::Ema`]).
//! - Linear weights are stored inputs × outputs (`x · W`), the transpose of PyTorch's layout.
//! - Random draws (initial weights, masks, dropout, section order) come from one seeded ChaCha
//!   generator, so a seed fixes a run; the values differ from PyTorch's generator.

mod config;
mod graph;
mod kernels;
mod model;
mod network;
pub mod nn;
mod train;

use std::path::PathBuf;

pub use config::{Architecture, FORMAT_VERSION, ModelConfig, ModelSettings, TargetEncoder, TrainConfig};
pub use graph::GraphInputs;
pub use model::{CONFIG_FILE, SpaHgc, WEIGHTS_FILE};
pub use train::{EpochReport, TrainingSection, fit, train};

/// Errors raised by the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Inputs that do not fit the model or cannot form a graph.
    #[error("model input: {0}")]
    Input(String),
    /// A configuration that cannot describe a network.
    #[error("model config: {0}")]
    Config(String),
    /// Missing, misshapen or corrupt weights.
    #[error("model weights: {0}")]
    Weights(String),
    #[error("training diverged (non-finite loss) in epoch {epoch}")]
    Diverged { epoch: usize },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Graph(#[from] spahgc_graph::GraphError),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
