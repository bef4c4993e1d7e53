//! `spahgc wasm predict`: a region of a slide predicted by spahgc's WebAssembly component in a
//! sandbox — the host reads the pixels, the component does the rest — with the outputs of
//! `spahgc predict`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use spahgc_engine::{PixelBuffer, PixelFormat, Region, RegionOptions, RegionPrediction, Shard};
use spahgc_wasm_host::{ComponentRuntime, Limits, Sandbox, SandboxOptions};

use crate::embed::EncoderArgs;
use crate::failure::bad_input;
use crate::output::Output;
use crate::predict::{Run, Spots, bundle_dir, request_identity};

/// Where `scripts/build-component.sh` installs the components, inside the setup directory.
const SELF_CONTAINED_COMPONENT: &str = "wasm/spahgc-predictor.wasm";
const HOST_ENCODER_COMPONENT: &str = "wasm/spahgc-predictor-host-encoder.wasm";

#[derive(Subcommand)]
pub enum WasmCommand {
    /// Predict a region of a slide with the component, writing what `spahgc predict` writes.
    #[command(after_help = crate::EXIT_CODES)]
    Predict(WasmPredictArgs),
}

/// The limits of the sandbox and, for a host encoder, how it runs.
#[derive(Args, Clone)]
pub struct SandboxArgs {
    /// Most linear memory of the component, in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    pub memory_mib: usize,
    /// Most seconds one call into the component may take.
    #[arg(long, default_value_t = Limits::default().time.as_secs())]
    pub time_limit: u64,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

impl SandboxArgs {
    /// A sandbox of `component` with `bundle` open in it; with `host_encoder`, the bundle's
    /// encoder runs natively for it.
    pub fn open(&self, component: &Path, host_encoder: bool, bundle: &Path) -> anyhow::Result<Sandbox> {
        if self.memory_mib == 0 || self.time_limit == 0 {
            bad_input!("--memory-mib and --time-limit must be positive");
        }
        let runtime = ComponentRuntime::load(component)?;
        let host_encoder = match host_encoder {
            true => {
                let dir = bundle.join(spahgc_bundle::ENCODER_DIR);
                let encoder = spahgc_encoder::Encoder::load(&dir, self.encoder.options())
                    .with_context(|| format!("loading the bundle's encoder {} on the host", dir.display()))?;
                Some(Arc::new(encoder))
            }
            false => None,
        };
        let limits = Limits { memory_bytes: self.memory_mib << 20, time: Duration::from_secs(self.time_limit) };
        Sandbox::open(runtime, bundle, SandboxOptions { limits, host_encoder }).with_context(|| {
            format!("opening the bundle {} in the component {}", bundle.display(), component.display())
        })
    }
}

/// The component given, or the one scripts/build-component.sh installs for the world.
pub fn component_file(given: Option<&PathBuf>, host_encoder: bool) -> anyhow::Result<PathBuf> {
    if let Some(given) = given {
        return Ok(given.clone());
    }
    let installed = if host_encoder { HOST_ENCODER_COMPONENT } else { SELF_CONTAINED_COMPONENT };
    spahgc_encoder::locate::project_file(installed).with_context(|| {
        format!("{installed} is not built: run scripts/build-component.sh, or pass the component's file")
    })
}

#[derive(Args)]
pub struct WasmPredictArgs {
    /// Model bundle; default: the one the demo builds in .spahgc/bundles.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The slide (read on the host: any format `spahgc predict` reads).
    #[arg(long)]
    slide: PathBuf,
    /// Region x,y,width,height in level-0 pixels: predicted block by block, as `spahgc predict`
    /// predicts a region.
    #[arg(long, value_delimiter = ',', value_name = "X,Y,W,H", required = true)]
    region: Vec<f64>,
    /// Resolution of --slide in µm/px, when its metadata lacks it.
    #[arg(long)]
    mpp: Option<f64>,
    /// Keep grid spots on glass too (default: a tissue mask skips them).
    #[arg(long)]
    keep_background: bool,
    /// Genes to write (comma-separated); default: every gene of the bundle.
    #[arg(long, value_delimiter = ',')]
    genes: Option<Vec<String>>,
    /// Output directory, as for `spahgc predict`.
    #[arg(long)]
    out: PathBuf,
    /// Predict again even when --out holds this request's outputs.
    #[arg(long)]
    force: bool,
    /// The component; default: the one scripts/build-component.sh builds for the chosen world.
    #[arg(long)]
    component: Option<PathBuf>,
    /// World predictor-with-host-encoder: the host runs the bundle's encoder natively (ONNX
    /// Runtime, --device) and the component the rest; default: world predictor, encoder inside.
    #[arg(long)]
    host_encoder: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(command: WasmCommand, out: &Output) -> anyhow::Result<()> {
    match command {
        WasmCommand::Predict(args) => predict(args, out),
    }
}

fn predict(args: WasmPredictArgs, out: &Output) -> anyhow::Result<()> {
    let started = Instant::now();
    args.sandbox.encoder.limit_threads()?;
    let region = match args.region.as_slice() {
        &[x, y, width, height] => Region { x, y, width, height },
        other => bad_input!("--region takes x,y,width,height; got {} values", other.len()),
    };
    let bundle = bundle_dir(args.bundle.as_ref())?;
    let tissue_only = !args.keep_background;
    let component = component_file(args.component.as_ref(), args.host_encoder)?;
    let files = serde_json::to_value(spahgc_bundle::BundleManifest::read(&bundle)?.files)?;
    let asked = serde_json::json!({
        "region": args.region, "microns_per_pixel": args.mpp, "tissue_only": tissue_only,
        "component": spahgc_slide::content_id(&component)?, "host_encoder": args.host_encoder,
    });
    let run = Run {
        bank: None,
        bundle: &bundle,
        out_dir: &args.out,
        request_id: request_identity(files, &args.slide, asked, &args.genes)?,
        shard: Shard::WHOLE,
        genes: args.genes.as_deref(),
        started,
    };
    if !args.force && run.skipped(out)? {
        return Ok(());
    }
    let slide = spahgc_slide::open(&args.slide)?;
    let Some(mpp) = args.mpp.or(slide.microns_per_pixel()) else {
        bad_input!("slide {} records no resolution: give --mpp", args.slide.display())
    };
    let options = RegionOptions { region: Some(region), microns_per_pixel: Some(mpp), tissue_only };
    let mut sandbox = args.sandbox.open(&component, args.host_encoder, &bundle)?;
    let found = predict_in_sandbox(&mut sandbox, slide.as_ref(), &options, args.genes.as_deref())?;
    let spots = Spots {
        slide: args.slide.clone(),
        ids: found.ids,
        centres: found.centres,
        diameter_px: found.diameter_px,
        in_tissue: found.in_tissue,
    };
    run.write(out, &spots, &found.prediction)
}

/// A region of `slide` predicted in the sandbox from the pixels of its context, which the host
/// reads, so that it equals the native engine's prediction of the region.
pub fn predict_in_sandbox(
    sandbox: &mut Sandbox,
    slide: &dyn spahgc_slide::Slide,
    options: &RegionOptions,
    genes: Option<&[String]>,
) -> anyhow::Result<RegionPrediction> {
    let (Some(region), Some(mpp)) = (options.region, options.microns_per_pixel) else {
        bad_input!("a prediction in the component needs a region and its µm per pixel")
    };
    let context = sandbox.pixel_context(region, mpp)?.covering_pixels();
    let (rgb, origin) = spahgc_slide::read_on_slide(slide, context)?;
    let (width, height) = rgb.dimensions();
    let pixels =
        PixelBuffer { pixels: rgb.as_raw(), width, height, stride: 3 * width as usize, format: PixelFormat::Rgb8 };
    Ok(sandbox.predict_pixels(&pixels, origin, options, genes)?)
}
