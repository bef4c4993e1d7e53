//! Image encoders: a model directory (`manifest.json` + ONNX file) run by ONNX Runtime or tract.
//!
//! Only this crate knows about ONNX. A model directory is verified against its manifest's
//! SHA-256 before anything runs; patches are normalised as the manifest says and embedded in
//! batches.

mod error;
pub mod locate;
mod manifest;
#[cfg(feature = "ort")]
mod ort_backend;
mod preprocess;
#[cfg(feature = "tract")]
mod tract_backend;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ndarray::{Array2, ArrayView4, Axis};
use spahgc_slide::RgbImage;

pub use error::EncoderError;
pub use manifest::{ChannelOrder, EncoderManifest, ModelDir, SCHEMA_VERSION, sha256_hex};
#[cfg(feature = "ort")]
pub use ort_backend::{ORT_LIB_ENV, OrtBackend, library_path};
pub use preprocess::{to_tensor, write_tensor};
#[cfg(feature = "tract")]
pub use tract_backend::TractBackend;

/// Where the ONNX Runtime backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The GPU provider this build and machine have, else the CPU (one log line says which).
    #[default]
    Auto,
    Cpu,
    /// NVIDIA CUDA; an error if it cannot start.
    Cuda,
    /// DirectML (Windows); an error if it cannot start.
    DirectMl,
}

impl Device {
    /// Name of the ONNX Runtime execution provider behind this device.
    pub fn provider_name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "CPU",
            Device::Cuda => "CUDA",
            Device::DirectMl => "DirectML",
        }
    }

    /// The GPU provider `Auto` tries on this platform.
    #[cfg(feature = "ort")]
    fn auto_gpu() -> Device {
        if cfg!(windows) { Device::DirectMl } else { Device::Cuda }
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "directml" => Ok(Device::DirectMl),
            _ => Err(format!("unknown device {s:?}; expected auto, cpu, cuda or directml")),
        }
    }
}

/// Which inference engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// ONNX Runtime (fast; needs its shared library).
    #[default]
    Ort,
    /// tract (pure Rust; slower).
    Tract,
}

/// What one batch of inference returns.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Patches × embedding dimension.
    pub embedding: Array2<f32>,
    /// Patches × classes, when the model has a classifier output.
    pub logits: Option<Array2<f32>>,
}

enum Backend {
    #[cfg(feature = "ort")]
    Ort(OrtBackend),
    #[cfg(feature = "tract")]
    Tract(TractBackend),
    External(Arc<dyn ExternalEncoder>),
}

/// An encoder that runs outside this crate — a host's native runtime behind a WebAssembly
/// component's import, say — given batches prepared exactly as the built-in backends get them.
pub trait ExternalEncoder: Send + Sync + std::fmt::Debug {
    /// Embeds a prepared `N × 3 × size × size` batch: `N × embedding_dim` values.
    fn embed_batch(&self, batch: ArrayView4<f32>) -> Result<Array2<f32>, String>;

    /// Names the runtime in reports, as [`Encoder::provider`] does.
    fn name(&self) -> &'static str;
}

/// Options for [`Encoder::load`].
#[derive(Debug, Clone, Copy)]
pub struct EncoderOptions {
    pub backend: BackendKind,
    pub device: Device,
    /// Patches per inference call.
    pub batch_size: usize,
    /// Intra-op threads for ONNX Runtime (its default when `None`).
    pub threads: Option<usize>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self { backend: BackendKind::Ort, device: Device::Auto, batch_size: 32, threads: None }
    }
}

/// An encoder whose manifest is read but whose model loads on first use, so that work served
/// entirely from a cache never pays for verifying the ONNX file and starting a runtime.
pub struct LazyEncoder {
    dir: PathBuf,
    options: EncoderOptions,
    manifest: EncoderManifest,
    loaded: OnceLock<Encoder>,
}

impl LazyEncoder {
    /// Reads and checks the manifest only.
    pub fn open(dir: &Path, options: EncoderOptions) -> Result<Self, EncoderError> {
        Ok(Self { dir: dir.into(), options, manifest: EncoderManifest::read(dir)?, loaded: OnceLock::new() })
    }

    /// An encoder run by `external` on batches of `batch_size`, with the manifest in `dir`
    /// (whose ONNX file `external` is trusted to run).
    pub fn external(dir: &Path, external: Arc<dyn ExternalEncoder>, batch_size: usize) -> Result<Self, EncoderError> {
        let options = EncoderOptions { batch_size, ..EncoderOptions::default() };
        let manifest = EncoderManifest::read(dir)?;
        let encoder =
            Encoder { manifest: manifest.clone(), backend: Backend::External(external), batch_size: checked(options)? };
        Ok(Self { dir: dir.into(), options, manifest, loaded: OnceLock::from(encoder) })
    }

    /// The model's manifest (its checksum is verified when the model loads).
    pub fn manifest(&self) -> &EncoderManifest {
        &self.manifest
    }

