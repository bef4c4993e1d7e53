//! `spahgc train`, and the model options it shares with `spahgc eval`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;
use spahgc_bank::{ReferenceBank, build_bank};
use spahgc_bundle::{BANK_FILE, BundleSource, Grid, write_bundle};
use spahgc_core::{GenePanel, Section};
use spahgc_encoder::EncoderManifest;
use spahgc_graph::spot_pitch;
use spahgc_model::{Architecture, EpochReport, ModelSettings, TargetEncoder, TrainConfig, fit};

use crate::bank::GenesArgs;
use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
use crate::output::Output;

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
    /// Bundle directory to write (manifest.json, encoder/, model/, bank.spb); an existing bundle
    /// there is replaced once the new one is complete.
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
    let grid = Grid { spot_pitch_um: spot_pitch_um(&data.sections)? };
    let scratch = tempfile::tempdir()?;
    let bank_path = scratch.path().join(BANK_FILE);
    build_bank(&bank_path, &inputs, &panel.genes, args.genes.normalisation.into(), &data.encoder_sha256)
        .with_context(|| format!("building {}", bank_path.display()))?;
    let bank = ReferenceBank::open(&bank_path)?;
    let settings = args.model.settings();
    let bar = out.progress("train", settings.training.epochs);
    let started = std::time::Instant::now();
    let model = fit(&inputs, &bank, &settings, &mut epoch_progress(&bar))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let encoder_dir = args.encoder.dir()?;
    let encoder = EncoderManifest::read(&encoder_dir)?;
    let c = model.config();
    let source = BundleSource {
        name: format!("spahgc-{}-{}", encoder.name, c.training_sections.join("-")),
        model: &model,
        bank: &bank_path,
        encoder: &encoder_dir,
        grid,
        licence: format!("encoder {} {}: {}", encoder.name, encoder.version, encoder.licence),
        provenance: format!(
            "trained by spahgc {} on her2st sections {} ({}), {} epochs, seed {}",
            env!("CARGO_PKG_VERSION"),
            c.training_sections.join(","),
            args.sections.her2st.display(),
            c.training.epochs,
            c.training.seed
        ),
    };
    write_bundle(&args.out, &source).with_context(|| format!("writing the bundle {}", args.out.display()))?;
    out.report(
        &format!(
            "trained SpaHGC on {} ({} epochs, {:.1} s, {:.3} s/epoch), {} genes; wrote the bundle {}",
            c.training_sections.join(","),
            c.training.epochs,
            seconds,
            seconds / c.training.epochs.max(1) as f64,
            c.genes.len(),
            args.out.display()
        ),
        serde_json::json!({
            "out": args.out, "sections": c.training_sections, "epochs": c.training.epochs,
            "seconds": seconds, "genes": c.genes.len(), "spot_pitch_um": grid.spot_pitch_um,
        }),
    )
}

/// The median over `sections` of their spot pitch in µm.
fn spot_pitch_um(sections: &[Section]) -> anyhow::Result<f64> {
    let mut pitches = sections
        .iter()
        .map(|s| {
            let mpp = s.microns_per_pixel.with_context(|| format!("section {} records no resolution", s.name))?;
            let pitch = spot_pitch(&s.centres())
                .with_context(|| format!("section {} has too few spots for a pitch", s.name))?;
            Ok(pitch * mpp)
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    pitches.sort_by(f64::total_cmp);
    Ok(pitches[pitches.len() / 2])
}
