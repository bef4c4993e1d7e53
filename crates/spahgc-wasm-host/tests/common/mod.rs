//! What the sandbox's test files share: the compiled components, the test bundle with section C3,
//! regions of C3, the pixels a host reads for them and the sandbox's prediction from those.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use spahgc_core::Section;
use spahgc_encoder::{Device, EncoderOptions};
use spahgc_engine::{PixelBuffer, PixelFormat, Region, RegionOptions, RegionPrediction};
use spahgc_slide::RgbImage;
use spahgc_wasm_host::{ComponentRuntime, Sandbox, WasmError};

pub const SELF_CONTAINED: &str = "spahgc-predictor.wasm";
pub const HOST_ENCODER: &str = "spahgc-predictor-host-encoder.wasm";

/// A component compiled once per test process.
pub fn runtime(file: &'static str) -> Option<Arc<ComponentRuntime>> {
    static CONTAINED: OnceLock<Arc<ComponentRuntime>> = OnceLock::new();
    static HOSTED: OnceLock<Arc<ComponentRuntime>> = OnceLock::new();
    let compiled = if file == SELF_CONTAINED { &CONTAINED } else { &HOSTED };
    let path = spahgc_testdata::component(file)?;
    Some(compiled.get_or_init(|| ComponentRuntime::load(&path).unwrap()).clone())
}

/// The test bundle and section C3 (not trained on).
pub fn bundle_and_c3() -> Option<(PathBuf, Section)> {
    let bundle = spahgc_testbundle::small()?;
    let data = spahgc_testdata::shared("her2st")?;
    Some((bundle, spahgc_datasets::her2st::load(&data, "C3").unwrap()))
}

pub fn cpu() -> EncoderOptions {
    EncoderOptions { device: Device::Cpu, ..Default::default() }
}

/// A region of `side` × `side` grid spots in the middle of C3's tissue.
pub fn region(c3: &Section, side: f64) -> RegionOptions {
    let (x, y, width) = spahgc_testbundle::square_on(c3, side, 0.0);
    let region = Region { x, y, width, height: width };
    RegionOptions { region: Some(region), microns_per_pixel: c3.microns_per_pixel, tissue_only: false }
}

/// The pixels a host reads for a region: its context on the slide, as RGB, and their origin.
pub fn context_pixels(sandbox: &mut Sandbox, slide: &Path, options: &RegionOptions) -> (RgbImage, (u64, u64)) {
    let context = sandbox.pixel_context(options.region.unwrap(), options.microns_per_pixel.unwrap()).unwrap();
    let slide = spahgc_slide::open(slide).unwrap();
    spahgc_slide::read_on_slide(slide.as_ref(), context.covering_pixels()).unwrap()
}

/// The sandbox's prediction of a region from RGB pixels the host read, at `origin` on the slide.
pub fn predict_rgb(
    sandbox: &mut Sandbox,
    rgb: &RgbImage,
    origin: (u64, u64),
    options: &RegionOptions,
) -> Result<RegionPrediction, WasmError> {
    let (width, height) = rgb.dimensions();
    let pixels =
        PixelBuffer { pixels: rgb.as_raw(), width, height, stride: 3 * width as usize, format: PixelFormat::Rgb8 };
    sandbox.predict_pixels(&pixels, origin, options, None)
}
