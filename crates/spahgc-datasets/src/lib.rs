//! Loaders that turn spatial-transcriptomics data sets on disk into [`spahgc_core::Section`]s.
//!
//! - [`her2st`]: the HER2+ breast cancer release (legacy Spatial Transcriptomics).
//! - [`visium`]: 10x Visium / Space Ranger `outs/` directories (HDF5 or Matrix Market counts).
//!
//! Every error names the file and, where there is one, the line and field at fault.

mod error;
pub mod her2st;
pub mod visium;

pub use error::DatasetError;
