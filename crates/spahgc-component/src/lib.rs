//! spahgc as a WebAssembly component: [`spahgc_engine::Engine`] behind the `engine` interface of
//! `wit/spahgc.wit`, built for `wasm32-wasip2` (`scripts/build-component.sh`).
//!
//! With the `self-contained` feature (the default) the component is world `predictor` and runs
//! the bundle's encoder with tract; without it, world `predictor-with-host-encoder`, and each
//! batch of prepared patches goes to the host's `encoder.embed`. Every failure returns the WIT
//! `error` variant; nothing here panics on a host's input.

#[cfg(feature = "self-contained")]
wit_bindgen::generate!({ world: "predictor", path: "../../wit" });
#[cfg(not(feature = "self-contained"))]
wit_bindgen::generate!({ world: "predictor-with-host-encoder", path: "../../wit" });

#[cfg(target_os = "wasi")]
mod wasi_libc;

use std::path::Path;

use exports::spahgc::predict::engine::{Engine as EngineHandle, Guest, GuestEngine};
use ndarray::ArrayView2;
use spahgc::predict::types::{Error, Expression, PixelFormat, Pixels, Rect, RegionPrediction, Spot};
use spahgc_encoder::{BackendKind, EncoderOptions};
use spahgc_engine::{EngineError, EngineOptions, Prediction, Region, RegionOptions, Request};

/// The component's export.
struct Component;

impl Guest for Component {
    type Engine = OpenedEngine;
}

/// A bundle opened inside the sandbox.
pub struct OpenedEngine {
    engine: spahgc_engine::Engine,
}

impl GuestEngine for OpenedEngine {
    fn open(path: String) -> Result<EngineHandle, Error> {
        // tract runs the encoder when the host does not; nothing is cached on disk.
        let encoder = EncoderOptions { backend: BackendKind::Tract, ..EncoderOptions::default() };
        let options = EngineOptions { encoder, external_encoder: host_encoder(), ..EngineOptions::default() };
        let engine = spahgc_engine::Engine::open(Path::new(&path), options).map_err(error)?;
        Ok(EngineHandle::new(OpenedEngine { engine }))
    }

    fn genes(&self) -> Vec<String> {
        self.engine.genes().to_vec()
    }

    fn clear_memory(&self) {
        self.engine.clear_memory();
    }

    fn pixel_context(&self, region: Rect, microns_per_pixel: f64) -> Rect {
        let region = Region { x: region.x, y: region.y, width: region.width, height: region.height };
        let Region { x, y, width, height } = self.engine.pixel_context(region, microns_per_pixel);
        Rect { x, y, width, height }
    }

    fn predict_pixels(
        &self,
        pixels: Pixels,
        origin_x: u64,
        origin_y: u64,
        microns_per_pixel: f64,
        region: Option<Rect>,
        genes: Option<Vec<String>>,
        tissue_only: bool,
    ) -> Result<RegionPrediction, Error> {
        let stride = usize::try_from(pixels.stride).map_err(|_| Error::BadInput("stride does not fit".into()))?;
        let buffer = spahgc_engine::PixelBuffer {
            pixels: &pixels.data,
            width: pixels.width,
            height: pixels.height,
            stride,
            format: match pixels.format {
                PixelFormat::Rgba8 => spahgc_engine::PixelFormat::Rgba8,
                PixelFormat::Rgb8 => spahgc_engine::PixelFormat::Rgb8,
                PixelFormat::Bgra8Premultiplied => spahgc_engine::PixelFormat::Bgra8Premultiplied,
            },
        };
        let options = RegionOptions {
            region: region.map(|r| Region { x: r.x, y: r.y, width: r.width, height: r.height }),
            microns_per_pixel: Some(microns_per_pixel),
            tissue_only,
        };
        let request = Request { genes: genes.as_deref(), ..Request::default() };
        let found = self.engine.predict_pixels(&buffer, (origin_x, origin_y), &options, &request).map_err(error)?;
        let spots = (0..found.ids.len())
            .map(|i| Spot {
                id: found.ids[i].clone(),
                x: found.centres[i].0,
                y: found.centres[i].1,
                in_tissue: found.in_tissue[i],
            })
            .collect();
        Ok(RegionPrediction { spots, diameter: found.diameter_px, expression: expression(found.prediction) })
    }

