//! Sparse spots × genes count matrices.

use std::collections::HashMap;

use ndarray::Array2;

use crate::CoreError;

/// Raw counts of one section in compressed sparse rows: one row per spot, one column per gene.
///
/// Count matrices hold tens of thousands of genes of which a few thousand are non-zero per spot,
/// so they stay sparse until a panel picks the genes a model uses.
#[derive(Debug, Clone, PartialEq)]
pub struct CountMatrix {
    genes: Vec<String>,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl CountMatrix {
    /// Builds a matrix from CSR parts, checking that they agree with each other.
    pub fn from_csr(
        genes: Vec<String>,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self, CoreError> {
        let bad = |msg: String| Err(CoreError::BadMatrix(msg));
        if indptr.first() != Some(&0) {
            return bad("row pointer must start at 0".into());
        }
        if indptr.windows(2).any(|w| w[0] > w[1]) {
            return bad("row pointer must not decrease".into());
        }
        let nnz = *indptr.last().unwrap_or(&0);
        if nnz != indices.len() || nnz != values.len() {
            return bad(format!(
                "row pointer ends at {nnz} but there are {} indices and {} values",
                indices.len(),
                values.len()
            ));
        }
        if let Some(&i) = indices.iter().find(|&&i| i as usize >= genes.len()) {
            return bad(format!("gene index {i} out of range for {} genes", genes.len()));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return bad(format!("count {v} is not a finite non-negative number"));
        }
        Ok(Self { genes, indptr, indices, values })
    }

    /// Number of spots (rows).
    pub fn n_spots(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Gene names (columns), in file order.
    pub fn genes(&self) -> &[String] {
        &self.genes
    }

    /// Non-zero entries of one spot as `(gene index, count)`.
    pub fn row(&self, spot: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = self.indptr[spot]..self.indptr[spot + 1];
        self.indices[range.clone()].iter().zip(&self.values[range]).map(|(&g, &v)| (g as usize, v))
    }

    /// Total counts of each spot over all genes (the library size).
    pub fn library_sizes(&self) -> Vec<f64> {
        (0..self.n_spots()).map(|s| self.row(s).map(|(_, v)| f64::from(v)).sum()).collect()
    }

    /// Dense spots × `genes` matrix; a gene the section did not measure is all-zero.
    ///
    /// Returns the matrix and the names of the genes that were missing.
    pub fn dense(&self, genes: &[String]) -> (Array2<f32>, Vec<String>) {
        let position: HashMap<&str, usize> = self.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
        let mut column_of = vec![None; self.genes.len()];
        let mut missing = Vec::new();
        for (j, gene) in genes.iter().enumerate() {
            match position.get(gene.as_str()) {
                Some(&i) => column_of[i] = Some(j),
                None => missing.push(gene.clone()),
            }
        }
        let mut out = Array2::zeros((self.n_spots(), genes.len()));
        for s in 0..self.n_spots() {
            for (g, v) in self.row(s) {
                if let Some(j) = column_of[g] {
                    out[[s, j]] = v;
                }
            }
        }
        (out, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dense_places_counts_and_reports_missing_genes() {
        let m =
            CountMatrix::from_csr(genes(&["A", "B", "C"]), vec![0, 2, 3], vec![0, 2, 1], vec![1.0, 3.0, 5.0]).unwrap();
        assert_eq!(m.library_sizes(), vec![4.0, 5.0]);
        let (d, missing) = m.dense(&genes(&["C", "Z", "A"]));
        assert_eq!(d.into_raw_vec_and_offset().0, vec![3.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(missing, genes(&["Z"]));
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        assert!(CountMatrix::from_csr(genes(&["A"]), vec![0, 1], vec![1], vec![1.0]).is_err());
        assert!(CountMatrix::from_csr(genes(&["A"]), vec![0, 2], vec![0], vec![1.0]).is_err());
        assert!(CountMatrix::from_csr(genes(&["A"]), vec![0, 1], vec![0], vec![f32::NAN]).is_err());
    }
}
