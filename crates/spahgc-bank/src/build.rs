//! Building a bank from reference sections and their embeddings.

use std::path::Path;

use half::f16;
use ndarray::{Array2, ArrayView2};
use spahgc_core::{NormStats, Normalisation, Section, panel_expression};

use crate::format::{BankArrays, as_bytes};
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
    let (expression, norm) = match normalise {
        Normalise::Fit { method, genes } => {
            let expression = checked_expression(sections, genes)?;
            let norm = NormStats::fit(method, genes, &expression)?;
            (expression, norm)
        }
        Normalise::As(norm) => (checked_expression(sections, &norm.genes)?, norm.clone()),
    };
    write_bank(path, sections, expression, norm, precision, encoder_sha256)
}

/// Checks that the sections and their embeddings fit together, and returns each section's
/// log-normalised expression over `genes`.
fn checked_expression(sections: &[BankSection], genes: &[String]) -> Result<Vec<Array2<f32>>, BankError> {
    let Some(first) = sections.first() else {
        return Err(BankError::Input("a bank needs at least one reference section".into()));
    };
    let dim = first.embeddings.ncols();
    let mut expression = Vec::with_capacity(sections.len());
    for s in sections {
        let name = &s.section.name;
        if s.embeddings.nrows() != s.section.spots.len() {
            return Err(BankError::Input(format!(
                "section {name}: {} embeddings for {} spots",
                s.embeddings.nrows(),
                s.section.spots.len()
            )));
        }
        if s.embeddings.ncols() != dim {
            return Err(BankError::Input(format!(
                "section {name}: embeddings have {} dimensions, section {} has {dim}",
                s.embeddings.ncols(),
                first.section.name
            )));
        }
        if s.embeddings.iter().any(|v| !v.is_finite()) {
            return Err(BankError::Input(format!("section {name}: embeddings contain NaN or infinity")));
        }
        if sections.iter().filter(|o| o.section.name == *name).count() > 1 {
            return Err(BankError::Input(format!("section {name} is given twice")));
        }
        expression.push(panel_expression(s.section, genes)?);
    }
    Ok(expression)
}

/// Normalises each section's `expression` with `norm` and writes the bank.
fn write_bank(
    path: &Path,
    sections: &[BankSection],
    expression: Vec<Array2<f32>>,
    norm: NormStats,
    precision: EmbeddingPrecision,
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    let dim = sections[0].embeddings.ncols();
    let (mut full, mut half) = (Vec::<f32>::new(), Vec::<f16>::new());
    let (mut targets, mut centres, mut norms, mut section_of) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (s, mut expr)) in sections.iter().zip(expression).enumerate() {
        norm.apply(&mut expr)?;
        targets.extend(expr.iter());
        for (row, spot) in s.embeddings.rows().into_iter().zip(&s.section.spots) {
            // The norm of the values as stored, so that similarities stay within [-1, 1].
            let squares: f32 = match precision {
                EmbeddingPrecision::F32 => {
                    full.extend(row.iter());
                    row.dot(&row)
                }
                EmbeddingPrecision::F16 => {
                    let stored: Vec<f16> = row.iter().map(|&v| f16::from_f32(v)).collect();
                    if stored.iter().any(|v| v.is_infinite()) {
                        let name = &s.section.name;
                        return Err(BankError::Input(format!(
                            "section {name}: spot {} has embedding values beyond f16's range (±65504)",
                            spot.id
                        )));
                    }
                    half.extend(&stored);
                    stored.iter().map(|v| v.to_f32() * v.to_f32()).sum()
                }
            };
            centres.extend([spot.x, spot.y]);
            norms.push(squares.sqrt());
            section_of.push(i as u32);
        }
    }
    let meta = BankMeta {
        format_version: precision.format_version(),
        encoder_sha256: encoder_sha256.into(),
        embedding_dim: dim,
        embedding_precision: precision,
        genes: norm.genes.clone(),
        norm,
        sections: sections
            .iter()
            .map(|s| SectionInfo {
                name: s.section.name.clone(),
                spot_ids: s.section.spots.iter().map(|p| p.id.clone()).collect(),
                image: s.section.image.clone(),
            })
            .collect(),
        n_spots: section_of.len(),
        arrays: Default::default(),
    };
    let embeddings = match precision {
        EmbeddingPrecision::F32 => as_bytes(&full),
        EmbeddingPrecision::F16 => as_bytes(&half),
    };
    BankFile::write(
        path,
        meta,
        BankArrays { embeddings, expression: &targets, centres: &centres, norms: &norms, sections: &section_of },
    )
}