    fn predict_embeddings(
        &self,
        centres: Vec<(f64, f64)>,
        embeddings: Vec<f32>,
        genes: Option<Vec<String>>,
    ) -> Result<Expression, Error> {
        let dim = self.engine.bundle().model().config().embedding_dim;
        if centres.is_empty() || embeddings.len() != centres.len() * dim {
            return Err(Error::BadInput(format!(
                "{} embedding values for {} centres; expected centres x {dim} (the bundle's embedding dimension)",
                embeddings.len(),
                centres.len()
            )));
        }
        let view = ArrayView2::from_shape((centres.len(), dim), &embeddings)
            .map_err(|e| Error::Internal(format!("embedding matrix: {e}")))?;
        let request = Request { genes: genes.as_deref(), ..Request::default() };
        Ok(expression(self.engine.predict_embeddings(&centres, view, &request).map_err(error)?))
    }
}

/// A prediction as the WIT record: genes and row-major values.
fn expression(prediction: Prediction) -> Expression {
    let values = prediction.expression.as_standard_layout().iter().copied().collect();
    Expression { genes: prediction.genes, values }
}

/// The WIT error for an engine error, by who is to blame.
fn error(e: EngineError) -> Error {
    let message = e.to_string();
    match e {
        EngineError::Bundle(_) => Error::Bundle(message),
        EngineError::Encoder(_) | EngineError::Embed(_) => Error::Encoder(message),
        EngineError::Input(_) | EngineError::Slide(_) => Error::BadInput(message),
        EngineError::Model(spahgc_engine::ModelError::Input(_) | spahgc_engine::ModelError::Graph(_)) => {
            Error::BadInput(message)
        }
        EngineError::Model(_) | EngineError::Bank(_) | EngineError::Cancelled => Error::Internal(message),
    }
}

/// The encoder of world `predictor`: none from the host, the engine runs tract.
#[cfg(feature = "self-contained")]
fn host_encoder() -> Option<std::sync::Arc<dyn spahgc_encoder::ExternalEncoder>> {
    None
}

/// The encoder of world `predictor-with-host-encoder`: the host's `encoder.embed`.
#[cfg(not(feature = "self-contained"))]
fn host_encoder() -> Option<std::sync::Arc<dyn spahgc_encoder::ExternalEncoder>> {
    Some(std::sync::Arc::new(HostEncoder))
}

/// Batches sent to the host across the component boundary.
#[cfg(not(feature = "self-contained"))]
#[derive(Debug)]
struct HostEncoder;

#[cfg(not(feature = "self-contained"))]
impl spahgc_encoder::ExternalEncoder for HostEncoder {
    fn embed_batch(&self, batch: ndarray::ArrayView4<f32>) -> Result<ndarray::Array2<f32>, String> {
        let (count, _, size, _) = batch.dim();
        let values = batch.as_standard_layout();
        let values = values.as_slice().ok_or("a standard-layout batch is contiguous")?;
        let count32 = u32::try_from(count).map_err(|_| format!("a batch of {count} patches"))?;
        let size32 = u32::try_from(size).map_err(|_| format!("patches of {size} pixels"))?;
        let embedded = spahgc::predict::encoder::embed(count32, size32, values)?;
        let dim = embedded.len().checked_div(count).unwrap_or(0);
        ndarray::Array2::from_shape_vec((count, dim), embedded)
            .map_err(|_| format!("the host returned values that are not {count} embeddings of one width"))
    }

    fn name(&self) -> &'static str {
        "host encoder"
    }
}

export!(Component);
