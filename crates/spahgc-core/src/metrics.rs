//! Accuracy of predicted expression: per-gene Pearson correlation and RMSE.

use ndarray::{ArrayView1, ArrayView2, Axis};

/// Pearson correlation of two equally long vectors; `None` when either is constant (or empty).
pub fn pearson(a: ArrayView1<f32>, b: ArrayView1<f32>) -> Option<f64> {
    let n = a.len();
    if n != b.len() || n == 0 {
        return None;
    }
    let mean = |v: ArrayView1<f32>| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Mean over genes (columns) of the Pearson correlation between prediction and truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenePcc {
    /// Mean correlation over the genes that vary in the truth.
    pub mean: f64,
    /// Genes left out because the truth is constant over the spots.
    pub excluded: usize,
}

/// Per-gene Pearson correlation averaged over genes; `None` when no gene can be scored.
///
/// Genes constant in the truth cannot be scored and are left out (and counted). A prediction
/// that is constant for a gene the truth varies in scores 0: it carries no information.
pub fn mean_gene_pcc(predicted: ArrayView2<f32>, truth: ArrayView2<f32>) -> Option<GenePcc> {
    assert_eq!(predicted.dim(), truth.dim(), "prediction and truth must have the same shape");
    let varies = |t: &ArrayView1<f32>| t.iter().any(|&v| v != t[0]);
    let scores: Vec<f64> = predicted
        .axis_iter(Axis(1))
        .zip(truth.axis_iter(Axis(1)))
        .filter(|(_, t)| varies(t))
        .map(|(p, t)| pearson(p, t).unwrap_or(0.0))
        .collect();
    if scores.is_empty() {
        return None;
    }
    Some(GenePcc { mean: scores.iter().sum::<f64>() / scores.len() as f64, excluded: truth.ncols() - scores.len() })
}

/// Root mean squared error over every entry.
pub fn rmse(predicted: ArrayView2<f32>, truth: ArrayView2<f32>) -> f64 {
    assert_eq!(predicted.dim(), truth.dim(), "prediction and truth must have the same shape");
    let sum: f64 = predicted.iter().zip(truth).map(|(&p, &t)| (f64::from(p) - f64::from(t)).powi(2)).sum();
    (sum / predicted.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn pearson_matches_hand_computed_values() {
        // x = 1,2,3,4; y = 2,4,5,4: means 2.5, 3.75; Σdxdy = 3.5; Σdx² = 5; Σdy² = 4.75.
        let r = pearson(array![1.0f32, 2.0, 3.0, 4.0].view(), array![2.0f32, 4.0, 5.0, 4.0].view()).unwrap();
        assert!((r - 3.5 / (5.0f64 * 4.75).sqrt()).abs() < 1e-12, "{r}");
        assert_eq!(pearson(array![1.0f32, 2.0].view(), array![3.0f32, 3.0].view()), None);
    }

    #[test]
    fn constant_genes_are_excluded_and_counted() {
        let truth = array![[1.0f32, 5.0, 0.0, 0.0], [2.0, 5.0, 1.0, 1.0], [3.0, 5.0, 2.0, 3.0]];
        let predicted = array![[1.0f32, 1.0, 2.0, 4.0], [2.0, 2.0, 1.0, 4.0], [3.0, 3.0, 0.0, 4.0]];
        let pcc = mean_gene_pcc(predicted.view(), truth.view()).unwrap();
        // Genes score +1, −1 and 0 (a constant prediction); the gene constant in the truth is out.
        assert_eq!(pcc, GenePcc { mean: 0.0, excluded: 1 });
    }

    #[test]
    fn rmse_matches_hand_computed_values() {
        let truth = array![[0.0f32, 1.0], [2.0, 3.0]];
        let predicted = array![[1.0f32, 1.0], [2.0, 1.0]];
        // Errors 1, 0, 0, 2: sqrt(5 / 4).
        assert!((rmse(predicted.view(), truth.view()) - 1.25f64.sqrt()).abs() < 1e-12);
    }
}
