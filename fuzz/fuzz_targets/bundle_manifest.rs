//! A model bundle's `manifest.json`: `BundleManifest::read`. Unless the input starts with `!`,
//! the manifest's own checksum (`"manifest_sha256": "<hex>"`, the SHA-256 of the file with that
//! value empty) is repaired first, as a writer would have set it, so that the checks behind it
//! are reached; with `!` the rest is read as is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_bundle::{BundleManifest, MANIFEST_CHECKSUM};

/// `text` with its checksum field set to the checksum of `text`, if it has exactly one.
fn repaired(text: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(text) else { return text.to_vec() };
    let opening = format!("\"{MANIFEST_CHECKSUM}\": \"");
    if text.matches(&opening).count() != 1 {
        return text.into();
    }
    let start = text.find(&opening).unwrap() + opening.len();
    let Some(length) = text[start..].find('"') else { return text.into() };
    let empty = format!("{}{}", &text[..start], &text[start + length..]);
    let sum = spahgc_fuzz::sha256_hex(empty.as_bytes());
    format!("{}{sum}{}", &text[..start], &text[start + length..]).into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let manifest = match data.strip_prefix(b"!") {
        Some(as_is) => as_is.to_vec(),
        None => repaired(data),
    };
    let dir = spahgc_fuzz::fresh_dir("bundle");
    spahgc_fuzz::write(&dir.join("manifest.json"), &manifest);
    if let Ok(read) = BundleManifest::read(&dir) {
        for file in read.files.keys() {
            assert!(spahgc_fuzz::is_inside(file), "a bundle's file {file:?} lies outside the bundle");
        }
        let pitch = read.grid.spot_pitch_um;
        assert!(pitch.is_finite() && pitch > 0.0, "a bundle's grid pitch is positive, not {pitch}");
        assert!(!read.genes.is_empty(), "a bundle predicts genes");
    }
});
