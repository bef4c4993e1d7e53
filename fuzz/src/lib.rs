//! What spahgc's fuzz targets share: a scratch directory for the files a target hands to a
//! loader, the multi-file input framing, checksum repair for the formats that carry one, and the
//! real bundle, slide and tissue pixels the engine targets run on.
//!
//! A target fails (libFuzzer reports a crash) on a panic, a sanitizer report, or an allocation
//! beyond the budget `scripts/fuzz.sh` gives libFuzzer; typed errors are the expected outcome.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use sha2::{Digest, Sha256};
use spahgc_engine::{Engine, EngineOptions, PixelBuffer, PixelFormat, Region, RegionOptions};

/// Separates the files of a multi-file input (her2st counts and spots; Visium's files): a line
/// of its own, so seeds stay readable text.
pub const FILE_SEPARATOR: &[u8] = b"\n--8<--\n";

/// Largest pixel buffer an engine target allocates; requests that declare more get this many
/// bytes (and must be refused as too short).
pub const MAX_BUFFER_BYTES: usize = 8 << 20;

/// Most spots an engine target lets a request hold: larger grids are refused by the engine
/// before any work (that refusal is what is fuzzed; running them would only be slow).
pub const MAX_SPOTS: u64 = 400;

/// Bytes made once per key and kept for the process: real files (a bank, a cache entry) that
/// inputs then edit, since making one per input would take most of the run.
pub struct MadeOnce<K>(OnceLock<Mutex<HashMap<K, Vec<u8>>>>);

impl<K: Eq + Hash> MadeOnce<K> {
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// The bytes for `key`, made by `make` the first time.
    pub fn get(&self, key: K, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        let mut made = self.0.get_or_init(Default::default).lock().unwrap();
        made.entry(key).or_insert_with(make).clone()
    }
}

impl<K: Eq + Hash> Default for MadeOnce<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ has a parent").to_path_buf()
}

/// This process's scratch directory (under `TMPDIR`; `scripts/fuzz.sh` points that inside
/// `fuzz/target` and empties it after each run).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("spahgc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        dir
    })
}

/// The scratch subdirectory `dir`, emptied (nothing of an earlier input is left).
pub fn fresh_dir(dir: &str) -> PathBuf {
    let path = scratch().join(dir);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("creating a scratch directory");
    path
}

/// Writes `bytes` to `path`, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating a scratch directory");
    }
    std::fs::write(path, bytes).expect("writing a scratch file");
}

/// Splits a multi-file input into exactly `n` files at [`FILE_SEPARATOR`]; missing files are
/// empty and separators past the `n - 1`th stay in the last file.
pub fn split_files(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut files = Vec::with_capacity(n);
    let mut rest = data;
    while files.len() + 1 < n {
        match rest.windows(FILE_SEPARATOR.len()).position(|w| w == FILE_SEPARATOR) {
            Some(at) => {
                files.push(&rest[..at]);
                rest = &rest[at + FILE_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    files.push(rest);
    files.resize(n, &[]);
    files
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize().into()
}

/// A file the run depends on (the test bundle, a slide, a component); exits with a message
/// naming it when it is missing, since that is a set-up problem, not a finding.
pub fn required(path: PathBuf, how: &str) -> PathBuf {
    if !path.exists() {
        eprintln!("spahgc-fuzz: {} is missing; {how}", path.display());
        std::process::exit(2);
    }
    path
}

/// The bundle the engine targets open: `SPAHGC_FUZZ_BUNDLE`, else the test bundle that
/// `cargo test` builds into `target/test-bundle/bundle`.
pub fn bundle_dir() -> PathBuf {
    let path = std::env::var_os("SPAHGC_FUZZ_BUNDLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-bundle/bundle"));
    required(
        path,
        "run `cargo test --release -p spahgc-engine` once to build the test bundle, or set SPAHGC_FUZZ_BUNDLE",
    )
}

/// A file of the shared data (`../shared/data/<relative>`).
pub fn shared_data(relative: &str) -> PathBuf {
    required(repo_root().join("../shared/data").join(relative), "the engine targets read the shared data")
}

/// One engine on the fuzz bundle, shared by every input of a process (as a viewer holds one):
/// CPU, no disk cache, a small memory cache, at most [`MAX_SPOTS`] spots per request.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut options = EngineOptions { memory_spots: 256, max_spots: MAX_SPOTS, ..Default::default() };
        options.encoder.device = spahgc_encoder::Device::Cpu;
        Engine::open(&bundle_dir(), options).expect("the fuzz bundle opens")
    })
}

