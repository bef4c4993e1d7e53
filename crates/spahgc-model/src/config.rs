//! What a trained model records about itself, and how training runs.

use serde::{Deserialize, Serialize};
use spahgc_bank::BankMeta;
use spahgc_core::NormStats;
use spahgc_graph::GraphParams;

use crate::ModelError;
use crate::graph::GraphInputs;

/// The weights-file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The network's shape (SpaHGC's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// LeakyReLU slope, in the network and in the attention scores.
    pub negative_slope: f64,
    /// Dropout in the shared pre-transform block.
    pub dropout: f64,
    /// Dropout on attention weights.
    pub attention_dropout: f64,
    /// Cross-node dual attention in each layer; off leaves each layer its SAGE convolution
    /// alone (an ablation).
    pub cnda: bool,
}

impl Default for Architecture {
    fn default() -> Self {
        Self { hidden: 256, layers: 4, heads: 4, negative_slope: 0.2, dropout: 0.2, attention_dropout: 0.1, cnda: true }
    }
}

/// Everything besides the weights that a prediction needs: input and output contracts, the
/// network's shape and the graph rules it was trained with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format_version: u32,
    /// Width of the image embeddings the model takes.
    pub embedding_dim: usize,
    /// SHA-256 of the encoder's ONNX file the embeddings must come from.
    pub encoder_sha256: String,
    /// Genes predicted, in output order.
    pub genes: Vec<String>,
    /// Statistics that turn log-normalised expression into targets (from training sections).
    pub normalisation: NormStats,
    pub architecture: Architecture,
    pub graph: GraphParams,
    /// Sections the model was trained on.
    pub training_sections: Vec<String>,
    pub training: TrainConfig,
}

impl ModelConfig {
    /// The configuration of a model trained with `settings` on `sections`, its input and output
    /// contracts (embedding width, encoder, genes, normalisation) taken from the bank `meta`.
    pub fn for_bank(meta: &BankMeta, settings: &ModelSettings, sections: Vec<String>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            embedding_dim: meta.embedding_dim,
            encoder_sha256: meta.encoder_sha256.clone(),
            genes: meta.genes.clone(),
            normalisation: meta.norm.clone(),
            architecture: settings.architecture,
            graph: settings.graph,
            training_sections: sections,
            training: settings.training.clone(),
        }
    }

    /// Checks that `inputs` (named `what` in errors) have this model's embedding width and
    /// reference feature width.
    pub(crate) fn check_inputs(&self, inputs: &GraphInputs, what: &str) -> Result<(), ModelError> {
        let (d, g) = (self.embedding_dim, self.genes.len());
        if inputs.embedding_dim() != d {
            return Err(ModelError::Input(format!(
                "{what}: target embeddings are {}-d, the model takes {d}-d",
                inputs.embedding_dim()
            )));
        }
        if inputs.reference_width() != d + g {
            return Err(ModelError::Input(format!(
                "{what}: reference features are {} wide, the model takes {d} + {g} genes",
                inputs.reference_width()
            )));
        }
        Ok(())
    }

    /// Checks that the recorded values can describe a network.
    pub fn validate(&self) -> Result<(), ModelError> {
        let a = &self.architecture;
        let fail = |what: String| Err(ModelError::Config(what));
        if self.format_version != FORMAT_VERSION {
            return fail(format!("format_version {} (this build reads {FORMAT_VERSION})", self.format_version));
        }
        if self.embedding_dim == 0 || self.genes.is_empty() {
            return fail(format!(
                "embedding_dim {} and {} genes; both must be positive",
                self.embedding_dim,
                self.genes.len()
            ));
        }
        if self.normalisation.genes != self.genes {
            return fail("normalisation.genes differs from genes".into());
        }
        if a.hidden == 0 || a.layers == 0 || a.heads == 0 || !a.hidden.is_multiple_of(a.heads) {
            return fail(format!(
                "hidden {} must be a positive multiple of heads {} (layers {})",
                a.hidden, a.heads, a.layers
            ));
        }
        for (name, p) in [("dropout", a.dropout), ("attention_dropout", a.attention_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("{name} {p} must lie in [0, 1)"));
            }
        }
        self.training.validate()
    }
}

/// What a user chooses before training: the network, the graph rules and the training run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSettings {
    pub architecture: Architecture,
    pub graph: GraphParams,
    pub training: TrainConfig,
}

/// Which network produces the second view's embeddings in the contrastive loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetEncoder {
    /// A copy of the online encoder taken at initialisation and never updated (the reference).
    Frozen,
    /// A copy updated after each step as `tau · target + (1 − tau) · online` (BGRL).
    Ema { tau: f64 },
}

/// How the model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Fraction of target feature entries hidden from the online view.
    pub target_mask_ratio: f64,
    /// Fraction of reference feature entries hidden from the online view.
    pub reference_mask_ratio: f64,
    pub target_encoder: TargetEncoder,
    /// Weight of the mean-squared error.
    pub mse_weight: f64,
    /// Weight of 1 − mean per-gene Pearson r.
    pub pcc_weight: f64,
    /// Weight of the target nodes' contrastive loss.
    pub target_contrast_weight: f64,
    /// Weight of the reference nodes' contrastive loss.
    pub reference_contrast_weight: f64,
    /// Seed of every random draw (weights, masks, dropout, section order).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 200,
            learning_rate: 1e-4,
            weight_decay: 1e-4,
            target_mask_ratio: 0.1,
            reference_mask_ratio: 0.9,
            target_encoder: TargetEncoder::Frozen,
            mse_weight: 1.0,
            pcc_weight: 0.5,
            target_contrast_weight: 0.2,
            reference_contrast_weight: 0.1,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |what: String| Err(ModelError::Config(what));
        for (name, r) in
            [("target_mask_ratio", self.target_mask_ratio), ("reference_mask_ratio", self.reference_mask_ratio)]
        {
            if !(0.0..1.0).contains(&r) {
                return fail(format!("{name} {r} must lie in [0, 1)"));
            }
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return fail(format!("learning_rate {} must be positive", self.learning_rate));
        }
        if let TargetEncoder::Ema { tau } = self.target_encoder
            && !(0.0..=1.0).contains(&tau)
        {
            return fail(format!("EMA tau {tau} must lie in [0, 1]"));
        }
        Ok(())
    }

    /// Whether the contrastive branch runs at all.
    pub fn contrastive(&self) -> bool {
        self.target_contrast_weight != 0.0 || self.reference_contrast_weight != 0.0
    }
}
