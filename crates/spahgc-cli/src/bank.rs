//! `spahgc bank build|info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_core::{GenePanel, Normalisation};
use spahgc_datasets::her2st;
use spahgc_embed::SpotEmbedder;

use crate::embed::{CacheArgs, EncoderArgs, embed_section};
use crate::output::Output;

#[derive(Subcommand)]
pub enum BankCommand {
    /// Build a reference bank from sections with measured expression.
    Build(BuildArgs),
    /// Describe a bank file.
    Info {
        /// The bank file.
        bank: PathBuf,
    },
}

/// How expression becomes model targets.
#[derive(Clone, Copy, ValueEnum)]
pub enum NormalisationArg {
    /// Per-gene min–max scaling fitted on the bank's sections.
    MinMax,
    /// Plain ln(1 + counts per 10k).
    LogCounts,
}

impl From<NormalisationArg> for Normalisation {
    fn from(arg: NormalisationArg) -> Self {
        match arg {
            NormalisationArg::MinMax => Normalisation::MinMax,
            NormalisationArg::LogCounts => Normalisation::LogCounts,
        }
    }
}

#[derive(Args)]
pub struct BuildArgs {
    /// her2st data set directory.
    #[arg(long)]
    her2st: PathBuf,
    /// Reference sections (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    sections: Vec<String>,
    /// Gene panel file (from `spahgc panel`).
    #[arg(long)]
    panel: PathBuf,
    /// Bank file to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "min-max")]
    normalisation: NormalisationArg,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(cmd: BankCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        BankCommand::Build(args) => build(args, out),
        BankCommand::Info { bank } => {
            let bank = ReferenceBank::open(&bank)?;
            let meta = bank.meta();
            let sections: Vec<String> =
                meta.sections.iter().map(|s| format!("{} ({} spots)", s.name, s.spot_ids.len())).collect();
            out.report(
                &format!(
                    "bank {}: format {}, {} spots × {} dimensions, {} genes, {:?} normalisation\n  sections: {}\n  encoder sha256: {}",
                    bank.path().display(),
                    meta.format_version,
                    meta.n_spots,
                    meta.embedding_dim,
                    meta.genes.len(),
                    meta.norm.method,
                    sections.join(", "),
                    meta.encoder_sha256
                ),
                serde_json::json!({
                    "format_version": meta.format_version, "spots": meta.n_spots, "dim": meta.embedding_dim,
                    "genes": meta.genes.len(), "sections": meta.sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "encoder_sha256": meta.encoder_sha256,
                }),
            )?;
            Ok(())
        }
    }
}

fn build(args: BuildArgs, out: &Output) -> anyhow::Result<()> {
    let panel = GenePanel::read(&args.panel)?;
    let encoder = args.encoder.open()?;
    let cache = args.cache.open()?;
    let embedder = SpotEmbedder { encoder: &encoder, cache: cache.as_ref(), precision: args.cache.precision() };
    let sections = args.sections.iter().map(|s| her2st::load(&args.her2st, s)).collect::<Result<Vec<_>, _>>()?;
    let embeddings = sections
        .iter()
        .map(|s| embed_section(s, &embedder, out).map(|e| e.embeddings))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let inputs: Vec<BankSection> =
        sections.iter().zip(&embeddings).map(|(section, e)| BankSection { section, embeddings: e.view() }).collect();
    let meta = build_bank(&args.out, &inputs, &panel.genes, args.normalisation.into(), &encoder.manifest().onnx_sha256)
        .with_context(|| format!("building {}", args.out.display()))?;
    out.report(
        &format!("wrote bank {}: {} spots from {} sections, {} genes", args.out.display(), meta.n_spots, meta.sections.len(), meta.genes.len()),
        serde_json::json!({ "out": args.out, "spots": meta.n_spots, "sections": args.sections, "genes": meta.genes.len() }),
    )?;
    Ok(())
}
