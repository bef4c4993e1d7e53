//! Model bundles: one directory that carries everything a prediction needs, verified on opening.
//!
//! ```text
//! BUNDLE/
//!   manifest.json          format version, name, genes, normalisation statistics, graph and
//!                          grid parameters, training sections, licence, provenance, and the
//!                          SHA-256 of every other file
//!   encoder/               the image encoder's model directory (manifest.json + ONNX)
//!   model/config.json      the SpaHGC configuration
//!   model/weights.safetensors
//!   bank.spb               the reference bank the model retrieves from
//! ```
//!
//! A bundle is written into a temporary directory beside its destination and renamed into place,
//! so a reader never sees half of one. Opening refuses another format version, a missing or
//! altered file (naming it), and parts that do not fit together (genes, normalisation, embedding
//! width). The manifest checks itself too: its last field, `manifest_sha256`, is the SHA-256 of
//! the file's bytes with that field's value left empty, so no byte of any file can change
//! unnoticed.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spahgc_bank::{BankError, ReferenceBank};
use spahgc_core::NormStats;
use spahgc_graph::GraphParams;
use spahgc_model::{CONFIG_FILE, ModelError, SpaHgc, WEIGHTS_FILE};

/// The manifest format this build writes and reads (2: the manifest carries its own checksum).
pub const FORMAT_VERSION: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const ENCODER_DIR: &str = "encoder";
pub const MODEL_DIR: &str = "model";
pub const BANK_FILE: &str = "bank.spb";

/// Errors opening or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a bundle manifest: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{}: bundle format {found} is newer than this build reads ({supported}); update spahgc", path.display())]
    Newer { path: PathBuf, found: u32, supported: u32 },
    #[error("{}: bundle format {found} is older than this build reads ({supported}); train the bundle again", path.display())]
    Older { path: PathBuf, found: u32, supported: u32 },
    #[error("bundle {}: {file} is missing", dir.display())]
    Missing { dir: PathBuf, file: String },
    #[error("bundle {}: {file} was altered (SHA-256 {found}, the manifest records {expected})", dir.display())]
    Altered { dir: PathBuf, file: String, found: String, expected: String },
    #[error("bundle {}: {message}", dir.display())]
    Inconsistent { dir: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Bank(#[from] BankError),
}

/// How target spots are laid on a slide.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Centre-to-centre distance of neighbouring spots, in µm (the training sections' pitch).
    pub spot_pitch_um: f64,
}

/// Smallest grid pitch a bundle may have, in µm (Visium HD's finest bins are 2 µm).
pub const MIN_SPOT_PITCH_UM: f64 = 1.0;

/// What `manifest.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format_version: u32,
    pub name: String,
    /// Genes predicted, in output order.
    pub genes: Vec<String>,
    pub normalisation: NormStats,
    pub graph: GraphParams,
    pub grid: Grid,
    pub training_sections: Vec<String>,
    pub licence: String,
    pub provenance: String,
    /// SHA-256 of every other file, by path relative to the bundle (`/`-separated).
    pub files: BTreeMap<String, String>,
    /// SHA-256 of `manifest.json` as written with this field empty (see [`MANIFEST_CHECKSUM`]).
    pub manifest_sha256: String,
}

/// The manifest field that holds the manifest's own checksum.
pub const MANIFEST_CHECKSUM: &str = "manifest_sha256";

/// What a new bundle is made of.
pub struct BundleSource<'a> {
    pub name: String,
    pub model: &'a SpaHgc,
    /// The reference bank file the model was trained against.
    pub bank: &'a Path,
    /// The image encoder's model directory (its files are copied).
    pub encoder: &'a Path,
    pub grid: Grid,
    pub licence: String,
    pub provenance: String,
}

/// An opened, verified bundle.
pub struct Bundle {
    dir: PathBuf,
    manifest: BundleManifest,
    model: SpaHgc,
    bank: Arc<ReferenceBank>,
}

