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
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView4, Axis};
use spahgc_slide::RgbImage;

pub use error::EncoderError;
pub use manifest::{ChannelOrder, EncoderManifest, ModelDir, SCHEMA_VERSION, sha256_hex};
#[cfg(feature = "ort")]
pub use ort_backend::{ORT_LIB_ENV, OrtBackend, library_path};
pub use preprocess::to_tensor;
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
    model: ModelDir,
    backend: Backend,
    batch_size: usize,
}

impl Encoder {
    /// Opens the model directory (verifying its checksum) and starts the chosen backend.
    pub fn load(dir: &Path, options: EncoderOptions) -> Result<Self, EncoderError> {
        if options.batch_size == 0 {
            return Err(EncoderError::Inference("batch size must be at least 1".into()));
        }
        let model = ModelDir::open(dir)?;
        let backend = match options.backend {
            #[cfg(feature = "ort")]
            BackendKind::Ort => Backend::Ort(OrtBackend::new(&model, options.device, options.threads)?),
            #[cfg(feature = "tract")]
            BackendKind::Tract => Backend::Tract(TractBackend::new(&model)?),
            #[allow(unreachable_patterns)]
            BackendKind::Ort => return Err(EncoderError::MissingBackend("ort")),
            #[allow(unreachable_patterns)]
            BackendKind::Tract => return Err(EncoderError::MissingBackend("tract")),
        };
        Ok(Self { model, backend, batch_size: options.batch_size })
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &EncoderManifest {
        &self.model.manifest
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
        let width = self.model.manifest.embedding_dim;
        let logits = if logits.is_empty() { None } else { Some(stack(logits, 0)?) };
        Ok(Outputs { embedding: stack(embeddings, width)?, logits })
    }

    /// Embeds patches (each `input_size` × `input_size`): patches × `embedding_dim`.
    pub fn embed(&self, patches: &[RgbImage]) -> Result<Array2<f32>, EncoderError> {
        Ok(self.run(to_tensor(patches, &self.model.manifest)?.view())?.embedding)
    }
}
