//! `spahgc bench wasm`: one region predicted by the native engine and by the WebAssembly
//! component (both worlds), side by side in one run, with the components' sizes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use spahgc_engine::{Engine, EngineOptions, Prediction, Region, RegionOptions, Request};

use super::{BenchSection, OpenedSection};
use crate::output::Output;
use crate::wasm::{SandboxArgs, component_file, predict_in_sandbox};

#[derive(Args)]
pub struct WasmBenchArgs {
    #[command(flatten)]
    section: BenchSection,
    /// Side of the square region, in grid spots (the grid blocks it touches are predicted whole,
    /// each with two rings of margin spots).
    #[arg(long, default_value_t = 6)]
    side: usize,
    /// Timed repetitions of each way (after one untimed warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The self-contained component (world predictor); default: the one
    /// scripts/build-component.sh installs.
    #[arg(long)]
    component: Option<PathBuf>,
    /// The host-encoder component; default: the one scripts/build-component.sh installs.
    #[arg(long)]
    host_encoder_component: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// One way of predicting: its median seconds and its prediction.
struct Timed {
    seconds: f64,
    prediction: Prediction,
}

/// The median of `repeats` runs of `predict` after one untimed warm-up.
fn time(repeats: usize, mut predict: impl FnMut() -> anyhow::Result<Prediction>) -> anyhow::Result<Timed> {
    predict()?;
    let mut seconds = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let t = Instant::now();
        last = Some(predict()?);
        seconds.push(t.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(Timed { seconds: seconds[seconds.len() / 2], prediction: last.context("at least one repeat")? })
}

/// Largest difference between two predictions of the same spots and genes.
fn max_difference(a: &Prediction, b: &Prediction) -> anyhow::Result<f32> {
    anyhow::ensure!(a.expression.dim() == b.expression.dim(), "the predictions differ in shape");
    Ok(a.expression.iter().zip(&b.expression).fold(0f32, |m, (x, y)| m.max((x - y).abs())))
}

fn size_mib(path: &Path) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len() as f64 / (1 << 20) as f64)
}

pub fn run(args: WasmBenchArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeats > 0 && args.side > 0, "--repeats and --side must be at least 1");
    let OpenedSection { bundle, slide: slide_path, mpp } = args.section.open()?;
    let slide = spahgc_slide::open(&slide_path)?;
    // Nothing is remembered between repetitions: each one embeds, retrieves and predicts.
    let native_options =
        EngineOptions { encoder: args.sandbox.encoder.options(), memory_spots: 0, ..Default::default() };
    let native = Engine::open(&bundle, native_options)?;
    let pitch = native.bundle().manifest().grid.spot_pitch_um / mpp;
    let (width, height) = slide.dimensions();
    let side = args.side as f64 * pitch;
    let region = Region { x: (width as f64 - side) / 2.0, y: (height as f64 - side) / 2.0, width: side, height: side };
    let options = RegionOptions { region: Some(region), microns_per_pixel: Some(mpp), tissue_only: false };
    let request = Request::default();

    // Memory is cleared before each repetition: each one embeds, retrieves and predicts.
    let native_run = time(args.repeats, || {
        native.clear_memory();
        Ok(native.predict_region(&slide_path, &options, &request)?.prediction)
    })?;
    let mut ways = Vec::new();
    for (host_encoder, given) in [(false, &args.component), (true, &args.host_encoder_component)] {
        let component = component_file(given.as_ref(), host_encoder)?;
        let t = Instant::now();
        let mut sandbox = args.sandbox.open(&component, host_encoder, &bundle)?;
        let start_s = t.elapsed().as_secs_f64();
        let timed = time(args.repeats, || {
            sandbox.clear_memory()?;
            Ok(predict_in_sandbox(&mut sandbox, slide.as_ref(), &options, None)?.prediction)
        })?;
        let difference = max_difference(&native_run.prediction, &timed.prediction)?;
        ways.push((host_encoder, component, start_s, timed, difference));
    }

    let spots = native_run.prediction.expression.nrows();
    let mut human = format!(
        "{} spots ({}×{} grid spots of {} {}, with the rest of their grid blocks and the blocks' margins), median of {}:\n  \
         native engine ({})  {:>8.1} ms",
        spots,
        args.side,
        args.side,
        args.section.section,
        slide_path.display(),
        args.repeats,
        if args.sandbox.encoder.tract { "tract" } else { "ONNX Runtime" },
        native_run.seconds * 1e3
    );
    let mut json_ways = Vec::new();
    for (host_encoder, component, start_s, timed, difference) in &ways {
        let name = if *host_encoder { "component, host encoder" } else { "component, encoder inside" };
        let ratio = timed.seconds / native_run.seconds;
        human += &format!(
            "\n  {name:<27} {:>8.1} ms  {ratio:>5.2}x native  max |Δ| {difference:.1e}  {:.1} MiB, compiled and opened in {start_s:.1} s ({})",
            timed.seconds * 1e3,
            size_mib(component)?,
            component.display()
        );
        json_ways.push(serde_json::json!({
            "host_encoder": host_encoder, "component": component, "ms": timed.seconds * 1e3,
            "ratio_to_native": ratio, "max_difference": difference, "size_mib": size_mib(component)?,
            "start_s": start_s,
        }));
    }
    out.report(
        &human,
        serde_json::json!({
            "spots": spots, "repeats": args.repeats, "native_ms": native_run.seconds * 1e3, "components": json_ways,
        }),
    )
}
