//! `spahgc bundle info`.

use std::path::PathBuf;

use clap::Subcommand;
use spahgc_bundle::Bundle;

use crate::output::Output;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Verify a model bundle and describe it.
    Info {
        /// The bundle directory (from `spahgc train`).
        bundle: PathBuf,
    },
}

pub fn run(cmd: BundleCommand, out: &Output) -> anyhow::Result<()> {
    let BundleCommand::Info { bundle } = cmd;
    let opened = Bundle::open(&bundle)?;
    let m = opened.manifest();
    let config = opened.model().config();
    let genes = m.genes.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    out.report(
        &format!(
            "bundle {} (format {}, every file verified)\n  name        {}\n  genes       {} ({genes}, ...)\n  \
             normalised  {:?}\n  trained on  {}\n  model       hidden {}, {} layers, {}-d embeddings\n  \
             bank        {} spots\n  grid        spot pitch {:.1} µm\n  licence     {}\n  provenance  {}",
            bundle.display(),
            m.format_version,
            m.name,
            m.genes.len(),
            m.normalisation.method,
            m.training_sections.join(","),
            config.architecture.hidden,
            config.architecture.layers,
            config.embedding_dim,
            opened.bank().len(),
            m.grid.spot_pitch_um,
            m.licence,
            m.provenance,
        ),
        serde_json::json!({
            "bundle": bundle, "name": m.name, "format_version": m.format_version, "genes": m.genes.len(),
            "training_sections": m.training_sections, "bank_spots": opened.bank().len(),
            "spot_pitch_um": m.grid.spot_pitch_um, "files": m.files,
        }),
    )
}
