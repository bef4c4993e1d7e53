//! `spahgc eval`: leave-one-section-out evaluation on her2st.

use std::path::PathBuf;

use clap::Args;
use spahgc_core::GenePanel;
use spahgc_datasets::her2st;
use spahgc_embed::SpotEmbedder;
use spahgc_eval::{EvalSection, Report, evaluate_fold};

use crate::bank::NormalisationArg;
use crate::embed::{CacheArgs, EncoderArgs, embed_section};
use crate::output::Output;

#[derive(Args)]
pub struct EvalArgs {
    /// her2st data set directory.
    #[arg(long)]
    her2st: PathBuf,
    /// Sections of the protocol (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    sections: Vec<String>,
    /// Test on this section only (train on the others); default: every section in turn.
    #[arg(long)]
    test: Option<String>,
    /// Gene panel file.
    #[arg(long, default_value = "panels/her2st-250.txt")]
    panel: PathBuf,
    #[arg(long, value_enum, default_value = "min-max")]
    normalisation: NormalisationArg,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(args: EvalArgs, out: &Output) -> anyhow::Result<()> {
    let tests = match &args.test {
        Some(t) if args.sections.contains(t) => vec![t.clone()],
        Some(t) => anyhow::bail!("--test {t} is not one of --sections {}", args.sections.join(",")),
        None => args.sections.clone(),
    };
    anyhow::ensure!(args.sections.len() >= 2, "leave-one-section-out needs at least two sections");
    let panel = GenePanel::read(&args.panel)?;
    let sections = args.sections.iter().map(|s| her2st::load(&args.her2st, s)).collect::<Result<Vec<_>, _>>()?;
    let encoder = args.encoder.open()?;
    let cache = args.cache.open()?;
    let embedder = SpotEmbedder { encoder: &encoder, cache: cache.as_ref(), precision: args.cache.precision() };
    let embeddings = sections
        .iter()
        .map(|s| embed_section(s, &embedder, out).map(|e| e.embeddings))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let inputs: Vec<EvalSection> =
        sections.iter().zip(&embeddings).map(|(section, e)| EvalSection { section, embeddings: e.view() }).collect();
    let scratch = tempfile::tempdir()?;
    let folds = tests
        .iter()
        .map(|t| evaluate_fold(&inputs, t, &panel.genes, args.normalisation.into(), scratch.path()))
        .collect::<Result<Vec<_>, _>>()?;
    let report = Report::new(folds);
    let mut table =
        format!("{:<6} {:<8} {:>7} {:>10} {:>7} {:>9}", "test", "method", "pcc", "pcc_hvg50", "rmse", "excluded");
    let rows = report.folds.iter().map(|f| (f.test.as_str(), &f.methods)).chain([("mean", &report.mean)]);
    for (fold, methods) in rows {
        for (method, s) in methods {
            table.push_str(&format!(
                "\n{fold:<6} {method:<8} {:>7.3} {:>10.3} {:>7.3} {:>9}",
                s.pcc, s.pcc_hvg50, s.rmse, s.excluded_genes
            ));
        }
    }
    out.report(&table, serde_json::to_value(&report)?)
}
