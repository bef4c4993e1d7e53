//! Approximate top-k retrieval for reference banks of millions of spots.
//!
//! An [`AnnIndex`] is an HNSW graph (the `usearch` library) over the embeddings projected onto
//! their leading principal components and quantised to 8 bits: a search walks the small vectors,
//! and its candidates are ranked again on the full embeddings, exactly. Embeddings are read as
//! [`EmbeddingRows`]: a bank file's own (memory-mapped) or [`F16Rows`], a memory-mapped file of
//! half-precision rows written one block at a time. Building never holds all embeddings in
//! memory, and a fixed seed gives the same index, byte for byte.

mod error;
mod exact;
mod index;
mod projection;
mod rows;

pub use error::AnnError;
pub use exact::exact_top_k;
pub use index::{AnnIndex, AnnMeta, AnnParams};
pub use rows::{EmbeddingRows, F16Rows, F16RowsWriter};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spahgc_bank::{APPROXIMATE_FROM_SPOTS, ReferenceBank};

/// Where the index of the bank file `bank` lives: beside it, `<bank name>.ann/`.
pub fn index_dir_of(bank: &Path) -> PathBuf {
    bank.with_extension("ann")
}

/// Builds the index of each of `bank`'s files beside it.
pub fn build_beside(bank: &ReferenceBank, params: AnnParams) -> Result<Vec<AnnIndex>, AnnError> {
    bank.files().map(|file| AnnIndex::build(file, params, &index_dir_of(file.path()))).collect()
}

/// Attaches to each of `bank`'s files the index beside it, where one was built, to be searched
/// from `from_spots` spots on (default [`APPROXIMATE_FROM_SPOTS`]); returns how many files have
/// one.
pub fn attach_beside(bank: &mut ReferenceBank, from_spots: Option<usize>) -> Result<usize, AnnError> {
    let dirs: Vec<PathBuf> = bank.files().map(|file| index_dir_of(file.path())).collect();
    let mut attached = 0;
    for (shard, dir) in dirs.into_iter().enumerate().filter(|(_, dir)| dir.exists()) {
        let index = AnnIndex::open(&dir)?;
        bank.attach_index(shard, Arc::new(index), from_spots.unwrap_or(APPROXIMATE_FROM_SPOTS))
            .map_err(|e| AnnError::Format { path: dir, problem: e.to_string() })?;
        attached += 1;
    }
    Ok(attached)
}
