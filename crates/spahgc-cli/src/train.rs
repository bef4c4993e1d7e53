//! `spahgc train`, and the model options it shares with `spahgc eval`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;
use spahgc_bank::{ReferenceBank, build_bank};
use spahgc_core::GenePanel;
use spahgc_model::{Architecture, EpochReport, ModelSettings, TargetEncoder, TrainConfig, fit};

use crate::bank::GenesArgs;
use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
use crate::output::Output;

/// File of the reference bank inside a model directory written by `spahgc train`.
pub const BANK_FILE: &str = "bank.spb";

/// SpaHGC's network, graph and training options (defaults: the paper's).
#[derive(Args)]
pub struct ModelArgs {
    /// Training epochs (fixed; no checkpoint is chosen on test data).
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hidden width.
    #[arg(long, default_value_t = Architecture::default().hidden)]
    hidden: usize,
    /// Message-passing layers.
    #[arg(long, default_value_t = Architecture::default().layers)]
    layers: usize,
    /// Reference spots retrieved per target.
    #[arg(long, default_value_t = 7)]
    top_k: usize,
    /// Fraction of target feature entries masked from the online view.
    #[arg(long, default_value_t = TrainConfig::default().target_mask_ratio)]
    target_mask_ratio: f64,
    /// Fraction of reference feature entries masked from the online view.
    #[arg(long, default_value_t = TrainConfig::default().reference_mask_ratio)]
    reference_mask_ratio: f64,
    /// Update the contrastive target encoder as an EMA of the online one with this tau
    /// (default: a frozen copy of the initial encoder).
    #[arg(long, value_name = "TAU")]
    ema: Option<f64>,
    /// Ablation: no masking and no contrastive loss.
    #[arg(long)]
    no_contrast: bool,
    /// Ablation: no cross-node dual attention in the layers.
    #[arg(long)]
    no_cnda: bool,
}

impl ModelArgs {
    pub fn settings(&self) -> ModelSettings {
        let mut s = ModelSettings::default();
        s.architecture.hidden = self.hidden;
        s.architecture.layers = self.layers;
        s.architecture.cnda = !self.no_cnda;
        s.graph.top_k = self.top_k;
        let t = &mut s.training;
        t.epochs = self.epochs;
        t.seed = self.seed;
        t.target_mask_ratio = self.target_mask_ratio;
        t.reference_mask_ratio = self.reference_mask_ratio;
        if let Some(tau) = self.ema {
            t.target_encoder = TargetEncoder::Ema { tau };
        }
        if self.no_contrast {
            (t.target_mask_ratio, t.reference_mask_ratio) = (0.0, 0.0);
            (t.target_contrast_weight, t.reference_contrast_weight) = (0.0, 0.0);
        }
        s
    }
}

/// A progress callback that moves `bar` one epoch and shows the loss.
pub fn epoch_progress(bar: &ProgressBar) -> impl FnMut(&EpochReport) + '_ {
    move |r: &EpochReport| {
        bar.set_position(r.epoch as u64);
        bar.set_message(format!("loss {:.3}", r.loss));
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// The training sections.
    #[command(flatten)]
    sections: SectionsArgs,
    #[command(flatten)]
    genes: GenesArgs,
    /// Model directory to write (config.json, weights.safetensors, bank.spb).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(args: TrainArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.sections.sections.len() >= 2,
        "training needs at least two sections (references come from the others)"
    );
    let panel = GenePanel::read(&args.genes.panel)?;
    let data = EmbeddedSections::load(&args.sections, &args.encoder, &args.cache, out)?;
    let inputs = data.views();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let bank_path = args.out.join(BANK_FILE);
    build_bank(&bank_path, &inputs, &panel.genes, args.genes.normalisation.into(), &data.encoder_sha256)
        .with_context(|| format!("building {}", bank_path.display()))?;
    let bank = ReferenceBank::open(&bank_path)?;
    let settings = args.model.settings();
    let bar = out.progress("train", settings.training.epochs);
    let started = std::time::Instant::now();
    let model = fit(&inputs, &bank, &settings, &mut epoch_progress(&bar))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    model.save(&args.out)?;
    let c = model.config();
    out.report(
        &format!(
            "trained SpaHGC on {} ({} epochs, {:.1} s, {:.3} s/epoch), {} genes; wrote {}",
            c.training_sections.join(","),
            c.training.epochs,
            seconds,
            seconds / c.training.epochs.max(1) as f64,
            c.genes.len(),
            args.out.display()
        ),
        serde_json::json!({
            "out": args.out, "sections": c.training_sections, "epochs": c.training.epochs,
            "seconds": seconds, "genes": c.genes.len(),
        }),
    )
}
