//! Cache keys and their canonical digest.

use sha2::{Digest, Sha256};

/// Everything an entry's embeddings depend on; [`CacheKey::digest`] names the entry.
///
/// Two keys share an entry only if every field is bit-for-bit equal, so any change to the encoder,
/// the slide, the patch geometry, the preprocessing or the spot list is a cache miss, never a wrong
/// hit. Floating-point fields are compared by bit pattern: `0.0` and `-0.0` are different keys.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheKey {
    /// Hex SHA-256 of the ONNX encoder file (compared verbatim, so use one letter case throughout).
    pub encoder_sha256: String,
    /// Content-derived slide identity (hex).
    pub slide_id: String,
    /// Field of view of each patch, in micrometres.
    pub field_of_view_um: f64,
    /// Side of the patch fed to the encoder, in pixels.
    pub patch_size_px: u32,
    /// Slide resolution used to cut the patches, in micrometres per level-0 pixel.
    pub microns_per_pixel: f64,
    /// Version of patch extraction and normalisation; bump it when either changes.
    pub preprocess_version: u32,
    /// Spot centres `(x, y)` in level-0 pixels, in the row order of the embeddings.
    pub centres: Vec<(f64, f64)>,
}

/// Distinguishes this encoding from any other use of SHA-256 and versions it.
const KEY_DOMAIN: &[u8] = b"spahgc-cache-key/v1\0";

impl CacheKey {
    /// The entry's name: lowercase hex SHA-256 (64 characters) of a canonical byte encoding.
    ///
    /// The encoding is a domain tag, then the fields in declaration order: strings as a `u64`
    /// byte length followed by their UTF-8 bytes, `u32`s as 4 little-endian bytes, `f64`s as the
    /// little-endian bytes of [`f64::to_bits`], and `centres` as a `u64` count followed by each
    /// `x`, `y`. Every variable-length field is length-prefixed, so no two keys encode alike.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        for s in [&self.encoder_sha256, &self.slide_id] {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update(self.field_of_view_um.to_bits().to_le_bytes());
        h.update(self.patch_size_px.to_le_bytes());
        h.update(self.microns_per_pixel.to_bits().to_le_bytes());
        h.update(self.preprocess_version.to_le_bytes());
        h.update((self.centres.len() as u64).to_le_bytes());
        for &(x, y) in &self.centres {
            h.update(x.to_bits().to_le_bytes());
            h.update(y.to_bits().to_le_bytes());
        }
        hex(&h.finalize())
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}
