//! `spahgc bench encoder`: the full embedding pipeline against the bare runtime, side by side.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use spahgc_datasets::her2st;
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::to_tensor;
use spahgc_slide::PatchGeometry;

use crate::embed::EncoderArgs;
use crate::output::Output;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Patches per second of the runtime alone and of the whole pipeline, on the same patches.
    Encoder(EncoderBenchArgs),
}

#[derive(Args)]
pub struct EncoderBenchArgs {
    /// her2st data set directory.
    #[arg(long, default_value = "../shared/data/her2st")]
    her2st: PathBuf,
    /// Section whose spots are the patches.
    #[arg(long, default_value = "C3")]
    section: String,
    /// Timed rounds of each measurement (alternating, best kept).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// PyTorch running EfficientNet-Lite0 (batch 32) on the 2-core reference machine, patches/s.
const PYTORCH_REFERENCE: f64 = 23.9;

pub fn run(cmd: BenchCommand, out: &Output) -> anyhow::Result<()> {
    let BenchCommand::Encoder(args) = cmd;
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let section = her2st::load(&args.her2st, &args.section)?;
    let lazy = args.encoder.open()?;
    let encoder = lazy.get()?;
    let manifest = encoder.manifest();
    let image = section.image.clone().expect("her2st sections have images");
    let mpp = section.microns_per_pixel;
    let centres: Vec<(f64, f64)> = section.spots.iter().map(|s| (s.x, s.y)).collect();
    let n = centres.len();

    // The runtime alone: patches cut and normalised beforehand, then only inference is timed.
    let slide = spahgc_slide::open(&image)?;
    let geometry = PatchGeometry { field_of_view_um: manifest.field_of_view_um, size_px: manifest.input_size };
    let patches = centres
        .iter()
        .map(|&(x, y)| geometry.extract(slide.as_ref(), mpp.unwrap_or(manifest.microns_per_pixel), x, y))
        .collect::<Result<Vec<_>, _>>()?;
    drop(slide);
    let tensor = to_tensor(&patches, manifest)?;
    encoder.run(tensor.view())?; // warm-up: first runs allocate and tune

    let (mut raw, mut pipeline) = (f64::MAX, f64::MAX);
    for _ in 0..args.rounds {
        let t = Instant::now();
        encoder.run(tensor.view())?;
        raw = raw.min(t.elapsed().as_secs_f64());

        // The whole pipeline into an empty cache: decode the slide, cut, normalise, infer, store.
        let dir = tempfile::tempdir()?;
        let cache = spahgc_cache::EmbeddingCache::open(dir.path(), u64::MAX)?;
        let embedder = SpotEmbedder { encoder: &lazy, cache: Some(&cache), precision: spahgc_cache::Precision::F32 };
        let t = Instant::now();
        embedder.embed(&SlideSpots { slide: &image, microns_per_pixel: mpp, centres: &centres }, &|_, _| {})?;
        pipeline = pipeline.min(t.elapsed().as_secs_f64());
    }
    let (raw_rate, pipeline_rate) = (n as f64 / raw, n as f64 / pipeline);
    let ratio = pipeline_rate / raw_rate;
    out.report(
        &format!(
            "encoder {} on {} ({n} patches of section {}, batch {}):\n  \
             runtime alone          {raw_rate:8.1} patches/s\n  \
             full pipeline          {pipeline_rate:8.1} patches/s  (read + cut + normalise + infer + cache write)\n  \
             pipeline / runtime     {ratio:8.3}x\n  \
             runtime / PyTorch ref  {:8.2}x  (PyTorch {PYTORCH_REFERENCE} patches/s, measured separately on the reference machine)",
            manifest.name,
            encoder.provider(),
            section.name,
            encoder.batch_size(),
            raw_rate / PYTORCH_REFERENCE
        ),
        serde_json::json!({
            "encoder": manifest.name, "provider": encoder.provider(), "patches": n, "batch_size": encoder.batch_size(),
            "raw_patches_per_s": raw_rate, "pipeline_patches_per_s": pipeline_rate, "pipeline_over_raw": ratio,
        }),
    );
    Ok(())
}
