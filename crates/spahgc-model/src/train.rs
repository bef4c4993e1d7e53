//! Training: supervised loss on the masked online view plus BGRL-style contrast between
//! complementary feature masks.

use candle_core::Tensor;
use ndarray::ArrayView2;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use spahgc_bank::{BankSection, ReferenceBank};
use spahgc_core::panel_expression;

use crate::ModelError;
use crate::config::{ModelConfig, ModelSettings, TargetEncoder};
use crate::graph::GraphInputs;
use crate::model::{SpaHgc, detached_copy, initial_weights};
use crate::network::Network;
use crate::nn::{AdamW, Noise, bernoulli_mask, bootstrap_loss, mean_column_pearson, seeded, to_tensor, trainable};

/// One training section: its graph (references from the other training sections) and its
/// normalised expression.
pub struct TrainingSection {
    pub name: String,
    inputs: GraphInputs,
    truth: Tensor,
}

impl TrainingSection {
    /// Pairs a section's graph with its targets (spots × genes, normalised).
    pub fn new(name: &str, inputs: GraphInputs, truth: ArrayView2<f32>) -> Result<Self, ModelError> {
        if truth.nrows() != inputs.graph().n_targets {
            return Err(ModelError::Input(format!(
                "section {name}: {} expression rows for {} spots",
                truth.nrows(),
                inputs.graph().n_targets
            )));
        }
        if truth.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!("section {name}: expression contains NaN or infinity")));
        }
        Ok(Self { name: name.to_string(), truth: to_tensor(truth)?, inputs })
    }
}

/// Trains SpaHGC on `sections`, retrieving references from `bank` — a bank built from exactly
/// these sections, whose genes and normalisation the model takes over. Each section's graph
/// draws its references from the other sections only.
pub fn fit(
    sections: &[BankSection],
    bank: &ReferenceBank,
    settings: &ModelSettings,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<SpaHgc, ModelError> {
    let meta = bank.meta();
    let graph = settings.graph;
    let names = sections.iter().map(|s| s.section.name.clone()).collect();
    let config = ModelConfig::for_bank(meta, settings, names);
    let prepared = sections
        .iter()
        .map(|s| {
            let name = &s.section.name;
            let mut truth = panel_expression(s.section, &meta.genes)
                .map_err(|e| ModelError::Input(format!("section {name}: {e}")))?;
            meta.norm.apply(&mut truth).map_err(|e| ModelError::Input(format!("section {name}: {e}")))?;
            let inputs = GraphInputs::build(&s.section.centres(), s.embeddings, bank, Some(name), graph)?;
            TrainingSection::new(name, inputs, truth.view())
        })
        .collect::<Result<Vec<_>, _>>()?;
    train(config, &prepared, progress)
}

/// Mean losses over the sections of one epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f64,
    pub mse: f64,
    /// Mean per-gene Pearson r of the training prediction (masked view).
    pub pcc: f64,
    pub target_contrast: f64,
    pub reference_contrast: f64,
}

/// Trains a model of `config` (architecture, genes, `config.training`) on `sections`, one
/// section graph per step, calling `progress` after every epoch.
pub fn train(
    config: ModelConfig,
    sections: &[TrainingSection],
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<SpaHgc, ModelError> {
    config.validate()?;
    if sections.is_empty() {
        return Err(ModelError::Input("training needs at least one section".into()));
    }
    for s in sections {
        config.check_inputs(&s.inputs, &format!("section {}", s.name))?;
        if s.truth.dims()[1] != config.genes.len() {
            return Err(ModelError::Input(format!(
                "section {}: expression of {} genes, the model predicts {}",
                s.name,
                s.truth.dims()[1],
                config.genes.len()
            )));
        }
    }
    let t = &config.training;
    let arch = config.architecture;
    let mut rng = seeded(t.seed);
    let initial = initial_weights(&config, &mut rng)?;
    let (vars, online_weights) = trainable(&initial)?;
    let online = Network::from_weights(&online_weights, &config)?;
    let mut target_weights = detached_copy(&initial)?;
    let mut target = Network::from_weights(&target_weights, &config)?;
    let mut optimiser = AdamW::new(vars, t.learning_rate, t.weight_decay);

    let mut order: Vec<usize> = (0..sections.len()).collect();
    for epoch in 1..=t.epochs {
        order.shuffle(&mut rng);
        let mut report = EpochReport { epoch, epochs: t.epochs, ..Default::default() };
        for &i in &order {
            let s = &sections[i];
            let (t_online, t_target) = complementary_views(&s.inputs.targets, t.target_mask_ratio, &mut rng)?;
            let (r_online, r_target) = complementary_views(&s.inputs.references, t.reference_mask_ratio, &mut rng)?;
            let mut noise = Noise::training(&mut rng);
            let edges = &s.inputs.edges;
            let (h_t, h_r) = online.encoder.forward(edges, &t_online, &r_online, &arch, &mut noise)?;
            let predicted = online.readout.forward(edges, &h_t, &h_r, &arch, &mut noise)?;
            let mse = (&predicted - &s.truth)?.sqr()?.mean_all()?;
            let pcc = mean_column_pearson(&predicted, &s.truth)?;
            let mut loss = ((&mse * t.mse_weight)? + (pcc.affine(-1.0, 1.0)? * t.pcc_weight)?)?;
            report.mse += scalar(&mse)?;
            report.pcc += scalar(&pcc)?;
            if t.contrastive() {
                let (z_t, z_r) = target.encoder.forward(edges, &t_target, &r_target, &arch, &mut noise)?;
                let contrast_t = bootstrap_loss(&h_t, &z_t.detach())?;
                let contrast_r = bootstrap_loss(&h_r, &z_r.detach())?;
                report.target_contrast += scalar(&contrast_t)?;
                report.reference_contrast += scalar(&contrast_r)?;
                loss = (loss + (contrast_t * t.target_contrast_weight)? + (contrast_r * t.reference_contrast_weight)?)?;
            }
            report.loss += scalar(&loss)?;
            optimiser.backward_step(&loss)?;
            if let TargetEncoder::Ema { tau } = t.target_encoder {
                for (name, w) in target_weights.iter_mut().filter(|(k, _)| k.starts_with("encoder.")) {
                    *w = ((&*w * tau)? + (online_weights[name].detach() * (1.0 - tau))?)?;
                }
                target = Network::from_weights(&target_weights, &config)?;
            }
        }
        let n = sections.len() as f64;
        for v in [
            &mut report.loss,
            &mut report.mse,
            &mut report.pcc,
            &mut report.target_contrast,
            &mut report.reference_contrast,
        ] {
            *v /= n;
        }
        if !report.loss.is_finite() {
            return Err(ModelError::Diverged { epoch });
        }
        progress(&report);
    }
    SpaHgc::new(config, online_weights)
}

/// The two views of features `x` under a random mask hiding a fraction `ratio` of the entries:
/// the first without the hidden entries, the second with only them.
fn complementary_views(x: &Tensor, ratio: f64, rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor), ModelError> {
    let keep = Tensor::from_vec(bernoulli_mask(rng, x.elem_count(), ratio, 1.0), x.shape(), x.device())?;
    let hidden = keep.affine(-1.0, 1.0)?;
    Ok((x.mul(&keep)?, x.mul(&hidden)?))
}

fn scalar(t: &Tensor) -> Result<f64, ModelError> {
    Ok(f64::from(t.to_scalar::<f32>()?))
}
