//! `manifest.json`: what an encoder model is and how to feed it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::EncoderError;

/// The manifest schema this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Description of an encoder model directory, read from its `manifest.json`.
///
/// Pixels are fed as `(value − mean) / std` per channel, values in 0..=255, in NCHW layout of
/// `input_size` × `input_size` patches covering `field_of_view_um` µm of tissue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderManifest {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    pub licence: String,
    #[serde(default)]
    pub source: String,
    /// ONNX file name, relative to the model directory.
    pub onnx_file: String,
    /// Hex SHA-256 of the ONNX file; loading refuses any other file.
    pub onnx_sha256: String,
    pub input_name: String,
    /// Side of the square input, in pixels.
    pub input_size: u32,
    pub channel_order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Resolution the encoder was trained at, in µm per pixel.
    pub microns_per_pixel: f64,
    /// Side of the tissue square one patch covers, in µm.
    pub field_of_view_um: f64,
    pub embedding_output: String,
    pub embedding_dim: usize,
    /// Optional classifier output (used to check a conversion, not by spahgc's pipeline).
    #[serde(default)]
    pub logits_output: Option<String>,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// A model directory whose manifest was read and whose ONNX file matched its checksum.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub manifest: EncoderManifest,
    /// The verified ONNX bytes.
    pub onnx: Vec<u8>,
}

impl ModelDir {
    /// Reads `dir/manifest.json`, checks every field, and verifies the ONNX file's SHA-256.
    pub fn open(dir: &Path) -> Result<Self, EncoderError> {
        let manifest = EncoderManifest::read(dir)?;
        let onnx_path = dir.join(&manifest.onnx_file);
        let onnx = std::fs::read(&onnx_path).map_err(|source| EncoderError::Io { path: onnx_path.clone(), source })?;
        let found = sha256_hex(&onnx);
        if !found.eq_ignore_ascii_case(&manifest.onnx_sha256) {
            return Err(EncoderError::Checksum { path: onnx_path, expected: manifest.onnx_sha256, found });
        }
        Ok(Self { dir: dir.into(), manifest, onnx })
    }

    /// Path of the ONNX file, for error messages.
    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.onnx_file)
    }
}

impl EncoderManifest {
    /// Reads and checks `dir/manifest.json` without touching the ONNX file.
    pub fn read(dir: &Path) -> Result<Self, EncoderError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| EncoderError::Io { path: path.clone(), source })?;
        let manifest: EncoderManifest = serde_json::from_str(&text).map_err(|e| EncoderError::Manifest {
            path: path.clone(),
            field: "(json)".into(),
            problem: e.to_string(),
        })?;
        manifest.check(&path)?;
        Ok(manifest)
    }

    fn check(&self, path: &Path) -> Result<(), EncoderError> {
        let fail = |field: &str, problem: String| {
            Err(EncoderError::Manifest { path: path.into(), field: field.into(), problem })
        };
        if self.schema_version != SCHEMA_VERSION {
            return fail(
                "schema_version",
                format!("this build reads version {SCHEMA_VERSION}, found {}", self.schema_version),
            );
        }
        let parts: Vec<_> = Path::new(&self.onnx_file).components().collect();
        if !matches!(parts[..], [std::path::Component::Normal(_)]) {
            return fail(
                "onnx_file",
                format!("expected a file name inside the model directory, found {:?}", self.onnx_file),
            );
        }
        if self.onnx_sha256.len() != 64 || !self.onnx_sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return fail("onnx_sha256", format!("expected 64 hex digits, found {:?}", self.onnx_sha256));
        }
        if self.input_size == 0 || self.input_size > 4096 {
            return fail("input_size", format!("expected 1..=4096 pixels, found {}", self.input_size));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
            return fail("std", format!("expected finite non-zero values, found {s}"));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return fail("mean", format!("expected finite values, found {m}"));
        }
        for (field, v) in [("microns_per_pixel", self.microns_per_pixel), ("field_of_view_um", self.field_of_view_um)] {
            if !(v.is_finite() && v > 0.0) {
                return fail(field, format!("expected a positive number, found {v}"));
            }
        }
        if self.embedding_dim == 0 {
            return fail("embedding_dim", "expected a positive dimension, found 0".into());
        }
        Ok(())
    }
}

impl ModelDir {
    /// Checks an ONNX input shape (`None` = dynamic) against the manifest's N × 3 × size × size.
    pub fn check_input_shape(&self, dims: &[Option<i64>]) -> Result<(), EncoderError> {
        let size = i64::from(self.manifest.input_size);
        let fits =
            dims.len() == 4 && dims[1..].iter().zip([3, size, size]).all(|(d, want)| d.is_none_or(|d| d == want));
        if fits {
            return Ok(());
        }
        let shown: Vec<String> = dims.iter().map(|d| d.map_or("?".into(), |d| d.to_string())).collect();
        Err(EncoderError::Model {
            path: self.onnx_path(),
            problem: format!(
                "input {:?} has shape [{}], but the manifest says N×3×{size}×{size}",
                self.manifest.input_name,
                shown.join(", ")
            ),
        })
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}
