//! `spahgc eval`: leave-one-section-out evaluation on her2st.

use std::path::PathBuf;

use clap::Args;
use spahgc_core::GenePanel;
use spahgc_eval::{Report, evaluate_fold};

use crate::bank::NormalisationArg;
use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
use crate::output::Output;

#[derive(Args)]
pub struct EvalArgs {
    /// The sections of the protocol.
    #[command(flatten)]
    sections: SectionsArgs,
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
    let names = &args.sections.sections;
    let tests = match &args.test {
        Some(t) if names.contains(t) => vec![t.clone()],
        Some(t) => anyhow::bail!("--test {t} is not one of --sections {}", names.join(",")),
        None => names.clone(),
    };
    anyhow::ensure!(names.len() >= 2, "leave-one-section-out needs at least two sections");
    let panel = GenePanel::read(&args.panel)?;
    let data = EmbeddedSections::load(&args.sections, &args.encoder, &args.cache, out)?;
    let inputs = data.views();
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
