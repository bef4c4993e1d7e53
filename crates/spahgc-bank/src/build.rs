//! Building a bank from reference sections and their embeddings, a section at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use ndarray::ArrayView2;
use spahgc_core::{NormStats, Normalisation, Section, panel_expression};

use crate::format::as_bytes;
use crate::{BankError, BankFile, BankMeta, EmbeddingPrecision, SectionInfo};

/// One reference section and the embeddings of its spots (spots × embedding dimension, rows in
/// the section's spot order).
pub struct BankSection<'a> {
    pub section: &'a Section,
    pub embeddings: ArrayView2<'a, f32>,
}

/// Where a bank's normalisation statistics come from.
pub enum Normalise<'a> {
    /// Fitted on the bank's own sections (the training data of any model that uses the bank),
    /// over `genes`.
    Fit { method: Normalisation, genes: &'a [String] },
    /// Another bank's statistics, over its genes: banks built apart this way can be searched
    /// together as shards of one (see [`crate::join_banks`]).
    As(&'a NormStats),
}

impl Normalise<'_> {
    /// The statistics of a bank of `sections`: fitted on them, or the ones given.
    pub fn stats<'s>(&self, sections: impl IntoIterator<Item = &'s Section>) -> Result<NormStats, BankError> {
        match self {
            Normalise::Fit { method, genes } => {
                let expression =
                    sections.into_iter().map(|s| panel_expression(s, genes)).collect::<Result<Vec<_>, _>>()?;
                Ok(NormStats::fit(*method, genes, &expression)?)
            }
            Normalise::As(norm) => Ok((*norm).clone()),
        }
    }
}

/// Builds a bank over `genes` from `sections`, statistics fitted on them and embeddings stored
/// as f32, and writes it atomically to `path`. Returns the written metadata.
pub fn build_bank(
    path: &Path,
    sections: &[BankSection],
    genes: &[String],
    method: Normalisation,
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    build_bank_with(path, sections, Normalise::Fit { method, genes }, EmbeddingPrecision::F32, encoder_sha256)
}

/// Builds a bank from `sections`, normalised as `normalise` says, embeddings stored at
/// `precision`, and writes it atomically to `path`. Returns the written metadata.
pub fn build_bank_with(
    path: &Path,
    sections: &[BankSection],
    normalise: Normalise,
    precision: EmbeddingPrecision,
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    let norm = normalise.stats(sections.iter().map(|s| s.section))?;
    let mut writer = BankWriter::create(path, norm, precision, encoder_sha256)?;
    sections.iter().try_for_each(|s| writer.push(s))?;
    writer.finish()
}

/// Writes a bank a section at a time, holding no more than one section's arrays in memory: they
/// are appended to unnamed temporary files beside the bank, which [`BankWriter::finish`] copies
/// into the bank file, written atomically. Dropped unfinished, it leaves nothing behind.
pub struct BankWriter {
    path: PathBuf,
    meta: BankMeta,
    /// Embeddings, expression, centres, norms and section of each spot, as the file lays them out.
    parts: [BufWriter<File>; 5],
}

impl BankWriter {
    /// A writer of a bank at `path` over the genes of `norm`, normalised with it.
    pub fn create(
        path: &Path,
        norm: NormStats,
        precision: EmbeddingPrecision,
        encoder_sha256: &str,
    ) -> Result<Self, BankError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let io = |source| BankError::Io { path: dir.into(), source };
        let part = || tempfile::tempfile_in(dir).map(BufWriter::new).map_err(io);
        let parts = [part()?, part()?, part()?, part()?, part()?];
        let meta = BankMeta {
            format_version: precision.format_version(),
            encoder_sha256: encoder_sha256.into(),
            embedding_dim: 0,
            embedding_precision: precision,
            genes: norm.genes.clone(),
            norm,
            sections: Vec::new(),
            n_spots: 0,
            arrays: Default::default(),
        };
        Ok(Self { path: path.into(), meta, parts })
    }

    /// Appends a section: its embeddings (as the bank stores them, with their norms), its
    /// normalised expression and its spot centres.
    pub fn push(&mut self, s: &BankSection) -> Result<(), BankError> {
        let name = &s.section.name;
        let (rows, dim) = s.embeddings.dim();
        if rows != s.section.spots.len() {
            return Err(BankError::Input(format!(
                "section {name}: {rows} embeddings for {} spots",
                s.section.spots.len()
            )));
        }
        if let Some(first) = self.meta.sections.first().filter(|_| dim != self.meta.embedding_dim) {
            let (first, expected) = (&first.name, self.meta.embedding_dim);
            return Err(BankError::Input(format!(
                "section {name}: embeddings have {dim} dimensions, section {first} has {expected}"
            )));
        }
        if s.embeddings.iter().any(|v| !v.is_finite()) {
            return Err(BankError::Input(format!("section {name}: embeddings contain NaN or infinity")));
        }
        if self.meta.sections.iter().any(|other| other.name == *name) {
            return Err(BankError::Input(format!("section {name} is given twice")));
        }
        let mut expression = panel_expression(s.section, &self.meta.norm.genes)?;
        self.meta.norm.apply(&mut expression)?;
        let mut bytes = Vec::with_capacity(rows * dim * 4);
        let mut norms = Vec::with_capacity(rows);
        for row in s.embeddings.rows() {
            // The norm of the values as stored, so that similarities stay within [-1, 1].
            let squares: f32 = match self.meta.embedding_precision {
                EmbeddingPrecision::F32 => {
                    bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
                    row.dot(&row)
                }
                EmbeddingPrecision::F16 => {
                    let stored: Vec<f16> = row.iter().map(|&v| f16::from_f32(v)).collect();
                    if stored.iter().any(|v| v.is_infinite()) {
                        return Err(BankError::Input(format!(
                            "section {name}: embedding values beyond f16's range (±65504)"
                        )));
                    }
                    bytes.extend(stored.iter().flat_map(|v| v.to_le_bytes()));
                    stored.iter().map(|v| v.to_f32() * v.to_f32()).sum()
                }
            };
            norms.push(squares.sqrt());
        }
        let centres: Vec<f64> = s.section.spots.iter().flat_map(|spot| [spot.x, spot.y]).collect();
        let index = self.meta.sections.len() as u32;
        let expression: Vec<f32> = expression.iter().copied().collect();
        let path = self.path.clone();
        let io = |source| BankError::Io { path: path.clone(), source };
        self.parts[0].write_all(&bytes).map_err(io)?;
        self.parts[1].write_all(as_bytes(&expression)).map_err(io)?;
        self.parts[2].write_all(as_bytes(&centres)).map_err(io)?;
        self.parts[3].write_all(as_bytes(&norms)).map_err(io)?;
        self.parts[4].write_all(as_bytes(&vec![index; rows])).map_err(io)?;
        self.meta.embedding_dim = dim;
        self.meta.n_spots += rows;
        self.meta.sections.push(SectionInfo {
            name: name.clone(),
            spot_ids: s.section.spots.iter().map(|p| p.id.clone()).collect(),
            image: s.section.image.clone(),
        });
        Ok(())
    }

    /// Writes the bank file atomically and returns its metadata.
    pub fn finish(self) -> Result<BankMeta, BankError> {
        if self.meta.sections.is_empty() {
            return Err(BankError::Input("a bank needs at least one reference section".into()));
        }
        let io = |source| BankError::Io { path: self.path.clone(), source };
        let mut files = Vec::with_capacity(5);
        for part in self.parts {
            files.push(part.into_inner().map_err(|e| io(e.into_error()))?);
        }
        BankFile::write(&self.path, self.meta, files.try_into().expect("five parts"))
    }
}
