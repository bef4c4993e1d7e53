//! `spahgc embed`, and the encoder and cache options every embedding command shares.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ndarray::Array2;
use spahgc_bank::BankSection;
use spahgc_cache::{EmbeddingCache, Precision};
use spahgc_core::Section;
use spahgc_datasets::her2st;
use spahgc_embed::{Embedded, Origin, SlideSpots, SpotEmbedder};
use spahgc_encoder::{BackendKind, Device, EncoderOptions, LazyEncoder};

use crate::failure::BadInput;
use crate::output::Output;

/// Which encoder runs, and where.
#[derive(Args, Clone)]
pub struct EncoderArgs {
    /// Encoder model directory (manifest.json + ONNX); default: the one scripts/setup.sh installs.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Execution provider: auto (GPU if available, else CPU), cpu, cuda, directml.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Use the pure-Rust tract backend instead of ONNX Runtime.
    #[arg(long)]
    pub tract: bool,
    /// Patches per inference call.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Threads to compute with: the encoder's and the network's (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl EncoderArgs {
    /// The chosen encoder's model directory.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.encoder {
            Some(dir) => Ok(dir.clone()),
            None => spahgc_encoder::locate::default_model_dir()
                .context("the default encoder is not installed: run scripts/setup.sh, or pass --encoder DIR"),
        }
    }

    /// How the encoder runs.
    pub fn options(&self) -> EncoderOptions {
        EncoderOptions {
            backend: if self.tract { BackendKind::Tract } else { BackendKind::Ort },
            device: self.device,
            batch_size: self.batch_size,
            threads: self.threads,
        }
    }

    /// Holds the network's thread pool (rayon's, shared by the matrix products) to --threads;
    /// call before any computation.
    pub fn limit_threads(&self) -> anyhow::Result<()> {
        let Some(threads) = self.threads else { return Ok(()) };
        if threads == 0 {
            return Err(BadInput("--threads must be at least 1".into()).into());
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("setting up the thread pool")
    }

    /// Opens the chosen encoder; its model loads when first needed.
    pub fn open(&self) -> anyhow::Result<LazyEncoder> {
        Ok(LazyEncoder::open(&self.dir()?, self.options())?)
    }
}

/// Where embeddings are cached.
#[derive(Args, Clone)]
pub struct CacheArgs {
    /// Cache directory [default: $SPAHGC_CACHE_DIR, else $XDG_CACHE_HOME/spahgc, else ~/.cache/spahgc].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Size bound of the cache in GiB; least recently used entries are evicted beyond it.
    #[arg(long, default_value_t = 10.0)]
    pub cache_max_gib: f64,
    /// Store new entries as f16 (half the space) instead of f32.
    #[arg(long)]
    pub cache_f16: bool,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    /// Opens the cache, or `None` with `--no-cache`.
    pub fn open(&self) -> anyhow::Result<Option<EmbeddingCache>> {
        if self.no_cache {
            return Ok(None);
        }
        let root = match &self.cache_dir {
            Some(dir) => dir.clone(),
            None => EmbeddingCache::default_root()?,
        };
        anyhow::ensure!(
            self.cache_max_gib.is_finite() && self.cache_max_gib > 0.0,
            "--cache-max-gib must be positive, got {}",
            self.cache_max_gib
        );
        Ok(Some(EmbeddingCache::open(&root, (self.cache_max_gib * (1u64 << 30) as f64) as u64)?))
    }

    pub fn precision(&self) -> Precision {
        if self.cache_f16 { Precision::F16 } else { Precision::F32 }
    }
}

/// her2st sections to work on.
#[derive(Args)]
pub struct SectionsArgs {
    /// her2st data set directory (ST-cnts/, ST-spotfiles/, ST-imgs/).
    #[arg(long)]
    pub her2st: PathBuf,
    /// Sections (comma-separated), e.g. B4,C2,C3,C4,C5.
    #[arg(long, value_delimiter = ',', required = true)]
    pub sections: Vec<String>,
}

impl SectionsArgs {
    /// Loads every section.
    pub fn load(&self) -> anyhow::Result<Vec<Section>> {
        Ok(self.sections.iter().map(|s| her2st::load(&self.her2st, s)).collect::<Result<Vec<_>, _>>()?)
    }
}

/// Embeds sections one at a time, through the cache, with the encoder the arguments name.
pub struct SectionEmbedder {
    encoder: LazyEncoder,
    cache: Option<EmbeddingCache>,
    precision: Precision,
}