/// RGB pixels of a 1024 × 1024 piece of tissue (her2st C3, around its spots), for buffers that
/// are not glass: `(pixels, side)`.
pub fn tissue_rgb() -> &'static (Vec<u8>, u32) {
    static TILE: OnceLock<(Vec<u8>, u32)> = OnceLock::new();
    TILE.get_or_init(|| {
        let image = image::open(shared_data("her2st/ST-imgs/C3.jpg")).expect("decoding C3.jpg").to_rgb8();
        let side = 1024.min(image.width()).min(image.height());
        let (x, y) = ((image.width() - side) / 2, (image.height() - side) / 2);
        (image::imageops::crop_imm(&image, x, y, side, side).to_image().into_raw(), side)
    })
}

/// A resolution in µm per level-0 pixel: mostly plausible ones, sometimes any `f64` (zero,
/// negative, NaN, infinite, subnormal).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Resolution {
    /// 0.1 + n / 100 µm per pixel.
    Typical(u8),
    Any(f64),
}

impl Resolution {
    pub fn value(self) -> f64 {
        match self {
            Resolution::Typical(n) => 0.1 + f64::from(n) / 100.0,
            Resolution::Any(v) => v,
        }
    }
}

/// A host's pixel-buffer request with every argument chosen by the fuzzer: sizes, stride, pixel
/// format (as the raw code the C ABI takes), resolution, origin, buffer length, region, genes.
#[derive(Arbitrary, Debug)]
pub struct PixelRequest {
    pub width: u16,
    pub height: u16,
    /// `None`: rows packed; else this stride in bytes.
    pub stride: Option<u32>,
    /// Raw pixel-format code: 0 RGB8, 1 RGBA8, 2 BGRA8 premultiplied; anything else is invalid.
    pub format: u8,
    pub resolution: Resolution,
    pub origin: (u64, u64),
    /// Bytes added to (or, negative, taken from) the length the layout needs.
    pub length_delta: i16,
    pub region: Option<[f64; 4]>,
    pub tissue_only: bool,
    /// Genes by index into the bundle's list; an index past its end names an unknown gene.
    pub genes: Option<Vec<u8>>,
}

impl PixelRequest {
    /// The pixel format, if the code names one.
    pub fn pixel_format(&self) -> Option<PixelFormat> {
        match self.format {
            0 => Some(PixelFormat::Rgb8),
            1 => Some(PixelFormat::Rgba8),
            2 => Some(PixelFormat::Bgra8Premultiplied),
            _ => None,
        }
    }

    /// Bytes per pixel of the format (4 for an invalid code).
    pub fn bytes_per_pixel(&self) -> usize {
        self.pixel_format().map_or(4, PixelFormat::bytes_per_pixel)
    }

    pub fn stride(&self) -> usize {
        self.stride.map_or(usize::from(self.width) * self.bytes_per_pixel(), |s| s as usize)
    }

    /// The buffer to hand over: tissue pixels in the request's layout, as long as the layout
    /// needs plus `length_delta`, at most [`MAX_BUFFER_BYTES`].
    pub fn buffer(&self) -> Vec<u8> {
        let needed = self.stride().saturating_mul(usize::from(self.height));
        let len = needed.saturating_add_signed(isize::from(self.length_delta)).min(MAX_BUFFER_BYTES);
        let (tile, side) = tissue_rgb();
        let side = *side as usize;
        let bpp = self.bytes_per_pixel();
        let stride = self.stride().max(1);
        let mut buffer = vec![255u8; len];
        // Padding and a cut last pixel hold tissue too; a fourth channel stays opaque.
        for (row, line) in buffer.chunks_mut(stride).enumerate() {
            let source = &tile[(row % side) * side * 3..][..side * 3];
            for (pixel, bytes) in line.chunks_mut(bpp).enumerate() {
                let channels = bytes.len().min(3);
                bytes[..channels].copy_from_slice(&source[(pixel % side) * 3..][..channels]);
            }
        }
        buffer
    }

    /// The region, if given.
    pub fn region(&self) -> Option<Region> {
        self.region.map(|[x, y, width, height]| Region { x, y, width, height })
    }

