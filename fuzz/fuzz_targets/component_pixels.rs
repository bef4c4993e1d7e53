//! The WebAssembly component's `predict-pixels` and `pixel-context`, called through the
//! wasmtime host (`spahgc_wasm_host::Sandbox`, the host-encoder world) with every argument the
//! input picks. The guest must answer with a result or a typed error; a trap (a guest panic),
//! an internal error or a host failure is a finding.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spahgc_fuzz::PixelRequest;
use spahgc_wasm_host::{ComponentRuntime, Limits, Sandbox, SandboxOptions, WasmError};

#[derive(Arbitrary, Debug)]
struct Input {
    pixels: PixelRequest,
    context: [f64; 4],
}

/// The sandbox, opened once on the fuzz bundle with the host's native encoder, 1 GiB and one
/// minute per call.
fn sandbox() -> &'static Mutex<Sandbox> {
    static SANDBOX: OnceLock<Mutex<Sandbox>> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        let component = spahgc_fuzz::required(
            spahgc_fuzz::repo_root().join(".spahgc/wasm/spahgc-predictor-host-encoder.wasm"),
            "build it with scripts/build-component.sh",
        );
        let runtime = ComponentRuntime::load(&component).expect("loading the component");
        let bundle = spahgc_fuzz::bundle_dir();
        let cpu = spahgc_encoder::EncoderOptions { device: spahgc_encoder::Device::Cpu, ..Default::default() };
        let encoder = spahgc_encoder::Encoder::load(&bundle.join("encoder"), cpu).expect("the bundle's encoder");
        let options = SandboxOptions {
            limits: Limits { memory_bytes: 1 << 30, time: Duration::from_secs(60) },
            host_encoder: Some(Arc::new(encoder)),
        };
        Mutex::new(Sandbox::open(runtime, &bundle, options).expect("opening the bundle in the sandbox"))
    })
}

/// Fails on the errors that mean a defect rather than bad input.
fn check(error: &WasmError) {
    assert!(
        !matches!(error, WasmError::Trap(_) | WasmError::Internal(_) | WasmError::Runtime(_)),
        "the component failed instead of refusing the input: {error}"
    );
}

fuzz_target!(|input: Input| {
    let mut sandbox = sandbox().lock().unwrap();
    let asked = &input.pixels;
    let [x, y, width, height] = input.context;
    if let Err(error) = sandbox.pixel_context(spahgc_engine::Region { x, y, width, height }, asked.resolution.value()) {
        check(&error);
    }
    if asked.is_huge() {
        return;
    }
    // Format codes that name no format are the C ABI target's to try.
    let Some(format) = asked.pixel_format() else { return };
    let buffer = asked.buffer();
    let pixels = asked.pixel_buffer(&buffer, format);
    let options = asked.region_options();
    let all = sandbox.genes().expect("the guest lists its genes");
    let genes = asked.gene_names(&all);
    match sandbox.predict_pixels(&pixels, asked.origin, &options, genes.as_deref()) {
        Ok(found) => spahgc_fuzz::check_prediction(&found, genes.as_deref(), &all),
        Err(error) => check(&error),
    }
});
