//! Data types shared by every spahgc crate: sections of spots with counts, gene panels, the
//! normalisation that turns counts into model targets, and the accuracy metrics.
//!
//! This crate does no I/O beyond plain-text panel files and compiles to `wasm32-wasip2`.

mod counts;
mod error;
mod files;
mod metrics;
mod normalise;
mod panel;
mod section;

pub use counts::CountMatrix;
pub use error::CoreError;
pub use files::{
    STALE_TEMPORARY_AGE, TEMPORARY_PREFIX, write_atomically, write_atomically_by_name, write_dir_atomically,
};
pub use metrics::{GenePcc, mean_gene_pcc, pearson, rmse};
pub use normalise::{NormStats, Normalisation, log_cp10k, panel_expression};
pub use panel::{GenePanel, HvgCriterion};
pub use section::{Section, Spot};
