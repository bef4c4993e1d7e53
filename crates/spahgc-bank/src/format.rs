//! The bank file.
//!
//! ```text
//! 0   magic "SPAHGCBK"            8 bytes
//! 8   format version              u32 LE
//! 12  reserved (0)                u32
//! 16  metadata length in bytes    u64 LE
//! 24  SHA-256 of bytes 64..end    32 bytes
//! 56  reserved (0)                8 bytes
//! 64  metadata (JSON, BankMeta), then zero padding to a multiple of 64
//!     embeddings  f32 LE (f16 LE in version 2 banks that say so), spots × embedding_dim, row-major
//!     expression  f32 LE, spots × genes (normalised targets)
//!     centres     f64 LE, spots × 2 (x, y in level-0 px of the spot's section image)
//!     norms       f32 LE, spots (L2 norm of each embedding row)
//!     sections    u32 LE, spots (index into BankMeta::sections)
//! ```
//! Every array starts on a 64-byte boundary; offsets are recorded in the metadata. Opening checks
//! the magic, the version, the checksum and every offset and length before any array is used.
//!
//! Version 2 adds `embedding_precision` to the metadata: `f16` halves the embeddings' size (a
//! million 1280-d spots in 2.6 GB instead of 5.1 GB). Banks of f32 embeddings are still written
//! as version 1, which builds that know no version 2 read as before.

use std::path::{Path, PathBuf};

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use half::f16;
use ndarray::{ArrayView2, Axis, CowArray, Ix1, Ix2, s};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spahgc_core::{NormStats, write_atomically};

use crate::BankError;

#[cfg(target_endian = "big")]
compile_error!("the bank format is little-endian and read in place");

pub(crate) const MAGIC: &[u8; 8] = b"SPAHGCBK";
const HEADER_LEN: usize = 64;
const ALIGN: usize = 64;
/// The newest bank format version this build writes and reads (it reads every older one).
pub const FORMAT_VERSION: u32 = 2;

/// How a bank stores its embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingPrecision {
    /// 4 bytes a value, exactly as the encoder gave them.
    #[default]
    F32,
    /// 2 bytes a value (IEEE half precision): a relative rounding error below 0.05 %, which
    /// moves cosine similarities by about 1e-3 at most.
    F16,
}

impl EmbeddingPrecision {
    /// Bytes of one stored value.
    fn bytes(self) -> usize {
        match self {
            EmbeddingPrecision::F32 => 4,
            EmbeddingPrecision::F16 => 2,
        }
    }

    /// The oldest format version that can hold embeddings of this precision.
    pub(crate) fn format_version(self) -> u32 {
        match self {
            EmbeddingPrecision::F32 => 1,
            EmbeddingPrecision::F16 => 2,
        }
    }
}

/// One reference section in a bank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionInfo {
    pub name: String,
    /// Spot identifiers, in bank order.
    pub spot_ids: Vec<String>,
    /// Image the centres refer to, as given at build time.
    pub image: Option<PathBuf>,
}

/// Where one array lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Extent {
    offset: usize,
    bytes: usize,
}

/// Everything a bank records besides its arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankMeta {
    pub format_version: u32,
    /// SHA-256 of the encoder's ONNX file that made the embeddings.
    pub encoder_sha256: String,
    pub embedding_dim: usize,
    /// How the embeddings are stored (absent from version 1 banks: f32).
    #[serde(default)]
    pub embedding_precision: EmbeddingPrecision,
    /// Gene panel, the columns of the expression array.
    pub genes: Vec<String>,
    /// Normalisation fitted on the bank's sections; the expression array is already normalised.
    pub norm: NormStats,
    pub sections: Vec<SectionInfo>,
    pub n_spots: usize,
    pub(crate) arrays: [Extent; 5],
}

/// Bytes of a bank file, memory-mapped where the platform allows.
enum Storage {
    #[cfg(unix)]
    Mapped(memmap2::Mmap),
    /// The file's `len` bytes in 8-byte words, so that the f32/f64/u32 arrays inside are
    /// aligned (the last word padded).
    #[cfg_attr(unix, allow(dead_code))]
    Owned { words: Vec<u64>, len: usize },
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            #[cfg(unix)]
            Storage::Mapped(m) => m,
            Storage::Owned { words, len } => {
                // SAFETY: u64 has no padding; viewing its storage as bytes is always valid, and
                // `len` is at most the words' bytes.
                unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), *len) }
            }
        }
    }
}

/// One opened, verified bank file, its arrays read in place. A [`crate::ReferenceBank`] searches
/// one or more of them as one bank.
pub struct BankFile {
    path: PathBuf,
    meta: BankMeta,
    storage: Storage,
}

