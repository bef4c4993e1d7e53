//! Building a bank from reference sections and their embeddings.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use spahgc_core::{NormStats, Normalisation, Section, panel_expression};

use crate::format::BankArrays;
use crate::{BankError, BankFile, BankMeta, FORMAT_VERSION, SectionInfo};

/// One reference section and the embeddings of its spots (spots × embedding dimension, rows in
/// the section's spot order).
pub struct BankSection<'a> {
    pub section: &'a Section,
    pub embeddings: ArrayView2<'a, f32>,
}

/// Builds a bank over `genes` from `sections` and writes it atomically to `path`.
///
/// Expression is normalised with statistics fitted on these sections only (they are the
/// training data of any model that uses the bank). Returns the written metadata.
pub fn build_bank(
    path: &Path,
    sections: &[BankSection],
    genes: &[String],
    method: Normalisation,
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    let expression = checked_expression(sections, genes)?;
    let norm = NormStats::fit(method, genes, &expression)?;
    write_bank(path, sections, expression, norm, encoder_sha256)
}

/// Builds a bank like [`build_bank`], over the genes of `norm` and normalised with it (another
/// bank's statistics) instead of statistics fitted on `sections`: banks built apart this way can
/// be searched together as shards of one (see [`crate::join_banks`]).
pub fn build_bank_normalised_as(
    path: &Path,
    sections: &[BankSection],
    norm: &NormStats,
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    let expression = checked_expression(sections, &norm.genes)?;
    write_bank(path, sections, expression, norm.clone(), encoder_sha256)
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
    encoder_sha256: &str,
) -> Result<BankMeta, BankError> {
    let dim = sections[0].embeddings.ncols();
    let mut arrays = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (s, mut expr)) in sections.iter().zip(expression).enumerate() {
        norm.apply(&mut expr)?;
        arrays.1.extend(expr.iter());
        for (row, spot) in s.embeddings.rows().into_iter().zip(&s.section.spots) {
            arrays.0.extend(row.iter());
            arrays.2.extend([spot.x, spot.y]);
            arrays.3.push(row.dot(&row).sqrt());
            arrays.4.push(i as u32);
        }
    }
    let meta = BankMeta {
        format_version: FORMAT_VERSION,
        encoder_sha256: encoder_sha256.into(),
        embedding_dim: dim,
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
        n_spots: arrays.4.len(),
        arrays: Default::default(),
    };
    let (embeddings, expression, centres, norms, section_of) = arrays;
    BankFile::write(
        path,
        meta,
        BankArrays {
            embeddings: &embeddings,
            expression: &expression,
            centres: &centres,
            norms: &norms,
            sections: &section_of,
        },
    )
}
