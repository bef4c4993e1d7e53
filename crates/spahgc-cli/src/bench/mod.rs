//! `spahgc bench`: speed and memory against the PyTorch reference figures, side by side.

mod encoder;
mod model;
mod retrieval;
mod viewport;
mod wasm;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::output::Output;
use crate::predict::bundle_dir;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Patches per second of the runtime alone and of the whole pipeline, on the same patches.
    Encoder(encoder::EncoderBenchArgs),
    /// Forward time and peak memory of the SpaHGC network on a 500-spot graph.
    Head(model::HeadBenchArgs),
    /// Seconds per training epoch.
    Train(model::TrainBenchArgs),
    /// Exact against approximate top-k retrieval on a synthetic bank of clustered unit vectors.
    Retrieval(retrieval::RetrievalBenchArgs),
    /// Latency of predicting a panning viewport, cold and warm, and throughput against the encoder.
    Viewport(viewport::ViewportBenchArgs),
    /// One region predicted natively and by the WebAssembly component (both worlds).
    Wasm(wasm::WasmBenchArgs),
}

pub fn run(cmd: BenchCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Encoder(args) => encoder::run(args, out),
        BenchCommand::Head(args) => model::head(args, out),
        BenchCommand::Train(args) => model::train(args, out),
        BenchCommand::Retrieval(args) => retrieval::run(args, out),
        BenchCommand::Viewport(args) => viewport::run(args, out),
        BenchCommand::Wasm(args) => wasm::run(args, out),
    }
}

/// The bundle and the her2st section whose H&E image a bench predicts on.
#[derive(Args)]
pub struct BenchSection {
    /// Model bundle; default: the one the demo builds.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// her2st data set directory; the slide is --section's H&E image.
    #[arg(long, default_value = "../shared/data/her2st")]
    her2st: PathBuf,
    #[arg(long, default_value = "C3")]
    section: String,
}

/// A [`BenchSection`] found: the bundle's directory, the section's image and its µm per pixel.
struct OpenedSection {
    bundle: PathBuf,
    slide: PathBuf,
    mpp: f64,
}

impl BenchSection {
    fn open(&self) -> anyhow::Result<OpenedSection> {
        let section = spahgc_datasets::her2st::load(&self.her2st, &self.section)?;
        let slide = section.image.clone().context("her2st sections have images")?;
        let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
        Ok(OpenedSection { bundle: bundle_dir(self.bundle.as_ref())?, slide, mpp })
    }
}