    /// The loaded encoder, loading it now if needed.
    pub fn get(&self) -> Result<&Encoder, EncoderError> {
        if let Some(encoder) = self.loaded.get() {
            return Ok(encoder);
        }
        let encoder = Encoder::load(&self.dir, self.options)?;
        // Two threads may load at once; either result is the same model, one is kept.
        Ok(self.loaded.get_or_init(|| encoder))
    }

    /// The loaded encoder, if something has needed it.
    pub fn loaded(&self) -> Option<&Encoder> {
        self.loaded.get()
    }
}

/// A loaded encoder model: verified manifest plus a ready backend. `Send + Sync`.
pub struct Encoder {
    manifest: EncoderManifest,
    backend: Backend,
    batch_size: usize,
}

/// The backend `options` names, running `model`; an error if this build lacks it.
#[cfg_attr(not(any(feature = "ort", feature = "tract")), allow(unused_variables))]
fn start_backend(model: &ModelDir, options: EncoderOptions) -> Result<Backend, EncoderError> {
    match options.backend {
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Backend::Ort(OrtBackend::new(model, options.device, options.threads)?)),
        #[cfg(feature = "tract")]
        BackendKind::Tract => Ok(Backend::Tract(TractBackend::new(model)?)),
        #[allow(unreachable_patterns)]
        BackendKind::Ort => Err(EncoderError::MissingBackend("ort")),
        #[allow(unreachable_patterns)]
        BackendKind::Tract => Err(EncoderError::MissingBackend("tract")),
    }
}

/// The batch size of `options`, refused when 0.
fn checked(options: EncoderOptions) -> Result<usize, EncoderError> {
    match options.batch_size {
        0 => Err(EncoderError::Inference("batch size must be at least 1".into())),
        n => Ok(n),
    }
}

impl Encoder {
    /// Opens the model directory (verifying its checksum) and starts the chosen backend.
    pub fn load(dir: &Path, options: EncoderOptions) -> Result<Self, EncoderError> {
        let batch_size = checked(options)?;
        let model = ModelDir::open(dir)?;
        let backend = start_backend(&model, options)?;
        Ok(Self { manifest: model.manifest, backend, batch_size })
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &EncoderManifest {
        &self.manifest
    }

    /// Patches per inference call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The execution provider (ONNX Runtime) or `"tract"`.
    pub fn provider(&self) -> &'static str {
        match &self.backend {
            #[cfg(feature = "ort")]
            Backend::Ort(b) => b.provider,
            #[cfg(feature = "tract")]
            Backend::Tract(_) => "tract",
            Backend::External(e) => e.name(),
        }
    }

    /// Runs a prepared `N × 3 × size × size` tensor in batches of the configured size.
    pub fn run(&self, input: ArrayView4<f32>) -> Result<Outputs, EncoderError> {
        let mut embeddings = Vec::new();
        let mut logits = Vec::new();
        let batch_size = match &self.backend {
            #[cfg(feature = "tract")]
            Backend::Tract(_) => 1,
            #[allow(unreachable_patterns)]
            _ => self.batch_size,
        };
        for chunk in input.axis_chunks_iter(Axis(0), batch_size) {
            let out = match &self.backend {
                #[cfg(feature = "ort")]
                Backend::Ort(b) => b.run(chunk)?,
                #[cfg(feature = "tract")]
                Backend::Tract(b) => b.run(chunk)?,
                Backend::External(e) => {
                    Outputs { embedding: run_external(e.as_ref(), chunk, self.manifest.embedding_dim)?, logits: None }
                }
            };
            embeddings.push(out.embedding);
            logits.extend(out.logits);
        }
        let stack = |parts: Vec<Array2<f32>>, width: usize| -> Result<Array2<f32>, EncoderError> {
            if parts.is_empty() {
                return Ok(Array2::zeros((0, width)));
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| EncoderError::Inference(e.to_string()))
        };
        let width = self.manifest.embedding_dim;
        let logits = if logits.is_empty() { None } else { Some(stack(logits, 0)?) };
        Ok(Outputs { embedding: stack(embeddings, width)?, logits })
    }

    /// Embeds patches (each `input_size` × `input_size`): patches × `embedding_dim`.
    pub fn embed(&self, patches: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        Ok(self.run(to_tensor(patches, &self.manifest)?.view())?.embedding)
    }
}

/// One batch through an external encoder, its answer checked against the batch and manifest.
fn run_external(
    encoder: &dyn ExternalEncoder,
    batch: ArrayView4<f32>,
    width: usize,
) -> Result<Array2<f32>, EncoderError> {
    let embedding =
        encoder.embed_batch(batch).map_err(|e| EncoderError::Inference(format!("{}: {e}", encoder.name())))?;
    let expected = (batch.dim().0, width);
    if embedding.dim() != expected {
        return Err(EncoderError::Inference(format!(
            "{}: returned {} x {} embeddings for a batch of {} patches, expected {} x {}",
            encoder.name(),
            embedding.nrows(),
            embedding.ncols(),
            batch.dim().0,
            expected.0,
            expected.1
        )));
    }
    Ok(embedding)
}
