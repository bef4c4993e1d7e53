//! `spahgc bench`: speed and memory against the PyTorch reference figures, side by side.

mod encoder;
mod model;
mod retrieval;
mod viewport;
mod wasm;

use clap::Subcommand;

use crate::output::Output;

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
