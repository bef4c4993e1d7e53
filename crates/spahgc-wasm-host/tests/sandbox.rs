//! The component in its sandbox: the same predictions as the native engine in both worlds, and
//! limits, pre-opens and bad input that end a call with an error the next call survives.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{HOST_ENCODER, SELF_CONTAINED, context_pixels, cpu, predict_rgb, region, runtime};
use ndarray::Array2;
use spahgc_core::Section;
use spahgc_encoder::Encoder;
use spahgc_engine::{Engine, EngineOptions, PixelBuffer, PixelFormat, RegionOptions, RegionPrediction, Request};
use spahgc_wasm_host::{ComponentRuntime, Limits, Sandbox, SandboxOptions, WasmError};

/// The test bundle, section C3 (not trained on) and the self-contained component.
fn setup() -> Option<(PathBuf, Section, Arc<ComponentRuntime>)> {
    let (bundle, c3) = common::bundle_and_c3()?;
    Some((bundle, c3, runtime(SELF_CONTAINED)?))
}

fn in_sandbox(sandbox: &mut Sandbox, slide: &Path, options: &RegionOptions) -> Result<RegionPrediction, WasmError> {
    let (rgb, origin) = context_pixels(sandbox, slide, options);
    predict_rgb(sandbox, &rgb, origin, options)
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
