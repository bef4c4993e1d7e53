//! Leave-one-section-out evaluation: each section in turn is the test section, the others are
//! the training data (normalisation statistics, reference bank, fitted baselines). Nothing of
//! the test section but its image embeddings reaches a method.
//!
//! Scores per fold and method: mean per-gene Pearson r on the test section, the same over the
//! test section's 50 most variable genes, and RMSE, all on normalised targets.

pub mod baselines;
mod protocol;

pub use protocol::{FoldReport, Protocol, Report, Scores, evaluate_fold, score};

/// Errors raised by an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluation: {0}")]
    Input(String),
    #[error(transparent)]
    Bank(#[from] spahgc_bank::BankError),
    #[error(transparent)]
    Ann(#[from] spahgc_ann::AnnError),
    #[error(transparent)]
    Core(#[from] spahgc_core::CoreError),
    #[error(transparent)]
    Model(#[from] spahgc_model::ModelError),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
