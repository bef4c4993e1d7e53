//! An embedding-cache entry file: `EmbeddingCache::get` and `verify` on an entry whose bytes the
//! input overwrites or cuts (or replaces whole), optionally with its checksum repaired (the
//! SHA-256 at bytes 96..128 over bytes 0..96 and the payload), or written under another key's
//! name. A damaged entry must never be served; a served one holds exactly the values written
//! (or, repaired, exactly what its bytes say).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spahgc_cache::{CacheKey, EmbeddingCache, Precision};
use spahgc_fuzz::MadeOnce;

const HEADER_LEN: usize = 128;
const CHECKSUM: std::ops::Range<usize> = 96..128;

#[derive(Arbitrary, Debug)]
struct Input {
    rows: u8,
    dim: u8,
    half: bool,
    /// Replaces the whole file when given.
    raw: Option<Vec<u8>>,
    edits: Vec<(u16, u8)>,
    cut: Option<u16>,
    repair: bool,
    /// Store the entry of another key under this key's name.
    foreign: bool,
}

fn key(spots: usize) -> CacheKey {
    CacheKey {
        encoder_sha256: "ab".repeat(32),
        slide_id: "cd".repeat(32),
        field_of_view_um: 110.0,
        patch_size_px: 224,
        microns_per_pixel: 0.5,
        preprocess_version: 1,
        centres: (0..spots).map(|i| (i as f64, 1.0)).collect(),
    }
}

fn values(rows: usize, dim: usize) -> Vec<f32> {
    (0..rows * dim).map(|i| (i % 13) as f32 * 0.25 - 1.5).collect()
}

/// The entry file `put` writes for `key(rows)` (or `key(rows + 1)`: `foreign`).
fn written(rows: usize, dim: usize, precision: Precision, foreign: bool) -> Vec<u8> {
    static WRITTEN: MadeOnce<(usize, usize, bool, bool)> = MadeOnce::new();
    WRITTEN.get((rows, dim, precision == Precision::F16, foreign), || {
        let root = spahgc_fuzz::fresh_dir("cache-build");
        let cache = EmbeddingCache::open(&root, u64::MAX).unwrap();
        let key = key(rows + usize::from(foreign));
        cache.put(&key, rows, dim, &values(rows, dim), precision).unwrap();
        let digest = key.digest();
        std::fs::read(root.join("v1").join(&digest[..2]).join(format!("{digest}.emb"))).unwrap()
    })
}

fuzz_target!(|input: Input| {
    let (rows, dim) = (usize::from(input.rows % 8), usize::from(input.dim % 16) + 1);
    let precision = if input.half { Precision::F16 } else { Precision::F32 };
    let original = written(rows, dim, precision, input.foreign);
    let mut bytes = input.raw.clone().unwrap_or_else(|| original.clone());
    for &(at, value) in &input.edits {
        if !bytes.is_empty() {
            let at = usize::from(at) % bytes.len();
            bytes[at] = value;
        }
    }
    if let Some(cut) = input.cut {
        bytes.truncate(usize::from(cut));
    }
    if input.repair && bytes.len() >= HEADER_LEN {
        let sum = spahgc_fuzz::sha256_of(&[&bytes[..CHECKSUM.start], &bytes[HEADER_LEN..]]);
        bytes[CHECKSUM].copy_from_slice(&sum);
    }
    let root = spahgc_fuzz::fresh_dir("cache");
    let cache = EmbeddingCache::open(&root, u64::MAX).unwrap();
    let key = key(rows);
    let digest = key.digest();
    spahgc_fuzz::write(&root.join("v1").join(&digest[..2]).join(format!("{digest}.emb")), &bytes);

    let found = cache.get(&key).expect("a damaged entry is a miss, not an error");
    let served = found.is_some();
    match found {
        Some(served) => {
            assert!(!input.foreign, "an entry of another key was served");
            assert!(bytes.len() >= HEADER_LEN);
            let served_values = served.to_f32_vec();
            assert_eq!(served_values.len(), served.rows() * served.dim());
            assert_eq!(HEADER_LEN + served_values.len() * served.precision().bytes_per_value(), bytes.len());
            if !input.repair {
                assert_eq!(bytes, original, "an entry whose bytes changed was served without a valid checksum");
                let expected = values(rows, dim);
                let tolerance = if input.half { 1e-3 } else { 0.0 };
                assert!(served_values.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= tolerance));
            }
        }
        None => assert!(input.foreign || bytes != original, "an intact entry was not served"),
    }
    // `get` deleted what it refused, so `verify` finds the served entry or nothing.
    let verified = cache.verify().expect("verify reads the cache");
    assert!(verified.removed.is_empty(), "verify removed {:?} after get", verified.removed);
    assert_eq!(verified.valid, usize::from(served));
});