impl SectionEmbedder {
    pub fn open(encoder: &EncoderArgs, cache: &CacheArgs) -> anyhow::Result<Self> {
        Ok(Self { encoder: encoder.open()?, cache: cache.open()?, precision: cache.precision() })
    }

    /// SHA-256 of the encoder's ONNX file.
    pub fn encoder_sha256(&self) -> String {
        self.encoder.manifest().onnx_sha256.clone()
    }

    /// The embeddings of `section`'s spots, spots × dimensions.
    pub fn embed(&self, section: &Section, out: &Output) -> anyhow::Result<Array2<f32>> {
        let embedder = SpotEmbedder { encoder: &self.encoder, cache: self.cache.as_ref(), precision: self.precision };
        Ok(embed_section(section, &embedder, out)?.embeddings)
    }
}

/// Sections with the embeddings of their spots.
pub struct EmbeddedSections {
    pub sections: Vec<Section>,
    /// One spots × dimensions matrix per section.
    pub embeddings: Vec<Array2<f32>>,
    /// SHA-256 of the encoder's ONNX file.
    pub encoder_sha256: String,
}

impl EmbeddedSections {
    /// Loads the sections and embeds their spots through the cache.
    pub fn load(
        sections: &SectionsArgs,
        encoder: &EncoderArgs,
        cache: &CacheArgs,
        out: &Output,
    ) -> anyhow::Result<Self> {
        let sections = sections.load()?;
        let embedder = SectionEmbedder::open(encoder, cache)?;
        let embeddings = sections.iter().map(|s| embedder.embed(s, out)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { sections, embeddings, encoder_sha256: embedder.encoder_sha256() })
    }

    /// Each section with a view of its embeddings.
    pub fn views(&self) -> Vec<BankSection<'_>> {
        self.sections
            .iter()
            .zip(&self.embeddings)
            .map(|(section, e)| BankSection { section, embeddings: e.view() })
            .collect()
    }
}

#[derive(Args)]
pub struct EmbedArgs {
    /// her2st data set directory (ST-cnts/, ST-spotfiles/, ST-imgs/).
    #[arg(long)]
    her2st: PathBuf,
    /// Section to embed, e.g. C3.
    #[arg(long)]
    section: String,
    /// Write the embeddings (spots × dimensions, f32) to this .npy file.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Embeds one her2st section's spots, through the cache, with a progress bar.
pub fn embed_section(section: &Section, embedder: &SpotEmbedder, out: &Output) -> anyhow::Result<Embedded> {
    let image = section.image.as_deref().context("the section has no image")?;
    let centres = section.centres();
    let bar = out.progress(&section.name, centres.len());
    let spots = SlideSpots { slide: image, microns_per_pixel: section.microns_per_pixel, centres: &centres };
    let embedded = embedder.embed(&spots, &|done, _| {
        bar.set_position(done as u64);
        std::ops::ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    Ok(embedded)
}

pub fn run(args: EmbedArgs, out: &Output) -> anyhow::Result<()> {
    let started = Instant::now();
    let section = her2st::load(&args.her2st, &args.section)?;
    let encoder = args.encoder.open()?;
    let cache = args.cache.open()?;
    let embedder = SpotEmbedder { encoder: &encoder, cache: cache.as_ref(), precision: args.cache.precision() };
    let embedded = embed_section(&section, &embedder, out)?;
    if let Some(path) = &args.out {
        write_npy(path, &embedded.embeddings)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let source = match embedded.origin {
        Origin::Cache => "cache",
        Origin::Computed => "computed",
    };
    let (spots, dim) = embedded.embeddings.dim();
    let provider = encoder.loaded().map_or("encoder not loaded", |e| e.provider());
    out.report(
        &format!(
            "section {}: {spots} spots × {dim} dimensions ({source}, {}) in {seconds:.2} s",
            section.name, provider
        ),
        serde_json::json!({
            "section": section.name, "spots": spots, "dim": dim, "source": source,
            "provider": provider, "seconds": seconds, "out": args.out,
        }),
    )?;
    Ok(())
}

/// Writes a float32 matrix as a NumPy `.npy` file (format 1.0), atomically.
fn write_npy(path: &Path, matrix: &Array2<f32>) -> anyhow::Result<()> {
    let (rows, cols) = matrix.dim();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header must end on a 64-byte boundary, with '\n'.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    spahgc_core::write_atomically(path, |w| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for v in matrix.iter() {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}
