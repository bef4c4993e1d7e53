//! An encoder model directory's `manifest.json`: `EncoderManifest::read` (the ONNX file's
//! checksum is checked after it, by `ModelDir::open`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_encoder::EncoderManifest;

fuzz_target!(|data: &[u8]| {
    let dir = spahgc_fuzz::fresh_dir("model");
    spahgc_fuzz::write(&dir.join("manifest.json"), data);
    if let Ok(manifest) = EncoderManifest::read(&dir) {
        assert!(
            spahgc_fuzz::is_plain_file_name(&manifest.onnx_file),
            "a checked manifest names a file inside its directory, not {:?}",
            manifest.onnx_file
        );
        assert!(manifest.input_size > 0 && manifest.embedding_dim > 0, "a checked manifest has sizes: {manifest:?}");
    }
});