impl Bundle {
    /// Opens the bundle in `dir`: reads the manifest, verifies every file's SHA-256, loads the
    /// model and the bank, and checks that they fit together.
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let manifest = BundleManifest::read(dir)?;
        for required in [
            format!("{ENCODER_DIR}/{MANIFEST_FILE}"),
            format!("{MODEL_DIR}/{CONFIG_FILE}"),
            format!("{MODEL_DIR}/{WEIGHTS_FILE}"),
            BANK_FILE.to_string(),
        ] {
            if !manifest.files.contains_key(&required) {
                return Err(BundleError::Missing { dir: dir.to_path_buf(), file: required });
            }
        }
        for (file, expected) in &manifest.files {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(BundleError::Missing { dir: dir.to_path_buf(), file: file.clone() });
            }
            let found = sha256_file(&path)?;
            if &found != expected {
                let (dir, file, expected) = (dir.to_path_buf(), file.clone(), expected.clone());
                return Err(BundleError::Altered { dir, file, found, expected });
            }
        }
        let model = SpaHgc::load(&dir.join(MODEL_DIR))?;
        let bank = ReferenceBank::open(&dir.join(BANK_FILE))?;
        model.check_bank(&bank)?;
        let config = model.config();
        if config.genes != manifest.genes
            || config.normalisation != manifest.normalisation
            || config.graph != manifest.graph
        {
            return Err(BundleError::Inconsistent {
                dir: dir.to_path_buf(),
                message: format!(
                    "{MANIFEST_FILE} and {MODEL_DIR}/{CONFIG_FILE} disagree on genes, normalisation or graph"
                ),
            });
        }
        Ok(Self { dir: dir.to_path_buf(), manifest, model, bank: Arc::new(bank) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    pub fn model(&self) -> &SpaHgc {
        &self.model
    }

    /// The reference bank the model retrieves from: the bundle's own, or the one given to
    /// [`Bundle::with_bank`].
    pub fn bank(&self) -> &ReferenceBank {
        &self.bank
    }

    /// This bundle retrieving from `bank` (a larger or sharded bank, say) instead of its own,
    /// once the model accepts it: the same embedding dimension, genes, normalisation and encoder.
    pub fn with_bank(self, bank: Arc<ReferenceBank>) -> Result<Self, BundleError> {
        self.model.check_bank(&bank)?;
        Ok(Self { bank, ..self })
    }

    /// The encoder's model directory inside the bundle.
    pub fn encoder_dir(&self) -> PathBuf {
        self.dir.join(ENCODER_DIR)
    }
}

impl BundleManifest {
    /// Reads `dir/manifest.json` alone (no file is verified): a newer format is refused first.
    pub fn read(dir: &Path) -> Result<Self, BundleError> {
        read_manifest(dir)
    }
}

fn read_manifest(dir: &Path) -> Result<BundleManifest, BundleError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io { path: path.clone(), source })?;
    let manifest_error = |message: String| BundleError::Manifest { path: path.clone(), message };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| manifest_error(e.to_string()))?;
    // The version is checked before the rest, so a bundle of another format says so rather than
    // failing on a field this build does not know.
    let found = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| manifest_error("no format_version".into()))?;
    let (found, supported) = (u32::try_from(found).unwrap_or(u32::MAX), FORMAT_VERSION);
    if found > supported {
        return Err(BundleError::Newer { path, found, supported });
    }
    if found < supported {
        return Err(BundleError::Older { path, found, supported });
    }
    let recorded = value
        .get(MANIFEST_CHECKSUM)
        .and_then(|v| v.as_str())
        .ok_or_else(|| manifest_error(format!("no {MANIFEST_CHECKSUM}")))?;
    let recorded_field = checksum_field(recorded);
    if text.matches(&recorded_field).count() != 1 {
        return Err(manifest_error(format!("{MANIFEST_CHECKSUM} is not written as this build writes it")));
    }
    let found = sha256_hex(text.replacen(&recorded_field, &checksum_field(""), 1).as_bytes());
    if found != recorded {
        let (dir, file, expected) = (dir.to_path_buf(), MANIFEST_FILE.to_string(), recorded.to_string());
        return Err(BundleError::Altered { dir, file, found, expected });
    }
    let manifest: BundleManifest = serde_json::from_value(value).map_err(|e| manifest_error(e.to_string()))?;
    manifest.check().map_err(manifest_error)?;
    Ok(manifest)
}

