use std::path::PathBuf;

/// Errors building, opening or searching an approximate index.
#[derive(Debug, thiserror::Error)]
pub enum AnnError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// A file that is not what it should be: foreign, damaged, or of another shape.
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    /// Inputs that do not fit together.
    #[error("{0}")]
    Input(String),
    /// The HNSW library refused an operation.
    #[error("approximate index: {0}")]
    Graph(String),
}

impl From<AnnError> for spahgc_bank::BankError {
    fn from(e: AnnError) -> Self {
        spahgc_bank::BankError::Input(e.to_string())
    }
}
