//! `spahgc panel`: choose the gene panel from the training sections.

use std::path::PathBuf;

use clap::Args;
use spahgc_core::{GenePanel, HvgCriterion};
use spahgc_datasets::her2st;

use crate::output::Output;

#[derive(Args)]
pub struct PanelArgs {
    /// her2st data set directory.
    #[arg(long)]
    her2st: PathBuf,
    /// Sections to choose from (comma-separated); the panel depends on these only.
    #[arg(long, value_delimiter = ',', required = true)]
    sections: Vec<String>,
    /// Number of genes.
    #[arg(long, default_value_t = 250)]
    n: usize,
    /// Panel file to write (one gene per line).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: PanelArgs, out: &Output) -> anyhow::Result<()> {
    let sections = args.sections.iter().map(|s| her2st::load(&args.her2st, s)).collect::<Result<Vec<_>, _>>()?;
    let panel = GenePanel::select_hvg(&sections, args.n)?;
    let header = vec![
        format!("spahgc gene panel: {} genes", panel.genes.len()),
        format!("sections: {}", args.sections.join(",")),
        format!("criterion: {}", HvgCriterion::DESCRIPTION),
    ];
    panel.write(&args.out, &header)?;
    out.report(
        &format!(
            "wrote {} genes to {} (first: {})",
            panel.genes.len(),
            args.out.display(),
            panel.genes[..5.min(panel.genes.len())].join(", ")
        ),
        serde_json::json!({ "genes": panel.genes.len(), "out": args.out, "sections": args.sections }),
    )?;
    Ok(())
}