impl BankFile {
    /// Writes a bank file atomically from its five arrays, each the whole content of a file
    /// (embeddings, expression, centres, norms, sections): a reader never sees a partial bank
    /// under `path`. The arrays are read twice, a block at a time (to hash, then to copy), never
    /// whole. Returns the metadata as written, array offsets filled in.
    pub(crate) fn write(path: &Path, mut meta: BankMeta, mut parts: [File; 5]) -> Result<BankMeta, BankError> {
        let io = |source| BankError::Io { path: path.into(), source };
        let mut lengths = [0usize; 5];
        for (length, part) in lengths.iter_mut().zip(&parts) {
            *length =
                usize::try_from(part.metadata().map_err(io)?.len()).map_err(|e| BankError::Input(e.to_string()))?;
        }
        // The metadata records the offsets, and the offsets depend on the metadata's length: lay
        // out, serialise, and repeat until the serialisation no longer changes.
        let mut json = Vec::new();
        let mut settled = false;
        for _ in 0..8 {
            let mut offset = align(HEADER_LEN + json.len());
            for (extent, &bytes) in meta.arrays.iter_mut().zip(&lengths) {
                *extent = Extent { offset, bytes };
                offset = align(offset + bytes);
            }
            let next = serde_json::to_vec(&meta).map_err(|e| BankError::Input(e.to_string()))?;
            settled = next == json;
            if settled {
                break;
            }
            json = next;
        }
        if !settled {
            return Err(BankError::Input("bank metadata layout did not settle".into()));
        }
        // The file after the header: metadata, then each array after its alignment padding.
        let zeros = [0u8; ALIGN];
        let padding: Vec<usize> = (0..5)
            .map(|i| {
                let end = if i == 0 { HEADER_LEN + json.len() } else { meta.arrays[i - 1].offset + lengths[i - 1] };
                meta.arrays[i].offset - end
            })
            .collect();
        let body = |out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>, parts: &mut [File; 5]| {
            out(&json)?;
            let mut block = vec![0u8; 1 << 20];
            for (part, &pad) in parts.iter_mut().zip(&padding) {
                out(&zeros[..pad])?;
                part.seek(SeekFrom::Start(0))?;
                loop {
                    let read = part.read(&mut block)?;
                    if read == 0 {
                        break;
                    }
                    out(&block[..read])?;
                }
            }
            Ok(())
        };
        let mut digest = Sha256::new();
        body(
            &mut |piece| {
                digest.update(piece);
                Ok(())
            },
            &mut parts,
        )
        .map_err(io)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&meta.format_version.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&(json.len() as u64).to_le_bytes());
        header.extend_from_slice(&digest.finalize());
        header.resize(HEADER_LEN, 0);
        write_atomically(path, |out| {
            out.write_all(&header)?;
            body(&mut |piece| out.write_all(piece), &mut parts)
        })
        .map_err(io)?;
        Ok(meta)
    }

    /// Opens and verifies a bank file.
    pub fn open(path: &Path) -> Result<Self, BankError> {
        let io = |source| BankError::Io { path: path.into(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        #[cfg(unix)]
        // SAFETY: the bank is written once by atomic rename and never modified in place; a file
        // replaced later is a new inode, so this mapping keeps seeing the bytes it verified.
        let storage = Storage::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
        #[cfg(not(unix))]
        let storage = {
            use std::io::Read;
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes).map_err(io)?;
            let mut words = vec![0u64; bytes.len().div_ceil(8)];
            as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
            Storage::Owned { words, len: bytes.len() }
        };
        let meta = verify(path, storage.bytes())?;
        Ok(Self { path: path.into(), meta, storage })
    }

    /// The bank's metadata.
    pub fn meta(&self) -> &BankMeta {
        &self.meta
    }

    /// The file the bank was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of reference spots.
    pub fn len(&self) -> usize {
        self.meta.n_spots
    }

    /// Whether the bank holds no spot.
    pub fn is_empty(&self) -> bool {
        self.meta.n_spots == 0
    }

    /// Embeddings, spots × embedding_dim, as stored.
    pub fn embeddings(&self) -> Embeddings<'_> {
        let shape = (self.len(), self.meta.embedding_dim);
        match self.meta.embedding_precision {
            EmbeddingPrecision::F32 => {
                Embeddings::F32(ArrayView2::from_shape(shape, self.array(0)).expect("verified at open"))
            }
            EmbeddingPrecision::F16 => {
                Embeddings::F16(ArrayView2::from_shape(shape, self.array(0)).expect("verified at open"))
            }
        }
    }

    /// Normalised expression, spots × genes.
    pub fn expression(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.len(), self.meta.genes.len()), self.array(1)).expect("verified at open")
    }

    /// Spot centres `(x, y)` in level-0 pixels of each spot's section image.
    pub fn centres(&self) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((self.len(), 2), self.array(2)).expect("verified at open")
    }

    /// L2 norm of each embedding.
    pub fn norms(&self) -> &[f32] {
        self.array(3)
    }

    /// Index into [`BankMeta::sections`] of each spot.
    pub fn section_of(&self) -> &[u32] {
        self.array(4)
    }

    /// The SHA-256 of the file's contents, as its header records it (verified at open), in hex.
    pub fn checksum(&self) -> String {
        self.storage.bytes()[24..56].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn array<T: Plain>(&self, i: usize) -> &[T] {
        let extent = self.meta.arrays[i];
        let bytes = &self.storage.bytes()[extent.offset..extent.offset + extent.bytes];
        // SAFETY: `verify` checked bounds, alignment and that the length is a multiple of T.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / size_of::<T>()) }
    }
}