impl BundleManifest {
    /// What the checksum cannot vouch for (anyone can write a manifest and its checksum): files
    /// inside the bundle, a usable grid, genes to predict.
    fn check(&self) -> Result<(), String> {
        let inside = |file: &str| {
            let parts: Vec<_> = Path::new(file).components().collect();
            !parts.is_empty() && parts.iter().all(|p| matches!(p, std::path::Component::Normal(_)))
        };
        if let Some(file) = self.files.keys().find(|f| !inside(f)) {
            return Err(format!("files: {file:?} is not a path inside the bundle"));
        }
        let pitch = self.grid.spot_pitch_um;
        if !(pitch.is_finite() && pitch >= MIN_SPOT_PITCH_UM) {
            return Err(format!("grid.spot_pitch_um: expected at least {MIN_SPOT_PITCH_UM} µm, found {pitch}"));
        }
        if self.genes.is_empty() {
            return Err("genes: the bundle predicts no gene".into());
        }
        Ok(())
    }
}

/// How the checksum field reads in a written manifest.
fn checksum_field(value: &str) -> String {
    format!("\"{MANIFEST_CHECKSUM}\": \"{value}\"")
}

/// Writes a bundle of `source` to `dir`, replacing whatever bundle was there only once the new
/// one is complete ([`spahgc_core::write_dir_atomically`]). Returns its manifest.
pub fn write_bundle(dir: &Path, source: &BundleSource) -> Result<BundleManifest, BundleError> {
    let mut written = None;
    spahgc_core::write_dir_atomically(dir, |root| -> Result<(), Failed> {
        written = Some(fill_bundle(root, source)?);
        Ok(())
    })
    .map_err(|failed| match failed {
        Failed::Bundle(e) => e,
        Failed::Io(source) => BundleError::Io { path: dir.to_path_buf(), source },
    })?;
    Ok(written.expect("a bundle that was written has a manifest"))
}

/// Why writing a bundle failed: a file of it, or putting the finished directory in place.
enum Failed {
    Bundle(BundleError),
    Io(std::io::Error),
}

impl From<BundleError> for Failed {
    fn from(e: BundleError) -> Self {
        Failed::Bundle(e)
    }
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Self {
        Failed::Io(e)
    }
}

/// Writes the files of a bundle of `source` into the empty directory `root`.
fn fill_bundle(root: &Path, source: &BundleSource) -> Result<BundleManifest, BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    source.model.save(&root.join(MODEL_DIR))?;
    std::fs::copy(source.bank, root.join(BANK_FILE)).map_err(io(source.bank))?;
    let encoder = root.join(ENCODER_DIR);
    std::fs::create_dir(&encoder).map_err(io(&encoder))?;
    for entry in std::fs::read_dir(source.encoder).map_err(io(source.encoder))? {
        let path = entry.map_err(io(source.encoder))?.path();
        if path.is_file() {
            let name = path.file_name().expect("a directory entry has a name");
            std::fs::copy(&path, encoder.join(name)).map_err(io(&path))?;
        }
    }
    let mut files = BTreeMap::new();
    for sub in [MODEL_DIR, ENCODER_DIR] {
        for entry in std::fs::read_dir(root.join(sub)).map_err(io(&root.join(sub)))? {
            let path = entry.map_err(io(&root.join(sub)))?.path();
            let name = path.file_name().expect("a directory entry has a name").to_string_lossy();
            files.insert(format!("{sub}/{name}"), sha256_file(&path)?);
        }
    }
    files.insert(BANK_FILE.to_string(), sha256_file(&root.join(BANK_FILE))?);

    let config = source.model.config();
    let mut manifest = BundleManifest {
        format_version: FORMAT_VERSION,
        name: source.name.clone(),
        genes: config.genes.clone(),
        normalisation: config.normalisation.clone(),
        graph: config.graph,
        grid: source.grid,
        training_sections: config.training_sections.clone(),
        licence: source.licence.clone(),
        provenance: source.provenance.clone(),
        files,
        manifest_sha256: String::new(),
    };
    let unsigned = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
    manifest.manifest_sha256 = sha256_hex(unsigned.as_bytes());
    let json = unsigned.replacen(&checksum_field(""), &checksum_field(&manifest.manifest_sha256), 1);
    let manifest_path = root.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, json).map_err(io(&manifest_path))?;
    Ok(manifest)
}

fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let io = |source| BundleError::Io { path: path.to_path_buf(), source };
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path).map_err(io)?, &mut hasher).map_err(io)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}
