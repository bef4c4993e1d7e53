//! Pure-Rust backend on tract: no native library, runs anywhere Rust compiles (WebAssembly too).

use std::sync::Arc;

use ndarray::{Array2, ArrayView4, Axis, Ix2};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::{EncoderError, ModelDir, Outputs};

type Plan = Arc<TypedRunnableModel>;

/// A tract plan for one encoder model, optimised for one patch per call.
pub struct TractBackend {
    plan: Plan,
    with_logits: bool,
}

impl TractBackend {
    /// Parses and optimises the model for single-patch batches.
    pub fn new(model: &ModelDir) -> Result<Self, EncoderError> {
        let m = &model.manifest;
        let model_err = |e: TractError| EncoderError::Model { path: model.onnx_path(), problem: format!("{e:#}") };
        let size = m.input_size as usize;
        let mut outputs = vec![m.embedding_output.clone()];
        outputs.extend(m.logits_output.clone());
        let graph = tract_onnx::onnx().model_for_read(&mut model.onnx.as_slice()).map_err(model_err)?;
        let declared: Vec<Option<i64>> = graph
            .input_fact(0)
            .map_err(model_err)?
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|d| d.to_i64().ok()))
            .collect();
        model.check_input_shape(&declared)?;
        let plan = graph
            .with_input_fact(0, f32::fact([1, 3, size, size]).into())
            .and_then(|g| g.with_outputs_by_name(&outputs))
            .and_then(|g| g.into_optimized())
            .and_then(|g| g.into_runnable())
            .map_err(model_err)?;
        let Some(dim) = plan.model().output_fact(0).ok().and_then(|f| f.shape.as_concrete().map(|s| s.to_vec())) else {
            return Err(EncoderError::Model {
                path: model.onnx_path(),
                problem: "embedding shape is not concrete".into(),
            });
        };
        if dim.last() != Some(&m.embedding_dim) {
            return Err(EncoderError::Model {
                path: model.onnx_path(),
                problem: format!(
                    "output {:?} has shape {dim:?}, the manifest says {} features",
                    m.embedding_output, m.embedding_dim
                ),
            });
        }
        Ok(Self { plan, with_logits: m.logits_output.is_some() })
    }

    /// Runs a batch of exactly one patch (the plan is optimised for that shape).
    pub fn run(&self, batch: ArrayView4<f32>) -> Result<Outputs, EncoderError> {
        if batch.len_of(Axis(0)) != 1 {
            return Err(EncoderError::Inference(format!(
                "the tract backend takes one patch per call, got {}",
                batch.len_of(Axis(0))
            )));
        }
        let fail = |e: TractError| EncoderError::Inference(format!("{e:#}"));
        let result = self.plan.run(tvec!(batch.to_owned().into_tensor().into_tvalue())).map_err(fail)?;
        let matrix = |i: usize| -> Result<Array2<f32>, EncoderError> {
            let view = result[i].to_plain_array_view::<f32>().map_err(fail)?;
            view.into_dimensionality::<Ix2>()
                .map(|v| v.to_owned())
                .map_err(|e| EncoderError::Inference(format!("output {i}: expected a matrix: {e}")))
        };
        let logits = if self.with_logits { Some(matrix(1)?) } else { None };
        Ok(Outputs { embedding: matrix(0)?, logits })
    }
}
