use std::path::PathBuf;

/// Errors raised while building, reading or querying a reference bank.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not a bank, is damaged, or is of a format this build cannot read.
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    /// A shard cannot be searched together with the bank's first shard.
    #[error("{shard}: cannot be searched together with {first}: {problem}")]
    Incompatible { shard: PathBuf, first: PathBuf, problem: String },
    /// The inputs of a build or a query do not fit together.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Core(#[from] spahgc_core::CoreError),
}