/// A bank file's embeddings, spots × embedding_dim, read in place as they are stored.
#[derive(Clone, Copy)]
pub enum Embeddings<'a> {
    F32(ArrayView2<'a, f32>),
    F16(ArrayView2<'a, f16>),
}

impl<'a> Embeddings<'a> {
    /// Number of rows (spots).
    pub fn nrows(&self) -> usize {
        match self {
            Embeddings::F32(e) => e.nrows(),
            Embeddings::F16(e) => e.nrows(),
        }
    }

    /// Rows `rows` as f32: in place when stored as f32, converted when stored as f16.
    pub fn rows_f32(&self, rows: Range<usize>) -> CowArray<'a, f32, Ix2> {
        match self {
            Embeddings::F32(e) => e.slice_move(s![rows, ..]).into(),
            Embeddings::F16(e) => e.slice(s![rows, ..]).mapv(f16::to_f32).into(),
        }
    }

    /// Row `row` as f32.
    pub fn row_f32(&self, row: usize) -> CowArray<'a, f32, Ix1> {
        self.rows_f32(row..row + 1).index_axis_move(Axis(0), 0)
    }
}

/// Element types stored in the file: plain little-endian numbers, valid for any bit pattern.
pub(crate) trait Plain: Copy {}
impl Plain for f16 {}
impl Plain for f32 {}
impl Plain for f64 {}
impl Plain for u32 {}

pub(crate) fn as_bytes<T: Plain>(values: &[T]) -> &[u8] {
    // SAFETY: plain numbers have no padding, so their storage is valid as bytes.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

#[cfg(not(unix))]
fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: any byte pattern is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * 8) }
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Checks everything about a bank file before any array is touched.
fn verify(path: &Path, bytes: &[u8]) -> Result<BankMeta, BankError> {
    let bad = |problem: String| Err(BankError::Format { path: path.into(), problem });
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return bad("not a spahgc reference bank (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(1..=FORMAT_VERSION).contains(&version) {
        return bad(format!("bank format version {version}; this build reads versions 1 to {FORMAT_VERSION}"));
    }
    if Sha256::digest(&bytes[HEADER_LEN..]).as_slice() != &bytes[24..56] {
        return bad("checksum mismatch: the file is truncated or damaged".into());
    }
    let json_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let Some(json) = usize::try_from(json_len).ok().and_then(|n| bytes.get(HEADER_LEN..HEADER_LEN.checked_add(n)?))
    else {
        return bad(format!("metadata length {json_len} exceeds the file"));
    };
    let meta: BankMeta = match serde_json::from_slice(json) {
        Ok(m) => m,
        Err(e) => return bad(format!("metadata: {e}")),
    };
    if meta.embedding_precision.format_version() > version {
        return bad(format!("{:?} embeddings in a version {version} bank", meta.embedding_precision));
    }
    let n = meta.n_spots;
    let expected = [
        n.checked_mul(meta.embedding_dim).and_then(|v| v.checked_mul(meta.embedding_precision.bytes())),
        n.checked_mul(meta.genes.len()).and_then(|v| v.checked_mul(4)),
        n.checked_mul(16),
        n.checked_mul(4),
        n.checked_mul(4),
    ];
    for (i, (extent, want)) in meta.arrays.iter().zip(expected).enumerate() {
        let fits =
            extent.offset % ALIGN == 0 && extent.offset.checked_add(extent.bytes).is_some_and(|e| e <= bytes.len());
        if !fits || Some(extent.bytes) != want {
            return bad(format!(
                "array {i} at {} ({} bytes) does not fit the metadata or the file",
                extent.offset, extent.bytes
            ));
        }
    }
    if meta.norm.genes != meta.genes {
        return bad("normalisation statistics are for another gene list".into());
    }
    let counted: usize = meta.sections.iter().map(|s| s.spot_ids.len()).sum();
    if counted != n {
        return bad(format!("sections list {counted} spots, the arrays hold {n}"));
    }
    let extent = meta.arrays[4];
    let section_bytes = &bytes[extent.offset..extent.offset + extent.bytes];
    let max_section = section_bytes.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).max();
    if max_section.is_some_and(|s| s as usize >= meta.sections.len()) {
        return bad(format!("a spot refers to section {max_section:?} of {}", meta.sections.len()));
    }
    if let Err(problem) = check_values(&meta, bytes) {
        return bad(problem);
    }
    Ok(meta)
}

