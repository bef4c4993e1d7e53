//! `spahgc panel`: choose the gene panel from the training sections.

use std::path::PathBuf;

use clap::Args;
use spahgc_core::{GenePanel, HvgCriterion};

use crate::embed::SectionsArgs;
use crate::output::Output;

#[derive(Args)]
pub struct PanelArgs {
    /// The sections to choose from; the panel depends on these only.
    #[command(flatten)]
    sections: SectionsArgs,
    /// Number of genes.
    #[arg(long, default_value_t = 250)]
    n: usize,
    /// Panel file to write (one gene per line).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: PanelArgs, out: &Output) -> anyhow::Result<()> {
    let sections = args.sections.load()?;
    let panel = GenePanel::select_hvg(&sections, args.n)?;
    let header = vec![
        format!("spahgc gene panel: {} genes", panel.genes.len()),
        format!("sections: {}", args.sections.sections.join(",")),
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
        serde_json::json!({ "genes": panel.genes.len(), "out": args.out, "sections": args.sections.sections }),
    )?;
    Ok(())
}
