use std::path::PathBuf;

/// Errors raised while loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A model file could not be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// `manifest.json` is malformed or holds an impossible value.
    #[error("{path}: field {field}: {problem}")]
    Manifest { path: PathBuf, field: String, problem: String },
    /// The ONNX file is not the one the manifest vouches for.
    #[error("{path}: sha256 is {found}, but the manifest expects {expected}")]
    Checksum { path: PathBuf, expected: String, found: String },
    /// The ONNX file is not a model the runtime can load, or it disagrees with its manifest.
    #[error("{path}: {problem}")]
    Model { path: PathBuf, problem: String },
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),
    /// An execution provider that was asked for explicitly could not start.
    #[error("execution provider {device} could not start: {reason}")]
    Device { device: String, reason: String },
    /// The backend this build lacks was asked for.
    #[error("this build of spahgc has no {0} backend (enable the cargo feature {0:?})")]
    MissingBackend(&'static str),
    /// Inference failed or the input does not fit the model.
    #[error("inference: {0}")]
    Inference(String),
}
