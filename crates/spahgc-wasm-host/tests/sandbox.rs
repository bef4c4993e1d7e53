//! The component in its sandbox: the same predictions as the native engine in both worlds, and
//! limits, pre-opens and bad input that end a call with an error the next call survives.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ndarray::Array2;
use spahgc_core::Section;
use spahgc_encoder::{Device, Encoder, EncoderOptions};
use spahgc_engine::{
    Engine, EngineOptions, PixelBuffer, PixelFormat, Region, RegionOptions, RegionPrediction, Request,
};
use spahgc_wasm_host::{ComponentRuntime, Limits, Sandbox, SandboxOptions, WasmError};

const SELF_CONTAINED: &str = "spahgc-predictor.wasm";
const HOST_ENCODER: &str = "spahgc-predictor-host-encoder.wasm";

/// A component compiled once per test process.
fn runtime(file: &'static str) -> Option<Arc<ComponentRuntime>> {
    static CONTAINED: OnceLock<Arc<ComponentRuntime>> = OnceLock::new();
    static HOSTED: OnceLock<Arc<ComponentRuntime>> = OnceLock::new();
    let compiled = if file == SELF_CONTAINED { &CONTAINED } else { &HOSTED };
    let path = spahgc_testdata::component(file)?;
    Some(compiled.get_or_init(|| ComponentRuntime::load(&path).unwrap()).clone())
}

/// The test bundle, section C3 (not trained on) and the self-contained component.
fn setup() -> Option<(PathBuf, Section, Arc<ComponentRuntime>)> {
    let bundle = spahgc_testbundle::small()?;
    let data = spahgc_testdata::shared("her2st")?;
    let c3 = spahgc_datasets::her2st::load(&data, "C3").unwrap();
    Some((bundle, c3, runtime(SELF_CONTAINED)?))
}

fn cpu() -> EncoderOptions {
    EncoderOptions { device: Device::Cpu, ..Default::default() }
}

/// A region of `side` × `side` grid spots in the middle of C3's tissue.
fn region(c3: &Section, side: f64) -> RegionOptions {
    let mpp = c3.microns_per_pixel.unwrap();
    let pitch = spahgc_testbundle::SPOT_PITCH_UM / mpp;
    let centres = c3.centres();
    let n = centres.len() as f64;
    let (cx, cy) = centres.iter().fold((0.0, 0.0), |(x, y), c| (x + c.0 / n, y + c.1 / n));
    let half = side * pitch / 2.0;
    let region = Region { x: cx - half, y: cy - half, width: 2.0 * half, height: 2.0 * half };
    RegionOptions { region: Some(region), microns_per_pixel: Some(mpp), tissue_only: false }
}

/// The pixels a host reads for a region: its context on the slide, as RGB.
fn context_pixels(
    sandbox: &mut Sandbox,
    slide: &Path,
    options: &RegionOptions,
) -> (spahgc_slide::RgbImage, (u64, u64)) {
    let context = sandbox.pixel_context(options.region.unwrap(), options.microns_per_pixel.unwrap()).unwrap();
    let slide = spahgc_slide::open(slide).unwrap();
    spahgc_slide::read_on_slide(slide.as_ref(), context.covering_pixels()).unwrap()
}

