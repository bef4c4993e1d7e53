use std::path::PathBuf;

/// Errors raised while loading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file's content is not what the format requires.
    #[error("{path}, line {line}: {problem}")]
    Format { path: PathBuf, line: usize, problem: String },
    /// An HDF5 file lacks a dataset or holds one of the wrong type or shape.
    #[error("{path}: {problem}")]
    Hdf5 { path: PathBuf, problem: String },
    /// The files of one section disagree with each other.
    #[error("section {section}: {problem}")]
    Inconsistent { section: String, problem: String },
    /// A section was asked for that the data set does not have.
    #[error("section {name} not found in {dir}; available: {available}")]
    NoSuchSection { name: String, dir: PathBuf, available: String },
    /// The loaded parts could not form a count matrix.
    #[error(transparent)]
    Core(#[from] spahgc_core::CoreError),
}

impl DatasetError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.into(), source }
    }

    pub(crate) fn format(path: &std::path::Path, line: usize, problem: impl Into<String>) -> Self {
        Self::Format { path: path.into(), line, problem: problem.into() }
    }
}