    /// `buffer` described as this request describes it, in `format` (its [`Self::pixel_format`]).
    pub fn pixel_buffer<'a>(&self, buffer: &'a [u8], format: PixelFormat) -> PixelBuffer<'a> {
        PixelBuffer {
            pixels: buffer,
            width: u32::from(self.width),
            height: u32::from(self.height),
            stride: self.stride(),
            format,
        }
    }

    /// The region, resolution and tissue-only choice of this request.
    pub fn region_options(&self) -> RegionOptions {
        RegionOptions {
            region: self.region(),
            microns_per_pixel: Some(self.resolution.value()),
            tissue_only: self.tissue_only,
        }
    }

    /// The gene names asked for (see [`gene_names`]).
    pub fn gene_names(&self, genes: &[String]) -> Option<Vec<String>> {
        gene_names(self.genes.as_deref(), genes)
    }

    /// Whether the grid this request lays could hold far more spots than the targets allow
    /// (roughly: buffer or region area over the area of a 100 µm spot): such requests are
    /// skipped by targets whose engine has no spot limit to refuse them quickly.
    pub fn is_huge(&self) -> bool {
        let mpp = self.resolution.value();
        if !(mpp.is_finite() && mpp > 0.0) {
            return false;
        }
        let pixels = match self.region {
            Some([_, _, w, h]) if w.is_finite() && h.is_finite() => {
                (w.abs() * h.abs()).min(f64::from(self.width) * f64::from(self.height))
            }
            _ => f64::from(self.width) * f64::from(self.height),
        };
        pixels * mpp * mpp / (100.0 * 100.0) > MAX_SPOTS as f64
    }
}

/// Whether `name` is one plain file name (no directory part, not `.`, `..` or a root).
pub fn is_plain_file_name(name: &str) -> bool {
    let parts: Vec<_> = Path::new(name).components().collect();
    matches!(parts[..], [std::path::Component::Normal(_)])
}

/// Whether `path` is relative and stays inside the directory it is joined to (only plain names).
pub fn is_inside(path: &str) -> bool {
    let parts: Vec<_> = Path::new(path).components().collect();
    !parts.is_empty() && parts.iter().all(|p| matches!(p, std::path::Component::Normal(_)))
}

/// What every loaded section must satisfy: one count row per spot, finite centres, counts that
/// are finite and not negative in gene columns that exist, and a positive resolution if any.
pub fn check_section(section: &spahgc_core::Section) {
    assert_eq!(section.spots.len(), section.counts.n_spots(), "one count row per spot");
    assert!(section.spots.iter().all(|s| s.x.is_finite() && s.y.is_finite()), "spot centres are finite");
    if let Some(mpp) = section.microns_per_pixel {
        assert!(mpp.is_finite() && mpp > 0.0, "a resolution is positive: {mpp}");
    }
    for spot in 0..section.counts.n_spots() {
        for (gene, value) in section.counts.row(spot) {
            assert!(gene < section.counts.genes().len() && value.is_finite() && value >= 0.0);
        }
    }
}

/// What every prediction must satisfy: one id, centre, tissue flag and row per spot, the genes
/// asked for (all the bundle's when `asked` is `None`), finite non-negative expression.
pub fn check_prediction(found: &spahgc_engine::RegionPrediction, asked: Option<&[String]>, all: &[String]) {
    let spots = found.ids.len();
    assert_eq!(found.centres.len(), spots);
    assert_eq!(found.in_tissue.len(), spots);
    assert_eq!(found.prediction.expression.nrows(), spots);
    assert_eq!(found.prediction.genes, asked.unwrap_or(all), "the genes asked for, in that order");
    assert_eq!(found.prediction.expression.ncols(), found.prediction.genes.len());
    assert!(found.prediction.expression.iter().all(|v| v.is_finite() && *v >= 0.0), "expression is finite, ≥ 0");
    assert!(found.centres.iter().all(|(x, y)| x.is_finite() && y.is_finite()), "centres are finite");
}

/// Gene names picked by index into `genes`; an index past its end names an unknown gene.
pub fn gene_names(picks: Option<&[u8]>, genes: &[String]) -> Option<Vec<String>> {
    picks.map(|picks| {
        picks.iter().map(|&i| genes.get(usize::from(i)).cloned().unwrap_or_else(|| format!("NOT-A-GENE-{i}"))).collect()
    })
}