fn in_sandbox(sandbox: &mut Sandbox, slide: &Path, options: &RegionOptions) -> Result<RegionPrediction, WasmError> {
    let (rgb, origin) = context_pixels(sandbox, slide, options);
    let (width, height) = rgb.dimensions();
    let pixels =
        PixelBuffer { pixels: rgb.as_raw(), width, height, stride: 3 * width as usize, format: PixelFormat::Rgb8 };
    sandbox.predict_pixels(&pixels, origin, options, None)
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn both_worlds_predict_what_the_native_engine_predicts() {
    let Some((bundle, c3, contained)) = setup() else { return };
    let Some(hosted) = runtime(HOST_ENCODER) else { return };
    let slide = c3.image.clone().unwrap();
    let options = region(&c3, 3.0);
    let native = Engine::open(&bundle, EngineOptions { encoder: cpu(), ..Default::default() }).unwrap();
    let expected = native.predict_region(&slide, &options, &Request::default()).unwrap();
    assert!(expected.ids.len() >= 9, "{} spots", expected.ids.len());

    let mut sandbox = Sandbox::open(contained, &bundle, SandboxOptions::default()).unwrap();
    assert_eq!(sandbox.genes().unwrap(), native.genes());
    let found = in_sandbox(&mut sandbox, &slide, &options).unwrap();
    assert_eq!((&found.ids, &found.centres, &found.in_tissue), (&expected.ids, &expected.centres, &expected.in_tissue));
    assert_eq!(found.prediction.genes, expected.prediction.genes);
    let diff = max_diff(&found.prediction.expression, &expected.prediction.expression);
    assert!(diff <= 1e-3, "encoder inside the component: max difference {diff}");

    let encoder = Arc::new(Encoder::load(&native.bundle().encoder_dir(), cpu()).unwrap());
    let with_host = SandboxOptions { host_encoder: Some(encoder), ..Default::default() };
    let mut sandbox = Sandbox::open(hosted, &bundle, with_host).unwrap();
    let found = in_sandbox(&mut sandbox, &slide, &options).unwrap();
    assert_eq!(found.ids, expected.ids);
    let diff = max_diff(&found.prediction.expression, &expected.prediction.expression);
    assert!(diff <= 1e-3, "encoder on the host: max difference {diff}");

    // Embeddings the host computed give what the native engine gives for them.
    let centres: Vec<(f64, f64)> = c3.centres().into_iter().take(40).collect();
    let embeddings = spahgc_testbundle::embed(
        &spahgc_encoder::LazyEncoder::open(&native.bundle().encoder_dir(), cpu()).unwrap(),
        &Section { spots: c3.spots[..40].to_vec(), ..c3.clone() },
    );
    let genes = ["ERBB2".to_string(), "CD74".to_string()];
    let request = Request { genes: Some(&genes), ..Request::default() };
    let expected = native.predict_embeddings(&centres, embeddings.view(), &request).unwrap();
    let found = sandbox.predict_embeddings(&centres, embeddings.view(), Some(&genes)).unwrap();
    assert_eq!(found.genes, genes);
    let diff = max_diff(&found.expression, &expected.expression);
    assert!(diff <= 1e-5, "embeddings from the host: max difference {diff}");
    let wrong_width = sandbox.predict_embeddings(&centres, embeddings.slice(ndarray::s![.., ..10]), None);
    assert!(matches!(&wrong_width, Err(WasmError::BadInput(m)) if m.contains("embedding")), "{wrong_width:?}");
}

#[test]
fn time_and_memory_limits_end_a_call_and_the_next_call_works() {
    let Some((bundle, c3, contained)) = setup() else { return };
    let slide = c3.image.clone().unwrap();
    let options = region(&c3, 2.0);
    let mut sandbox = Sandbox::open(contained.clone(), &bundle, SandboxOptions::default()).unwrap();
    let first = in_sandbox(&mut sandbox, &slide, &options).unwrap();

    sandbox.set_limits(Limits { time: Duration::from_millis(20), ..Limits::default() });
    let cut = in_sandbox(&mut sandbox, &slide, &RegionOptions { ..region(&c3, 3.0) });
    assert!(matches!(cut, Err(WasmError::TimeLimit(t)) if t == Duration::from_millis(20)), "{cut:?}");
    sandbox.set_limits(Limits::default());
    let again = in_sandbox(&mut sandbox, &slide, &options).unwrap();
    assert_eq!(again.prediction.expression, first.prediction.expression);

    // A buffer the sandbox can take in, but not hold twice over while decoding it.
    let limits = Limits { memory_bytes: 400 << 20, ..Limits::default() };
    let mut small = Sandbox::open(contained, &bundle, SandboxOptions { limits, ..Default::default() }).unwrap();
    let side = 8000u32;
    let pixels = vec![200u8; 3 * (side * side) as usize];
    let huge = PixelBuffer {
        pixels: &pixels,
        width: side,
        height: side,
        stride: 3 * side as usize,
        format: PixelFormat::Rgb8,
    };
    let whole = RegionOptions { region: None, ..options };
    let refused = small.predict_pixels(&huge, (0, 0), &whole, None);
    assert!(matches!(refused, Err(WasmError::MemoryLimit { limit, .. }) if limit == 400 << 20), "{refused:?}");
    let after = in_sandbox(&mut small, &slide, &options).unwrap();
    assert_eq!(after.prediction.expression, first.prediction.expression);
}

#[test]
fn the_guest_sees_only_its_bundle_and_bad_buffers_are_refused_with_the_error_variant() {
    let Some((bundle, c3, contained)) = setup() else { return };
    let mut sandbox = Sandbox::open(contained.clone(), &bundle, SandboxOptions::default()).unwrap();
    sandbox.probe_open(spahgc_wasm_host::GUEST_BUNDLE_DIR).unwrap();
    // The same bundle by its host path, and a way out of the pre-open: neither is reachable.
    let host_path = bundle.canonicalize().unwrap();
    for outside in [host_path.to_str().unwrap(), "/bundle/..", "/bundle/../bundle", "/etc", "/"] {
        let refused = sandbox.probe_open(outside);
        assert!(matches!(refused, Err(WasmError::Bundle(_))), "{outside}: {refused:?}");
    }

    let mpp = c3.microns_per_pixel;
    let options = RegionOptions { region: None, microns_per_pixel: mpp, tissue_only: false };
    let bytes = vec![128u8; 64 * 64 * 4];
    let buffer = |width, height, stride, len| PixelBuffer {
        pixels: &bytes[..len],
        width,
        height,
        stride,
        format: PixelFormat::Rgba8,
    };
    for (bad, expected) in [
        (buffer(64, 64, 100, 64 * 64 * 4), "stride"),
        (buffer(64, 64, 256, 1000), "bytes"),
        (buffer(0, 64, 256, 1000), "positive"),
    ] {
        let refused = sandbox.predict_pixels(&bad, (0, 0), &options, None);
        assert!(matches!(&refused, Err(WasmError::BadInput(m)) if m.contains(expected)), "{refused:?}");
    }
    let unknown = ["NOT-A-GENE".to_string()];
    let refused = sandbox.predict_pixels(&buffer(64, 64, 256, 64 * 64 * 4), (0, 0), &options, Some(&unknown));
    assert!(matches!(&refused, Err(WasmError::BadInput(m)) if m.contains("NOT-A-GENE")), "{refused:?}");

    // A directory that is no bundle, and a file that is no component.
    let empty = tempfile::tempdir().unwrap();
    let no_bundle = Sandbox::open(contained, empty.path(), SandboxOptions::default());
    assert!(matches!(&no_bundle, Err(WasmError::Bundle(m)) if m.contains("manifest.json")), "{:?}", no_bundle.err());
    let not_wasm = empty.path().join("component.wasm");
    std::fs::write(&not_wasm, b"\0asm but not really").unwrap();
    let refused = ComponentRuntime::load(&not_wasm);
    assert!(matches!(&refused, Err(WasmError::Component { path, .. }) if path == &not_wasm), "{:?}", refused.err());
}
