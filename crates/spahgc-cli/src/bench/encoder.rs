//! `spahgc bench encoder`: the full embedding pipeline against the bare runtime, side by side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use spahgc_datasets::her2st;
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::to_tensor;
use spahgc_slide::PatchGeometry;

use crate::embed::EncoderArgs;
use crate::output::Output;

#[derive(Args)]
pub struct EncoderBenchArgs {
    /// her2st data set directory.
    #[arg(long, default_value = "../shared/data/her2st")]
    her2st: PathBuf,
    /// Section whose spots are the patches.
    #[arg(long, default_value = "C3")]
    section: String,
    /// Benchmark a whole-slide image instead: patches on a grid at half the field of view.
    #[arg(long)]
    slide: Option<PathBuf>,
    /// Resolution of --slide in µm/px, when its metadata lacks it.
    #[arg(long)]
    mpp: Option<f64>,
    /// Timed rounds of each measurement (alternating, best kept).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// PyTorch running EfficientNet-Lite0 (batch 32) on the 2-core reference machine, patches/s.
const PYTORCH_REFERENCE: f64 = 23.9;

pub fn run(args: EncoderBenchArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let lazy = args.encoder.open()?;
    let encoder = lazy.get()?;
    let manifest = encoder.manifest();
    let (image, mpp, centres, label) = match &args.slide {
        Some(path) => {
            let slide = spahgc_slide::open(path)?;
            let mpp = args.mpp.or(slide.microns_per_pixel()).context("the slide records no resolution: pass --mpp")?;
            let pitch = manifest.field_of_view_um / mpp / 2.0;
            let (w, h) = slide.dimensions();
            let grid = |len: u64| (0..(len as f64 / pitch) as usize).map(move |i| (i as f64 + 0.5) * pitch);
            let centres: Vec<(f64, f64)> = grid(h).flat_map(|y| grid(w).map(move |x| (x, y))).collect();
            (path.clone(), mpp, centres, format!("a grid on {}", path.display()))
        }
        None => {
            let section = her2st::load(&args.her2st, &args.section)?;
            let centres = section.centres();
            let image = section.image.clone().context("her2st sections have images")?;
            let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
            (image, mpp, centres, format!("the spots of her2st section {}", section.name))
        }
    };
    let n = centres.len();

    // The runtime alone: patches cut and normalised beforehand, then only inference is timed.
    let slide = spahgc_slide::open(&image)?;
    let geometry = PatchGeometry { field_of_view_um: manifest.field_of_view_um, size_px: manifest.input_size };
    let patches = geometry.extract_many(slide.as_ref(), mpp, &centres)?;
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
        embedder.embed(
            &SlideSpots { slide: &image, microns_per_pixel: Some(mpp), centres: &centres },
            &spahgc_embed::quiet,
        )?;
        pipeline = pipeline.min(t.elapsed().as_secs_f64());
    }
    let (raw_rate, pipeline_rate) = (n as f64 / raw, n as f64 / pipeline);
    let ratio = pipeline_rate / raw_rate;
    out.report(
        &format!(
            "encoder {} on {} ({n} patches: {label}, batch {}):\n  \
             runtime alone          {raw_rate:8.1} patches/s\n  \
             full pipeline          {pipeline_rate:8.1} patches/s  (read + cut + normalise + infer + cache write)\n  \
             pipeline / runtime     {ratio:8.3}x\n  \
             runtime / PyTorch ref  {:8.2}x  (PyTorch {PYTORCH_REFERENCE} patches/s, measured separately on the reference machine)",
            manifest.name,
            encoder.provider(),
            encoder.batch_size(),
            raw_rate / PYTORCH_REFERENCE
        ),
        serde_json::json!({
            "encoder": manifest.name, "provider": encoder.provider(), "patches": n, "workload": label, "batch_size": encoder.batch_size(),
            "raw_patches_per_s": raw_rate, "pipeline_patches_per_s": pipeline_rate, "pipeline_over_raw": ratio,
        }),
    )?;
    Ok(())
}
