//! A verified, memory-mapped cache entry.

use half::f16;
use memmap2::Mmap;

use crate::format::{EntryShape, HEADER_LEN, Precision};

/// Embeddings read from the cache: `rows × dim` values, row-major, backed by a read-only memory
/// map of the entry file.
///
/// The entry was fully verified (header, key and checksum) when it was returned. It owns its
/// mapping, so it stays valid even if the file is evicted, cleared or replaced meanwhile (the
/// mapping keeps the deleted file's data alive until this value is dropped). It is `Send + Sync`.
#[derive(Debug)]
pub struct CachedEmbeddings {
    map: Mmap,
    shape: EntryShape,
}

impl CachedEmbeddings {
    pub(crate) fn new(map: Mmap, shape: EntryShape) -> Self {
        CachedEmbeddings { map, shape }
    }

    /// Number of embeddings (spots), in the row order of the key's `centres`.
    pub fn rows(&self) -> usize {
        self.shape.rows
    }

    /// Length of each embedding.
    pub fn dim(&self) -> usize {
        self.shape.dim
    }

    /// Precision the values are stored at.
    pub fn precision(&self) -> Precision {
        self.shape.precision
    }

    fn payload(&self) -> &[u8] {
        &self.map[HEADER_LEN..]
    }

    /// Zero-copy view of the `rows × dim` values when stored as f32; `None` when stored as f16
    /// (and on big-endian hosts, which cannot view the little-endian payload in place).
    pub fn as_f32(&self) -> Option<&[f32]> {
        let native = self.shape.precision == Precision::F32 && cfg!(target_endian = "little");
        // The map is page-aligned and the header is 128 bytes, so the cast cannot fail in practice;
        // `try_` keeps a surprise from becoming a panic.
        native.then(|| bytemuck::try_cast_slice(self.payload()).ok()).flatten()
    }

    /// Zero-copy view of the `rows × dim` values when stored as f16; `None` when stored as f32
    /// (and on big-endian hosts).
    pub fn as_f16(&self) -> Option<&[f16]> {
        let native = self.shape.precision == Precision::F16 && cfg!(target_endian = "little");
        native.then(|| bytemuck::try_cast_slice(self.payload()).ok()).flatten()
    }

    /// A freshly allocated copy of the `rows × dim` values as f32, whatever the stored precision.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.shape.precision {
            Precision::F32 => {
                self.payload().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            Precision::F16 => {
                self.payload().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
        }
    }
}
