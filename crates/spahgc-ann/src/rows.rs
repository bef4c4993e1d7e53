//! Rows of embeddings, wherever they are kept.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use half::slice::HalfFloatSliceExt;
use ndarray::Array2;
use spahgc_bank::BankFile;

use crate::AnnError;

/// Embeddings, one row per spot, read a row or a block at a time.
pub trait EmbeddingRows: Sync {
    /// Rows and dimensions.
    fn shape(&self) -> (usize, usize);

    /// Row `i` into `out` (as long as a row).
    fn row_into(&self, i: usize, out: &mut [f32]);

    /// Rows `start..end` as an array.
    fn block(&self, start: usize, end: usize) -> Array2<f32> {
        let dim = self.shape().1;
        let mut block = Array2::zeros((end - start, dim));
        for (i, mut row) in (start..end).zip(block.rows_mut()) {
            self.row_into(i, row.as_slice_mut().expect("a fresh array is contiguous"));
        }
        block
    }
}

impl EmbeddingRows for BankFile {
    fn shape(&self) -> (usize, usize) {
        (self.len(), self.meta().embedding_dim)
    }

    fn row_into(&self, i: usize, out: &mut [f32]) {
        out.iter_mut().zip(self.embeddings().row_f32(i).iter()).for_each(|(o, v)| *o = *v);
    }

    fn block(&self, start: usize, end: usize) -> Array2<f32> {
        self.embeddings().rows_f32(start..end).into_owned()
    }
}

/// File of f16 rows: magic, rows (u64 LE), dimensions (u64 LE), then the rows, row-major.
const MAGIC: &[u8; 8] = b"SPAHGF16";
const HEADER_LEN: usize = 24;

/// Embeddings kept as half-precision floats in a memory-mapped file: 2 bytes a value, read in
/// place.
pub struct F16Rows {
    path: PathBuf,
    map: memmap2::Mmap,
    rows: usize,
    dim: usize,
}

impl F16Rows {
    /// Opens a file written by [`F16RowsWriter`], checking its header against its length.
    pub fn open(path: &Path) -> Result<Self, AnnError> {
        let io = |error| AnnError::Io { path: path.into(), error };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the file is written once (renamed into place) and never modified in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let bad = |problem: String| AnnError::Format { path: path.into(), problem };
        if map.len() < HEADER_LEN || &map[..8] != MAGIC {
            return Err(bad("not a spahgc f16 embedding file".into()));
        }
        let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes")) as usize;
        let (rows, dim) = (word(8), word(16));
        // Searches read scattered rows: without this, each read would map the 64 KB around it
        // (and read ahead), and resident memory would grow by a multiple of what is used.
        map.advise(memmap2::Advice::Random).map_err(io)?;
        let expected = rows.checked_mul(dim).and_then(|v| v.checked_mul(2)).and_then(|v| v.checked_add(HEADER_LEN));
        if expected != Some(map.len()) {
            return Err(bad(format!("{rows} rows of {dim} values do not fill its {} bytes", map.len())));
        }
        Ok(Self { path: path.into(), map, rows, dim })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn values(&self) -> &[f16] {
        let bytes = &self.map[HEADER_LEN..];
        // SAFETY: any bit pattern is an f16, the length was checked, and HEADER_LEN keeps the
        // values 2-byte aligned in a page-aligned mapping.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 2) }
    }
}

impl EmbeddingRows for F16Rows {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.dim)
    }

    fn row_into(&self, i: usize, out: &mut [f32]) {
        self.values()[i * self.dim..(i + 1) * self.dim].convert_to_f32_slice(out);
    }

    /// The block, whose pages are then let go: a scan over every row (a build, an exact search)
    /// keeps one block resident, not the file.
    fn block(&self, start: usize, end: usize) -> Array2<f32> {
        let (offset, len) = (HEADER_LEN + start * self.dim * 2, (end - start) * self.dim * 2);
        // A block is read whole: ask for it ahead, then let it go.
        let _ = self.map.advise_range(memmap2::Advice::WillNeed, offset, len);
        let values = self.values()[start * self.dim..end * self.dim].to_f32_vec();
        // SAFETY: the mapping is read-only and backed by the file, so dropped pages are read
        // again from it when next touched; no reference into them outlives this call.
        // A failure only leaves the pages resident.
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
        Array2::from_shape_vec((end - start, self.dim), values).expect("the block's length")
    }
}

/// Writes an [`F16Rows`] file a row at a time; it appears under its name, complete, on
/// [`F16RowsWriter::finish`].
pub struct F16RowsWriter {
    path: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    dim: usize,
    rows: usize,
}

impl F16RowsWriter {
    pub fn create(path: &Path, dim: usize) -> Result<Self, AnnError> {
        let io = |error| AnnError::Io { path: path.into(), error };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut file = BufWriter::new(tempfile::NamedTempFile::new_in(dir).map_err(io)?);
        file.write_all(&[0u8; HEADER_LEN]).map_err(io)?;
        Ok(Self { path: path.into(), file, dim, rows: 0 })
    }

    /// Appends one row of `dim` values.
    pub fn push(&mut self, row: &[f32]) -> Result<(), AnnError> {
        if row.len() != self.dim {
            return Err(AnnError::Input(format!("a row of {} values for a file of {}", row.len(), self.dim)));
        }
        let mut bytes = Vec::with_capacity(2 * row.len());
        row.iter().for_each(|v| bytes.extend_from_slice(&f16::from_f32(*v).to_le_bytes()));
        self.file.write_all(&bytes).map_err(|error| AnnError::Io { path: self.path.clone(), error })?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the header and renames the file into place.
    pub fn finish(self) -> Result<F16Rows, AnnError> {
        let io = |error| AnnError::Io { path: self.path.clone(), error };
        let mut file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(self.rows as u64).to_le_bytes());
        header.extend_from_slice(&(self.dim as u64).to_le_bytes());
        use std::io::Seek;
        file.as_file_mut().seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        file.as_file_mut().write_all(&header).map_err(io)?;
        file.as_file_mut().sync_all().map_err(io)?;
        file.persist(&self.path).map_err(|e| io(e.error))?;
        F16Rows::open(&self.path)
    }
}