/// Checks what the arrays hold, which the checksum cannot (a writer may have computed it over
/// wrong values): every number finite, and each stored norm the norm of its embedding (retrieval
/// divides by it, so a wrong one would give similarities outside [-1, 1]).
fn check_values(meta: &BankMeta, bytes: &[u8]) -> Result<(), String> {
    let array = |i: usize| &bytes[meta.arrays[i].offset..meta.arrays[i].offset + meta.arrays[i].bytes];
    let dim = meta.embedding_dim;
    if meta.n_spots > 0 && dim == 0 {
        return Err("embedding_dim is 0".into());
    }
    let norms = array(3).chunks_exact(4).map(le_f32);
    let width = meta.embedding_precision.bytes();
    let decode = |bytes: &[u8]| match meta.embedding_precision {
        EmbeddingPrecision::F32 => le_f32(bytes),
        EmbeddingPrecision::F16 => f16::from_le_bytes(bytes.try_into().expect("2 bytes")).to_f32(),
    };
    for (spot, (row, stored)) in array(0).chunks_exact(width * dim.max(1)).zip(norms).enumerate() {
        let mut squares = 0f64;
        for value in row.chunks_exact(width).map(decode) {
            if !value.is_finite() {
                return Err(format!("the embedding of spot {spot} holds {value}"));
            }
            squares += f64::from(value) * f64::from(value);
        }
        let norm = squares.sqrt();
        let agrees = (norm - f64::from(stored)).abs() <= 1e-3 * norm + 1e-30;
        if !agrees {
            return Err(format!("the stored norm of spot {spot} is {stored}, its embedding's is {norm}"));
        }
    }
    if let Some(value) = array(1).chunks_exact(4).map(le_f32).find(|v| !v.is_finite()) {
        return Err(format!("the expression array holds {value}"));
    }
    let mut centres = array(2).chunks_exact(8).map(|v| f64::from_le_bytes(v.try_into().expect("8 bytes")));
    if let Some(value) = centres.find(|v| !v.is_finite()) {
        return Err(format!("the centres array holds {value}"));
    }
    Ok(())
}

