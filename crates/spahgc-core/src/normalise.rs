//! From raw counts to model targets: counts per 10k, log1p, then per-gene min–max scaling.
//!
//! The min–max statistics come from the training sections only, so a model never sees anything
//! of its test section but the image; they are data that travel with a trained model.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::{CoreError, Section};

/// Library-size normalised, log-transformed expression of `genes` for every spot of `section`:
/// `ln(1 + 10⁴ · count / library size)`, the library size counting all genes of the section.
///
/// A spot with no counts at all stays at zero. Returns the spots × genes matrix and the genes
/// the section did not measure (they are all-zero).
pub fn log_cp10k(section: &Section, genes: &[String]) -> (Array2<f32>, Vec<String>) {
    let (mut expr, missing) = section.counts.dense(genes);
    for (mut row, size) in expr.rows_mut().into_iter().zip(section.counts.library_sizes()) {
        let scale = if size > 0.0 { 1e4 / size } else { 0.0 };
        row.mapv_inplace(|c| (f64::from(c) * scale).ln_1p() as f32);
    }
    (expr, missing)
}

/// [`log_cp10k`] of a panel, accepting genes the section did not measure (count matrices omit
/// genes with no counts, so they are all-zero) but refusing a section that misses most of the
/// panel (another species, or another panel's naming).
pub fn panel_expression(section: &Section, genes: &[String]) -> Result<Array2<f32>, CoreError> {
    let (expr, missing) = log_cp10k(section, genes);
    if missing.len() * 2 > genes.len() {
        return Err(CoreError::Panel(format!(
            "section {} lacks {} of the {} panel genes (first: {}); wrong species or gene naming?",
            section.name,
            missing.len(),
            genes.len(),
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    if !missing.is_empty() {
        tracing::info!(
            "section {}: {} of {} panel genes have no counts, taken as zero",
            section.name,
            missing.len(),
            genes.len()
        );
    }
    Ok(expr)
}

/// How model targets are derived from log-normalised expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// Per-gene min–max scaling to [0, 1] on the training sections (the her2st protocol).
    #[default]
    MinMax,
    /// The log-normalised values as they are.
    LogCounts,
}

/// Per-gene statistics fitted on training sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    pub method: Normalisation,
    pub genes: Vec<String>,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
}

impl NormStats {
    /// Fits statistics over the rows of all `training` matrices (spots × `genes`).
    pub fn fit(method: Normalisation, genes: &[String], training: &[Array2<f32>]) -> Result<Self, CoreError> {
        let mut min = vec![f32::INFINITY; genes.len()];
        let mut max = vec![f32::NEG_INFINITY; genes.len()];
        for m in training {
            check_width(genes.len(), m)?;
            for row in m.axis_iter(Axis(0)) {
                for ((lo, hi), &v) in min.iter_mut().zip(max.iter_mut()).zip(row) {
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
        }
        // A gene never seen (no training rows) scales to zero rather than to NaN.
        for (lo, hi) in min.iter_mut().zip(max.iter_mut()) {
            if !lo.is_finite() {
                (*lo, *hi) = (0.0, 0.0);
            }
        }
        Ok(Self { method, genes: genes.to_vec(), min, max })
    }

    /// Scales log-normalised expression (spots × genes) in place into model targets.
    ///
    /// With min–max scaling a constant gene maps to 0, and test values outside the training
    /// range land outside [0, 1] (they are not clipped, so errors stay visible).
    pub fn apply(&self, expr: &mut Array2<f32>) -> Result<(), CoreError> {
        self.per_gene(expr, |v, lo, hi| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
    }

    /// Turns model outputs (spots × genes) back into log-normalised expression, in place: the
    /// inverse of [`NormStats::apply`] (a constant training gene comes back as its constant).
    pub fn invert(&self, values: &mut Array2<f32>) -> Result<(), CoreError> {
        self.per_gene(values, |v, lo, hi| lo + v * (hi - lo))
    }

    /// Replaces each value `v` of gene `g` by `f(v, min[g], max[g])` (min–max scaling only).
    fn per_gene(&self, values: &mut Array2<f32>, f: impl Fn(f32, f32, f32) -> f32) -> Result<(), CoreError> {
        check_width(self.genes.len(), values)?;
        if self.method == Normalisation::LogCounts {
            return Ok(());
        }
        for mut row in values.axis_iter_mut(Axis(0)) {
            for ((v, &lo), &hi) in row.iter_mut().zip(&self.min).zip(&self.max) {
                *v = f(*v, lo, hi);
            }
        }
        Ok(())
    }
}

fn check_width(expected: usize, m: &Array2<f32>) -> Result<(), CoreError> {
    if m.ncols() == expected { Ok(()) } else { Err(CoreError::GeneCount { expected, found: m.ncols() }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountMatrix, Spot};
    use ndarray::array;

    fn names(genes: &[&str]) -> Vec<String> {
        genes.iter().map(|s| s.to_string()).collect()
    }

    /// Two spots measuring genes A and B: counts (1, 3) and nothing.
    fn section() -> Section {
        let counts = CountMatrix::from_csr(names(&["A", "B"]), vec![0, 2, 2], vec![0, 1], vec![1.0, 3.0]).unwrap();
        let spot = |id: &str| Spot { id: id.into(), x: 0.0, y: 0.0 };
        Section {
            name: "s".into(),
            spots: vec![spot("a"), spot("b")],
            counts,
            image: None,
            microns_per_pixel: None,
            spot_diameter_px: None,
        }
    }

    #[test]
    fn log_cp10k_uses_the_library_size_of_all_genes() {
        let genes = names(&["A", "B"]);
        let section = section();
        let (expr, missing) = log_cp10k(&section, &genes[..1]);
        assert!(missing.is_empty());
        assert!((expr[[0, 0]] - (2500f32).ln_1p()).abs() < 1e-4);
        assert_eq!(expr[[1, 0]], 0.0, "an empty spot stays zero");
    }

    #[test]
    fn panel_genes_a_section_never_measured_are_zero_unless_most_are_missing() {
        let expr = panel_expression(&section(), &names(&["B", "C"])).unwrap();
        assert!((expr[[0, 0]] - (7500f32).ln_1p()).abs() < 1e-3);
        assert_eq!(expr.column(1).to_vec(), vec![0.0, 0.0], "C is unmeasured: zero");
        let err = panel_expression(&section(), &names(&["C", "D", "A"])).unwrap_err().to_string();
        assert!(err.contains("section s lacks 2 of the 3 panel genes (first: C, D)"), "{err}");
    }

    #[test]
    fn min_max_uses_training_statistics_only() {
        let genes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let train = array![[1.0f32, 5.0], [3.0, 5.0]];
        let stats = NormStats::fit(Normalisation::MinMax, &genes, &[train]).unwrap();
        let mut test = array![[2.0f32, 7.0], [5.0, 5.0]];
        stats.apply(&mut test).unwrap();
        assert_eq!(test, array![[0.5f32, 0.0], [2.0, 0.0]]);
        stats.invert(&mut test).unwrap();
        assert_eq!(test, array![[2.0f32, 5.0], [5.0, 5.0]], "inverting gives back the values of varying genes");
        let mut wrong = Array2::<f32>::zeros((1, 3));
        assert!(matches!(stats.apply(&mut wrong), Err(CoreError::GeneCount { expected: 2, found: 3 })));
    }
}
