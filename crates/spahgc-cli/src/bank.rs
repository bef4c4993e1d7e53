//! `spahgc bank build|info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use spahgc_ann::AnnParams;
use spahgc_bank::{ReferenceBank, build_bank};
use spahgc_core::{GenePanel, Normalisation};

use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
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

/// The genes to predict and how their expression becomes targets.
#[derive(Args)]
pub struct GenesArgs {
    /// Gene panel file (from `spahgc panel`).
    #[arg(long, default_value = "panels/her2st-250.txt")]
    pub panel: PathBuf,
    #[arg(long, value_enum, default_value = "min-max")]
    pub normalisation: NormalisationArg,
}

/// An approximate index for retrieval beside a bank.
#[derive(Clone, Copy, ValueEnum)]
pub enum IndexKind {
    /// None: every query scans the bank.
    None,
    /// A PCA-projected HNSW graph with exact re-ranking (see spahgc-ann), searched once the bank
    /// holds 100,000 spots or more.
    Ann,
}

impl IndexKind {
    /// The index's parameters, if one is asked for.
    pub fn params(self) -> Option<AnnParams> {
        match self {
            IndexKind::None => None,
            IndexKind::Ann => Some(AnnParams::default()),
        }
    }
}

#[derive(Args)]
pub struct BuildArgs {
    /// The reference sections.
    #[command(flatten)]
    sections: SectionsArgs,
    #[command(flatten)]
    genes: GenesArgs,
    /// Bank file to write.
    #[arg(long)]
    out: PathBuf,
    /// Build an approximate index beside the bank (`<bank>.ann/`).
    #[arg(long, value_enum, default_value = "none")]
    index: IndexKind,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(cmd: BankCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        BankCommand::Build(args) => build(args, out),
        BankCommand::Info { bank } => {
            let mut bank = ReferenceBank::open(&bank)?;
            let indexed = spahgc_ann::attach_beside(&mut bank, None)?;
            let meta = bank.meta();
            let sections: Vec<String> =
                meta.sections.iter().map(|s| format!("{} ({} spots)", s.name, s.spot_ids.len())).collect();
            out.report(
                &format!(
                    "bank {}: format {}, {} spots × {} dimensions, {} genes, {:?} normalisation\n  sections: {}\n  encoder sha256: {}\n  retrieval: {}",
                    bank.path().display(),
                    meta.format_version,
                    meta.n_spots,
                    meta.embedding_dim,
                    meta.genes.len(),
                    meta.norm.method,
                    sections.join(", "),
                    meta.encoder_sha256,
                    retrieval(indexed, bank.searches_index()),
                ),
                serde_json::json!({
                    "format_version": meta.format_version, "spots": meta.n_spots, "dim": meta.embedding_dim,
                    "genes": meta.genes.len(), "sections": meta.sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "encoder_sha256": meta.encoder_sha256, "index": indexed, "searches_index": bank.searches_index(),
                }),
            )?;
            Ok(())
        }
    }
}

/// How a bank answers queries, in words.
fn retrieval(indexed: bool, searched: bool) -> &'static str {
    match (indexed, searched) {
        (false, _) => "exact scan (no index)",
        (true, false) => "exact scan (the index beside it is used from 100,000 spots)",
        (true, true) => "approximate index, re-ranked exactly",
    }
}

fn build(args: BuildArgs, out: &Output) -> anyhow::Result<()> {
    let panel = GenePanel::read(&args.genes.panel)?;
    let data = EmbeddedSections::load(&args.sections, &args.encoder, &args.cache, out)?;
    let inputs = data.views();
    let meta = build_bank(&args.out, &inputs, &panel.genes, args.genes.normalisation.into(), &data.encoder_sha256)
        .with_context(|| format!("building {}", args.out.display()))?;
    let index = match args.index.params() {
        Some(params) => {
            let bank = ReferenceBank::open(&args.out)?;
            Some(spahgc_ann::build_beside(&bank, params)?.dir().to_path_buf())
        }
        None => None,
    };
    let indexed = index.as_ref().map_or(String::new(), |dir| format!("; approximate index in {}", dir.display()));
    out.report(
        &format!("wrote bank {}: {} spots from {} sections, {} genes{indexed}", args.out.display(), meta.n_spots, meta.sections.len(), meta.genes.len()),
        serde_json::json!({ "out": args.out, "spots": meta.n_spots, "sections": args.sections.sections, "genes": meta.genes.len(), "index": index }),
    )?;
    Ok(())
}