fn le_f32(bytes: &[u8]) -> f32 {
    f32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReferenceBank;
    use crate::test_support::random_bank;

    #[test]
    fn a_bank_reads_back_what_was_built() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, parts) = random_bank(dir.path(), 1);
        let bank = BankFile::open(bank.path()).unwrap();
        assert_eq!(bank.len(), 50);
        assert_eq!(bank.meta().genes, ["G3", "G1", "G7"]);
        assert_eq!(bank.embeddings().row_f32(30), parts[1].1.row(0));
        assert_eq!(bank.centres().row(31).to_vec(), vec![1.0, 2.0]);
        assert_eq!(bank.section_of()[29..31], [0, 1]);
        assert_eq!(bank.meta().sections[1].spot_ids[0], "B-0");
        // Min-max targets fitted on the bank itself span exactly [0, 1] per gene.
        for gene in bank.expression().columns() {
            let (lo, hi) = gene.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            assert_eq!((lo, hi), (0.0, 1.0));
        }
    }

    #[test]
    fn f16_banks_are_half_the_size_and_retrieve_alike() {
        use crate::{BankSection, EmbeddingPrecision, Normalise, build_bank_with};
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let (bank, parts) = random_bank(dir.path(), 4);
        let inputs: Vec<BankSection> =
            parts.iter().map(|(s, e)| BankSection { section: s, embeddings: e.view() }).collect();
        let path = dir.path().join("half.spb");
        let normalise = Normalise::As(&bank.meta().norm);
        build_bank_with(&path, &inputs, normalise, EmbeddingPrecision::F16, &bank.meta().encoder_sha256).unwrap();
        let (full, half) = (BankFile::open(bank.path()).unwrap(), BankFile::open(&path).unwrap());
        let version = |file: &BankFile| std::fs::read(file.path()).unwrap()[8];
        assert_eq!((version(&full), version(&half)), (1, 2), "f32 banks stay readable by version-1 builds");
        assert_eq!(half.meta().embedding_precision, EmbeddingPrecision::F16);
        assert_eq!(half.meta().arrays[0].bytes * 2, full.meta().arrays[0].bytes);
        let (a, b) = (full.embeddings().rows_f32(0..50), half.embeddings().rows_f32(0..50));
        assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-3 * x.abs() + 1e-7));
        assert_eq!(half.expression(), full.expression());

        // The k best similarities move by no more than f16 rounding moves any one similarity.
        let half = ReferenceBank::open(&path).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let queries = ndarray::Array2::from_shape_fn((40, 16), |_| rng.random_range(-1.0..1.0f32));
        let (want, got) =
            (bank.top_k(queries.view(), 7, Some("A")).unwrap(), half.top_k(queries.view(), 7, Some("A")).unwrap());
        for (want, got) in want.iter().zip(&got) {
            assert_eq!(got.len(), 7);
            assert!(got.iter().all(|n| n.index >= 30), "section A (rows 0..30) is excluded");
            for (w, g) in want.iter().zip(got) {
                assert!((w.similarity - g.similarity).abs() < 2e-3, "{w:?} vs {g:?}");
            }
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 1);
        let good = std::fs::read(bank.path()).unwrap();
        let path = dir.path().join("damaged.spb");
        for (what, bytes) in [
            ("truncated", good[..good.len() - 9].to_vec()),
            ("flipped", {
                let mut b = good.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            }),
            ("newer", {
                let mut b = good.clone();
                b[8] = 9;
                b
            }),
            ("empty", Vec::new()),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let err = ReferenceBank::open(&path).expect_err(what).to_string();
            assert!(err.contains("damaged.spb"), "{what}: {err}");
            if what == "newer" {
                assert!(err.contains("version 9") && err.contains("versions 1 to 2"), "{err}");
            }
        }
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/bank_file.rs`): a file whose checksum is right but
    /// whose stored norms disagree with its embeddings gave similarities far outside [-1, 1].
    #[test]
    fn arrays_with_wrong_norms_or_non_finite_values_are_refused_despite_a_right_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 1);
        let bank = BankFile::open(bank.path()).unwrap();
        let good = std::fs::read(bank.path()).unwrap();
        let [embeddings, _, centres, norms, _] = bank.meta().arrays.map(|e| e.offset);
        let path = dir.path().join("rewritten.spb");
        for (at, value, expected) in [
            (norms, 2.5f32.to_le_bytes().to_vec(), "stored norm of spot 0"),
            (embeddings + 4 * 16, f32::NAN.to_le_bytes().to_vec(), "embedding of spot 1 holds NaN"),
            (centres + 8, f64::INFINITY.to_le_bytes().to_vec(), "centres array holds inf"),
        ] {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(&value);
            let sum = Sha256::digest(&bytes[HEADER_LEN..]);
            bytes[24..56].copy_from_slice(&sum);
            std::fs::write(&path, &bytes).unwrap();
            let err = ReferenceBank::open(&path).expect_err(expected).to_string();
            assert!(err.contains(expected) && err.contains("rewritten.spb"), "{err}");
        }
    }

    #[test]
    fn inconsistent_inputs_are_refused() {
        use crate::{BankSection, build_bank};
        use rand::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (a, ea) = crate::test_support::random_section("A", 5, 4, &mut rng);
        let (b, eb) = crate::test_support::random_section("B", 5, 3, &mut rng);
        let genes = vec!["G1".to_string()];
        let path = dir.path().join("bank.spb");
        let two =
            [BankSection { section: &a, embeddings: ea.view() }, BankSection { section: &b, embeddings: eb.view() }];
        let err = build_bank(&path, &two, &genes, Default::default(), "x").unwrap_err().to_string();
        assert!(err.contains("section B") && err.contains("3 dimensions"), "{err}");
        let short = [BankSection { section: &a, embeddings: ea.slice(ndarray::s![..4, ..]) }];
        assert!(build_bank(&path, &short, &genes, Default::default(), "x").is_err());
        let alien = vec!["NOPE1".to_string(), "NOPE2".to_string()];
        let one = [BankSection { section: &a, embeddings: ea.view() }];
        assert!(build_bank(&path, &one, &alien, Default::default(), "x").unwrap_err().to_string().contains("lacks 2"));
        assert!(!path.exists(), "a refused build writes nothing");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nor leaves a temporary file");
    }
}
