//! The prediction engine: a model bundle opened once, then expression predicted for spots of
//! any slide — embedded through the on-disk cache, references retrieved from the bundle's bank,
//! the heterogeneous graph built, and the SpaHGC network run.
//!
//! This is the one prediction path: `spahgc eval` scores exactly what [`Engine::predict_spots`]
//! computes for the same spots (graph from [`GraphInputs::build`], network from
//! [`SpaHgc::predict`]), then turns model outputs back into expression units.

mod grid;

use std::path::Path;

use ndarray::{Array2, Axis};
use spahgc_bundle::{Bundle, BundleError};
use spahgc_cache::{EmbeddingCache, Precision};
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::{EncoderOptions, LazyEncoder};
use spahgc_model::{GraphInputs, ModelError, SpaHgc};

pub use grid::{Region, RegionOptions};

/// Errors of the engine, each naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Encoder(#[from] spahgc_encoder::EncoderError),
    #[error(transparent)]
    Embed(#[from] spahgc_embed::EmbedError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Slide(#[from] spahgc_slide::SlideError),
    #[error("{0}")]
    Input(String),
}

/// How the engine runs its encoder and where it caches embeddings.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub encoder: EncoderOptions,
    /// The embedding cache; `None`: no cache.
    pub cache: Option<EmbeddingCache>,
    /// Precision of new cache entries.
    pub precision: Precision,
}

/// Predicted expression for a list of spots.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Genes, in column order.
    pub genes: Vec<String>,
    /// ln(1 + counts per 10k) (at least 0), spots × genes, in request order.
    pub expression: Array2<f32>,
}

/// Predicted expression for the grid spots of a slide region.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionPrediction {
    /// Spot ids: `<column>x<row>` of the slide-global grid.
    pub ids: Vec<String>,
    /// Spot centres in level-0 pixels.
    pub centres: Vec<(f64, f64)>,
    /// Spot diameter in level-0 pixels (half the grid pitch).
    pub diameter_px: f64,
    pub prediction: Prediction,
}

/// Refuses a resolution that is not a positive number of µm per pixel.
fn check_resolution(slide: &Path, microns_per_pixel: f64) -> Result<(), EngineError> {
    if microns_per_pixel.is_finite() && microns_per_pixel > 0.0 {
        return Ok(());
    }
    Err(EngineError::Input(format!("{}: µm per pixel must be positive, got {microns_per_pixel}", slide.display())))
}

/// A model bundle ready to predict; `Send + Sync`, shareable across threads.
pub struct Engine {
    bundle: Bundle,
    encoder: LazyEncoder,
    cache: Option<EmbeddingCache>,
    precision: Precision,
}

impl Engine {
    /// Opens and verifies the bundle in `dir`; the encoder loads on first use.
    pub fn open(dir: &Path, options: EngineOptions) -> Result<Self, EngineError> {
        let bundle = Bundle::open(dir)?;
        let encoder = LazyEncoder::open(&bundle.encoder_dir(), options.encoder)?;
        let config = bundle.model().config();
        if encoder.manifest().embedding_dim != config.embedding_dim {
            return Err(EngineError::Input(format!(
                "bundle {}: the encoder embeds into {} dimensions, the model takes {}",
                dir.display(),
                encoder.manifest().embedding_dim,
                config.embedding_dim
            )));
        }
        Ok(Self { bundle, encoder, cache: options.cache, precision: options.precision })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The genes predicted, in column order.
    pub fn genes(&self) -> &[String] {
        &self.bundle.model().config().genes
    }

    /// The columns of `genes` in a prediction; a gene the bundle does not predict is an error
    /// naming it.
    pub fn gene_columns(&self, genes: &[String]) -> Result<Vec<usize>, EngineError> {
        let all = self.genes();
        genes
            .iter()
            .map(|g| {
                all.iter().position(|x| x == g).ok_or_else(|| {
                    EngineError::Input(format!(
                        "gene {g} is not among the {} genes of {}",
                        all.len(),
                        self.bundle.dir().display()
                    ))
                })
            })
            .collect()
    }

    /// Expression predicted for the grid spots of `region` of the slide at `slide` (default:
    /// the whole slide). Margin spots around the region join the graph and are not returned;
    /// with `options.tissue_only`, spots on glass are skipped.
    pub fn predict_region(
        &self,
        slide: &Path,
        region: Option<Region>,
        options: RegionOptions,
    ) -> Result<RegionPrediction, EngineError> {
        let opened = spahgc_slide::open(slide)?;
        let pitch_um = self.bundle.manifest().grid.spot_pitch_um;
        let grid = grid::grid_spots(opened.as_ref(), region, options, pitch_um)?;
        let in_region: Vec<usize> = (0..grid.ids.len()).filter(|&i| grid.in_region[i]).collect();
        if in_region.is_empty() || grid.centres.len() < 2 {
            return Err(EngineError::Input(format!(
                "the region of {} holds {} spots of the grid ({} with the margin); a graph needs at least two",
                slide.display(),
                in_region.len(),
                grid.centres.len()
            )));
        }
        let mut prediction = self.predict_spots(slide, Some(grid.microns_per_pixel), &grid.centres, None)?;
        prediction.expression = prediction.expression.select(Axis(0), &in_region);
        Ok(RegionPrediction {
            ids: in_region.iter().map(|&i| grid.ids[i].clone()).collect(),
            centres: in_region.iter().map(|&i| grid.centres[i]).collect(),
            diameter_px: grid.diameter_px,
            prediction,
        })
    }

    /// Expression predicted for spots centred at `centres` (level-0 pixels) of `slide`, at
    /// `microns_per_pixel` (`None`: from the slide's metadata). References from the bank's
    /// section named `exclude_section`, if any, are not used (a bank section predicting itself).
    pub fn predict_spots(
        &self,
        slide: &Path,
        microns_per_pixel: Option<f64>,
        centres: &[(f64, f64)],
        exclude_section: Option<&str>,
    ) -> Result<Prediction, EngineError> {
        if let Some(mpp) = microns_per_pixel {
            check_resolution(slide, mpp)?;
        }
        let embedder = SpotEmbedder { encoder: &self.encoder, cache: self.cache.as_ref(), precision: self.precision };
        let spots = SlideSpots { slide, microns_per_pixel, centres };
        let embedded = embedder.embed(&spots, &|_, _| {})?;
        let model: &SpaHgc = self.bundle.model();
        let config = model.config();
        let graph =
            GraphInputs::build(centres, embedded.embeddings.view(), self.bundle.bank(), exclude_section, config.graph)?;
        let mut expression = model.predict(&graph)?;
        config.normalisation.invert(&mut expression).map_err(|e| EngineError::Input(e.to_string()))?;
        // ln(1 + counts per 10k) is never negative; a scaled output below the training minimum
        // can map below zero.
        expression.mapv_inplace(|v| v.max(0.0));
        Ok(Prediction { genes: config.genes.clone(), expression })
    }
}
