//! `spahgc bank build|join|info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use spahgc_ann::AnnParams;
use spahgc_bank::{BankMeta, BankSection, BankWriter, EmbeddingPrecision, Normalise, ReferenceBank, join_banks};
use spahgc_core::{GenePanel, Normalisation};

use crate::embed::{CacheArgs, EncoderArgs, SectionEmbedder, SectionsArgs};
use crate::output::Output;

#[derive(Subcommand)]
pub enum BankCommand {
    /// Build a reference bank from sections with measured expression.
    Build(BuildArgs),
    /// Join bank files into one bank searched as one (a shard list), after checking that their
    /// encoder, genes and normalisation agree.
    Join {
        /// Shard list to write (e.g. `atlas.banks`); it names the bank files relative to itself.
        #[arg(long)]
        out: PathBuf,
        /// The bank files, searched in this order.
        #[arg(required = true)]
        banks: Vec<PathBuf>,
    },
    /// Describe a bank (a bank file or a shard list).
    Info {
        /// The bank file or shard list.
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

/// How a bank stores its embeddings.
#[derive(Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

impl From<PrecisionArg> for EmbeddingPrecision {
    fn from(arg: PrecisionArg) -> Self {
        match arg {
            PrecisionArg::F32 => EmbeddingPrecision::F32,
            PrecisionArg::F16 => EmbeddingPrecision::F16,
        }
    }
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
    /// Normalise expression with this bank's statistics (and over its genes, instead of the
    /// panel's) rather than fitting them on these sections, so that the two banks can be joined
    /// (`spahgc bank join`).
    #[arg(long, value_name = "BANK", conflicts_with_all = ["panel", "normalisation"])]
    normalised_as: Option<PathBuf>,
    /// How the bank stores embeddings: f16 halves its size, for banks of millions of spots
    /// (cosine similarities move by about 1e-3 at most).
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
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
        BankCommand::Join { out: list, banks } => {
            let bank = join_banks(&list, &banks)?;
            out.report(
                &format!("wrote shard list {}: {} spots in {} bank files", list.display(), bank.len(), banks.len()),
                serde_json::json!({ "out": list, "spots": bank.len(), "banks": banks }),
            )
        }
        BankCommand::Info { bank } => {
            let mut bank = ReferenceBank::open(&bank)?;
            let indexed = spahgc_ann::attach_beside(&mut bank, None)?;
            let meta = bank.meta();
            let files: Vec<String> = bank
                .files()
                .map(|f| format!("{} ({} spots, {:?})", f.path().display(), f.len(), f.meta().embedding_precision))
                .collect();
            let sections: Vec<String> =
                meta.sections.iter().map(|s| format!("{} ({} spots)", s.name, s.spot_ids.len())).collect();
            out.report(
                &format!(
                    "bank {}: format {}, {} spots × {} dimensions, {} genes, {:?} normalisation\n  files: {}\n  sections: {}\n  encoder sha256: {}\n  retrieval: {}",
                    bank.path().display(),
                    meta.format_version,
                    meta.n_spots,
                    meta.embedding_dim,
                    meta.genes.len(),
                    meta.norm.method,
                    files.join(", "),
                    sections.join(", "),
                    meta.encoder_sha256,
                    retrieval(indexed, files.len(), bank.searches_index()),
                ),
                serde_json::json!({
                    "format_version": meta.format_version, "spots": meta.n_spots, "dim": meta.embedding_dim,
                    "genes": meta.genes.len(), "sections": meta.sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "encoder_sha256": meta.encoder_sha256, "files": bank.files().map(|f| serde_json::json!({
                        "path": f.path(), "spots": f.len(), "precision": f.meta().embedding_precision,
                    })).collect::<Vec<_>>(),
                    "indexed_files": indexed, "searches_index": bank.searches_index(),
                }),
            )?;
            Ok(())
        }
    }
}

/// How a bank of `files` files, `indexed` of them with an index beside them, answers queries.
fn retrieval(indexed: usize, files: usize, searched: bool) -> String {
    let scope = if files == 1 { String::new() } else { format!(" ({indexed} of {files} files indexed)") };
    let how = match (indexed, searched) {
        (0, _) => "exact scan (no index)",
        (_, false) => "exact scan (indexes are used from 100,000 spots a file)",
        (_, true) => "approximate index, re-ranked exactly",
    };
    format!("{how}{scope}")
}

fn build(args: BuildArgs, out: &Output) -> anyhow::Result<()> {
    let like = args.normalised_as.as_deref().map(ReferenceBank::open).transpose()?;
    let panel = match &like {
        Some(_) => Vec::new(),
        None => GenePanel::read(&args.genes.panel)?.genes,
    };
    let normalise = match &like {
        Some(like) => Normalise::As(&like.meta().norm),
        None => Normalise::Fit { method: args.genes.normalisation.into(), genes: &panel },
    };
    // A section at a time, so that the embeddings of many sections are never in memory at once.
    let sections = args.sections.load()?;
    let norm = normalise.stats(&sections)?;
    let embedder = SectionEmbedder::open(&args.encoder, &args.cache)?;
    let write = || -> anyhow::Result<BankMeta> {
        let mut writer = BankWriter::create(&args.out, norm, args.precision.into(), &embedder.encoder_sha256())?;
        for section in &sections {
            let embeddings = embedder.embed(section, out)?;
            writer.push(&BankSection { section, embeddings: embeddings.view() })?;
        }
        Ok(writer.finish()?)
    };
    let meta = write().with_context(|| format!("building {}", args.out.display()))?;
    let index = match args.index.params() {
        Some(params) => {
            let bank = ReferenceBank::open(&args.out)?;
            spahgc_ann::build_beside(&bank, params)?.first().map(|index| index.dir().to_path_buf())
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
