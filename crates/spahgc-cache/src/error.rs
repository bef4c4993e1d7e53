//! The cache's error type.

use std::io;
use std::path::PathBuf;

/// Why a cache operation failed.
///
/// A corrupt, truncated or foreign entry is *not* an error: [`crate::EmbeddingCache::get`] logs it,
/// deletes it and reports a miss. Errors are reserved for problems the caller has to know about,
/// such as an unwritable cache directory.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file-system operation failed; `what` says which (e.g. "create cache directory").
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// The operation that failed, phrased to follow "cannot".
        what: &'static str,
        /// The file or directory it failed on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `put` was given a value slice whose length is not `rows × dim`.
    #[error("embedding shape mismatch: {rows} rows × {dim} dims needs {} values, got {len}",
        rows.checked_mul(*dim).map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()))]
    Shape {
        /// Rows requested.
        rows: usize,
        /// Embedding dimension requested.
        dim: usize,
        /// Number of values supplied.
        len: usize,
    },
    /// None of `SPAHGC_CACHE_DIR`, `XDG_CACHE_HOME` or `HOME` is set to a usable directory.
    #[error("no cache directory: set SPAHGC_CACHE_DIR (or XDG_CACHE_HOME or HOME)")]
    NoDefaultRoot,
}

impl CacheError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CacheError::Io { what, path: path.into(), source }
    }
}
