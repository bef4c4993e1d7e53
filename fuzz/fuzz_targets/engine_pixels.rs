//! `Engine::predict_pixels` with every argument chosen by the input: width, height, stride,
//! pixel format, µm per pixel, origin, buffer length, region, tissue-only and genes (unknown
//! ones included). The buffer holds real tissue pixels; the engine runs the test bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_engine::Request;
use spahgc_fuzz::PixelRequest;

fuzz_target!(|asked: PixelRequest| {
    let engine = spahgc_fuzz::engine();
    // Format codes that name no format are the C ABI target's to try.
    let Some(format) = asked.pixel_format() else { return };
    let buffer = asked.buffer();
    let pixels = asked.pixel_buffer(&buffer, format);
    let options = asked.region_options();
    let genes = asked.gene_names(engine.genes());
    let request = Request { genes: genes.as_deref(), ..Default::default() };
    match engine.predict_pixels(&pixels, asked.origin, &options, &request) {
        Ok(found) => spahgc_fuzz::check_prediction(&found, genes.as_deref(), engine.genes()),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
