use std::path::PathBuf;

/// Errors raised by the core data types.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A count matrix was built from inconsistent parts.
    #[error("count matrix: {0}")]
    BadMatrix(String),
    /// A panel file could not be read or written.
    #[error("gene panel {path}: {source}")]
    PanelIo { path: PathBuf, source: std::io::Error },
    /// A panel file is malformed.
    #[error("gene panel {path}, line {line}: {problem}")]
    PanelFormat { path: PathBuf, line: usize, problem: String },
    /// A panel was asked of sections that cannot provide it.
    #[error("gene panel: {0}")]
    Panel(String),
    /// Normalisation statistics do not fit the data they are applied to.
    #[error("normalisation: expected {expected} genes, got {found}")]
    GeneCount { expected: usize, found: usize },
}
