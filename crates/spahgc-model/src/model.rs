//! A trained model: configuration plus weights, prediction, and its directory on disk.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ndarray::Array2;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spahgc_bank::ReferenceBank;
use spahgc_core::write_atomically;

use crate::ModelError;
use crate::config::ModelConfig;
use crate::graph::GraphInputs;
use crate::network::Network;
use crate::nn::{Noise, Weights, draw, seeded, to_array};

/// File of the configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// What `config.json` holds: the configuration and the digest of the weights it goes with.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    #[serde(flatten)]
    config: ModelConfig,
    weights_sha256: String,
}

/// A trained SpaHGC model.
pub struct SpaHgc {
    config: ModelConfig,
    weights: Weights,
    network: Network,
}

impl SpaHgc {
    /// A model from its configuration and weights; every weight the configuration implies must
    /// be present with its shape, and nothing else.
    pub fn new(config: ModelConfig, weights: Weights) -> Result<Self, ModelError> {
        config.validate()?;
        let weights: Weights = weights.into_iter().map(|(k, v)| (k, v.detach())).collect();
        let network = Network::from_weights(&weights, &config)?;
        Ok(Self { config, weights, network })
    }

    /// The untrained network of `config`, its weights drawn with the configuration's training
    /// seed (what training starts from; benchmarks time it).
    pub fn initial(config: ModelConfig) -> Result<Self, ModelError> {
        let weights = initial_weights(&config, &mut seeded(config.training.seed))?;
        Self::new(config, weights)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Checks that `bank` serves this model: same embedding width, genes, normalisation and
    /// (when both record it) encoder.
    pub fn check_bank(&self, bank: &ReferenceBank) -> Result<(), ModelError> {
        let meta = bank.meta();
        let c = &self.config;
        if meta.embedding_dim != c.embedding_dim {
            return Err(ModelError::Input(format!(
                "bank {} holds {}-d embeddings, the model takes {}",
                bank.path().display(),
                meta.embedding_dim,
                c.embedding_dim
            )));
        }
        if meta.genes != c.genes || meta.norm != c.normalisation {
            return Err(ModelError::Input(format!(
                "bank {} has another gene panel or normalisation than the model",
                bank.path().display()
            )));
        }
        if !meta.encoder_sha256.is_empty() && !c.encoder_sha256.is_empty() && meta.encoder_sha256 != c.encoder_sha256 {
            return Err(ModelError::Input(format!(
                "bank {} was embedded with encoder {}, the model with {}",
                bank.path().display(),
                meta.encoder_sha256,
                c.encoder_sha256
            )));
        }
        Ok(())
    }

    /// Predicted normalised expression, targets × genes.
    pub fn predict(&self, inputs: &GraphInputs) -> Result<Array2<f32>, ModelError> {
        self.config.check_inputs(inputs, "prediction")?;
        let out = self.network.forward(
            &inputs.edges,
            &inputs.targets,
            &inputs.references,
            &self.config.architecture,
            &mut Noise::none(),
        )?;
        to_array(&out)
    }

    /// Writes `config.json` and `weights.safetensors` into `dir` (created if needed); each
    /// file is replaced atomically, weights first.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let io = |path: PathBuf| move |e: std::io::Error| ModelError::Io { path: path.clone(), source: e };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let bytes = safetensors::serialize(self.weights.iter().map(|(k, v)| (k.as_str(), v)), None)
            .map_err(|e| ModelError::Weights(e.to_string()))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        write_atomically(&weights_path, |w| w.write_all(&bytes)).map_err(io(weights_path.clone()))?;
        let file = ConfigFile { config: self.config.clone(), weights_sha256: format!("{:x}", Sha256::digest(&bytes)) };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| ModelError::Config(e.to_string()))?;
        let config_path = dir.join(CONFIG_FILE);
        write_atomically(&config_path, |w| w.write_all(&json)).map_err(io(config_path.clone()))
    }

    /// Reads a model directory written by [`SpaHgc::save`], verifying the weights' digest.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| ModelError::Io { path, source: e })
        };
        let file: ConfigFile = serde_json::from_slice(&read(CONFIG_FILE)?)
            .map_err(|e| ModelError::Config(format!("{}: {e}", dir.join(CONFIG_FILE).display())))?;
        let bytes = read(WEIGHTS_FILE)?;
        let digest = format!("{:x}", Sha256::digest(&bytes));
        if digest != file.weights_sha256 {
            return Err(ModelError::Weights(format!(
                "{} has SHA-256 {digest}, {CONFIG_FILE} expects {}",
                dir.join(WEIGHTS_FILE).display(),
                file.weights_sha256
            )));
        }
        let weights = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| ModelError::Weights(format!("{}: {e}", dir.join(WEIGHTS_FILE).display())))?;
        Self::new(file.config, weights.into_iter().collect())
    }
}

/// Fresh weights for the network of `config`, drawn from `rng`.
pub(crate) fn initial_weights(config: &ModelConfig, rng: &mut ChaCha8Rng) -> Result<Weights, ModelError> {
    draw(rng, |src| Network::new(src, config.embedding_dim, config.genes.len(), &config.architecture))
}

/// The tensors of `weights` as plain (untracked) copies with their own storage.
pub(crate) fn detached_copy(weights: &Weights) -> Result<Weights, ModelError> {
    weights.iter().map(|(k, v)| Ok((k.clone(), v.detach().copy()?))).collect()
}
