//! ONNX Runtime backend, loaded at run time from a shared library.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use ndarray::{Array2, ArrayView4, Ix2};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use crate::{Device, EncoderError, ModelDir, Outputs, locate};

/// Environment variable naming the ONNX Runtime shared library to load.
pub const ORT_LIB_ENV: &str = "SPAHGC_ORT_LIB";

#[cfg(target_os = "linux")]
const LIB_NAME: &str = "libonnxruntime.so";
#[cfg(target_os = "macos")]
const LIB_NAME: &str = "libonnxruntime.dylib";
#[cfg(windows)]
const LIB_NAME: &str = "onnxruntime.dll";

/// The ONNX Runtime library this process uses: `SPAHGC_ORT_LIB`, else the one the setup script
/// installed into `.spahgc/onnxruntime/`.
pub fn library_path() -> Result<PathBuf, EncoderError> {
    if let Some(path) = std::env::var_os(ORT_LIB_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EncoderError::Runtime(format!(
                "{ORT_LIB_ENV}={} does not name a file; point it at {LIB_NAME} (ONNX Runtime ≥ 1.23)",
                path.display()
            )))
        };
    }
    locate::project_file(&format!("onnxruntime/{LIB_NAME}")).ok_or_else(|| {
        EncoderError::Runtime(format!(
            "the ONNX Runtime library was not found: run scripts/setup.sh (it installs {}/onnxruntime/{LIB_NAME} \
             from the PyPI onnxruntime wheel), or set {ORT_LIB_ENV} to the path of {LIB_NAME} (ONNX Runtime ≥ 1.23)",
            locate::SETUP_DIR
        ))
    })
}

/// The process-wide ONNX Runtime environment; ONNX Runtime allows one per process.
fn environment() -> Result<&'static Environment, EncoderError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        builder
            .with_name("spahgc")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
    })
    .as_ref()
    .map_err(|e| EncoderError::Runtime(e.clone()))
}

/// An ONNX Runtime session for one encoder model.
pub struct OrtBackend {
    session: Mutex<Session>,
    input: String,
    outputs: Vec<String>,
    /// The execution provider that runs the model.
    pub provider: &'static str,
}

impl OrtBackend {
    /// Starts a session on `device`; `Device::Auto` falls back to the CPU when no GPU provider starts.
    pub fn new(model: &ModelDir, device: Device, threads: Option<usize>) -> Result<Self, EncoderError> {
        let env = environment()?;
        let mut fallback = String::new();
        let (session, provider) = match device {
            Device::Cpu => (session(env, model, None, threads)?, "CPU"),
            Device::Cuda | Device::DirectMl => {
                let ep = gpu_provider(device)?;
                (session(env, model, Some(ep), threads)?, device.provider_name())
            }
            Device::Auto => {
                match gpu_provider(Device::auto_gpu()).and_then(|ep| session(env, model, Some(ep), threads)) {
                    Ok(session) => (session, Device::auto_gpu().provider_name()),
                    Err(e) => {
                        fallback = format!(" ({e})");
                        (session(env, model, None, threads)?, "CPU")
                    }
                }
            }
        };
        tracing::info!("encoder {} runs on the {provider} execution provider{fallback}", model.manifest.name);
        let manifest = &model.manifest;
        check_signature(&session, model)?;
        let mut outputs = vec![manifest.embedding_output.clone()];
        outputs.extend(manifest.logits_output.clone());
        Ok(Self { session: Mutex::new(session), input: manifest.input_name.clone(), outputs, provider })
    }

    /// Runs one batch; returns the embedding and, when the model has one, the logits.
    pub fn run(&self, batch: ArrayView4<f32>) -> Result<Outputs, EncoderError> {
        let fail = |e: ort::Error| EncoderError::Inference(e.to_string());
        let tensor = TensorRef::from_array_view(batch).map_err(fail)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let result = session.run(ort::inputs![self.input.as_str() => tensor]).map_err(fail)?;
        let mut arrays = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let view = result[name.as_str()].try_extract_array::<f32>().map_err(fail)?;
            let matrix = view
                .into_dimensionality::<Ix2>()
                .map_err(|e| EncoderError::Inference(format!("output {name}: expected a matrix: {e}")))?;
            arrays.push(matrix.to_owned());
        }
        let logits: Option<Array2<f32>> = if arrays.len() > 1 { arrays.pop() } else { None };
        let embedding = arrays.pop().expect("the embedding output is always requested");
        Ok(Outputs { embedding, logits })
    }
}

fn gpu_provider(device: Device) -> Result<ort::ep::ExecutionProviderDispatch, EncoderError> {
    let unavailable =
        |reason: &str| EncoderError::Device { device: device.provider_name().into(), reason: reason.into() };
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda => Ok(ort::ep::CUDA::default().build().error_on_failure()),
        #[cfg(all(windows, feature = "directml"))]
        Device::DirectMl => Ok(ort::ep::DirectML::default().build().error_on_failure()),
        _ => Err(unavailable("not compiled into this build")),
    }
}

fn session(
    env: &Environment,
    model: &ModelDir,
    provider: Option<ort::ep::ExecutionProviderDispatch>,
    threads: Option<usize>,
) -> Result<Session, EncoderError> {
    let model_err = |e: ort::Error| EncoderError::Model { path: model.onnx_path(), problem: e.to_string() };
    // Idle inference threads sleep instead of spinning: the thread cutting the next batch (and
    // the viewer hosting us) need the cores between runs.
    let mut builder =
        Session::builder(env).and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into)).map_err(model_err)?;
    if let Some(n) = threads {
        builder = builder.with_intra_threads(n).map_err(|e| model_err(e.into()))?;
    }
    if let Some(ep) = provider {
        let name = ep.name();
        builder = builder
            .with_execution_providers([ep])
            .map_err(|e| EncoderError::Device { device: name.into(), reason: e.to_string() })?;
    }
    builder.commit_from_memory(&model.onnx).map_err(model_err)
}

/// Checks that the ONNX graph has the input and outputs its manifest names, with matching sizes.
fn check_signature(session: &Session, model: &ModelDir) -> Result<(), EncoderError> {
    let manifest = &model.manifest;
    let mismatch = |problem: String| Err(EncoderError::Model { path: model.onnx_path(), problem });
    let Some(input) = session.inputs().iter().find(|i| i.name() == manifest.input_name) else {
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        return mismatch(format!("no input named {:?} (the model has {names:?})", manifest.input_name));
    };
    if let Some(shape) = input.dtype().tensor_shape() {
        let dims: Vec<Option<i64>> = shape.iter().map(|&d| (d >= 0).then_some(d)).collect();
        model.check_input_shape(&dims)?;
    }
    for name in std::iter::once(&manifest.embedding_output).chain(&manifest.logits_output) {
        let Some(output) = session.outputs().iter().find(|o| o.name() == name) else {
            return mismatch(format!("no output named {name:?}"));
        };
        if name == &manifest.embedding_output
            && let Some(&dim) = output.dtype().tensor_shape().and_then(|s| s.last())
            && dim >= 0
            && dim as usize != manifest.embedding_dim
        {
            return mismatch(format!(
                "output {name:?} has {dim} features, the manifest says {}",
                manifest.embedding_dim
            ));
        }
    }
    Ok(())
}
