//! Exact top-k retrieval by cosine similarity.

use ndarray::{ArrayView2, Axis};

use crate::{BankError, ReferenceBank};

/// A retrieved reference spot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Row of the spot in the bank.
    pub index: usize,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

impl ReferenceBank {
    /// The `k` bank spots most similar to each query row (queries × embedding_dim), best first.
    ///
    /// Ties are broken by bank row, lower first, so results are deterministic. Spots of the
    /// section named `exclude_section` are never returned (a section must not retrieve itself).
    /// Zero vectors (queries or bank rows) have similarity 0 to everything. Fewer than `k`
    /// neighbours come back only when the bank has fewer eligible spots.
    pub fn top_k(
        &self,
        queries: ArrayView2<f32>,
        k: usize,
        exclude_section: Option<&str>,
    ) -> Result<Vec<Vec<Neighbour>>, BankError> {
        let dim = self.meta().embedding_dim;
        if queries.ncols() != dim {
            return Err(BankError::Input(format!(
                "queries have {} dimensions, the bank's embeddings have {dim}",
                queries.ncols()
            )));
        }
        if queries.iter().any(|v| !v.is_finite()) {
            return Err(BankError::Input("queries contain NaN or infinity".into()));
        }
        let excluded = exclude_section.and_then(|name| self.meta().sections.iter().position(|s| s.name == name));
        let eligible: Vec<usize> =
            (0..self.len()).filter(|&i| excluded != Some(self.section_of()[i] as usize)).collect();
        let inv_norm: Vec<f32> = self.norms().iter().map(|&n| if n > 0.0 { 1.0 / n } else { 0.0 }).collect();
        let mut results = Vec::with_capacity(queries.nrows());
        // Queries in blocks bound the scores matrix to a few MB whatever the batch size.
        for block in queries.axis_chunks_iter(Axis(0), 256) {
            let dots = block.dot(&self.embeddings().t());
            for (q, row) in block.rows().into_iter().zip(dots.rows()) {
                let q_norm = q.dot(&q).sqrt();
                let q_inv = if q_norm > 0.0 { 1.0 / q_norm } else { 0.0 };
                let mut scored: Vec<Neighbour> = eligible
                    .iter()
                    .map(|&i| Neighbour { index: i, similarity: row[i] * q_inv * inv_norm[i] })
                    .collect();
                let better =
                    |a: &Neighbour, b: &Neighbour| b.similarity.total_cmp(&a.similarity).then(a.index.cmp(&b.index));
                let k = k.min(scored.len());
                if k < scored.len() && k > 0 {
                    scored.select_nth_unstable_by(k - 1, better);
                }
                scored.truncate(k);
                scored.sort_by(better);
                results.push(scored);
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::test_support::random_bank;

    /// Straightforward reference: every similarity in f64, full sort.
    fn brute_force(bank: &crate::ReferenceBank, q: &[f32], k: usize, exclude: Option<u32>) -> Vec<usize> {
        let e = bank.embeddings();
        let qn = q.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let mut scored: Vec<(f64, usize)> = (0..bank.len())
            .filter(|&i| Some(bank.section_of()[i]) != exclude)
            .map(|i| {
                let row = e.row(i);
                let dot: f64 = row.iter().zip(q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let n = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                (dot / (n * qn), i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn top_k_matches_brute_force_on_random_data() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 7);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let queries = Array2::from_shape_fn((40, 16), |_| rng.random_range(-1.0..1.0f32));
        for (exclude, excluded_index) in [(None, None), (Some("A"), Some(0)), (Some("B"), Some(1))] {
            let found = bank.top_k(queries.view(), 7, exclude).unwrap();
            for (q, hits) in queries.rows().into_iter().zip(&found) {
                let want = brute_force(&bank, q.as_slice().unwrap(), 7, excluded_index);
                let got: Vec<usize> = hits.iter().map(|h| h.index).collect();
                assert_eq!(got, want, "exclude {exclude:?}");
                assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
            }
        }
    }

    #[test]
    fn ties_break_by_bank_row_and_k_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 3);
        // A query equal to bank row 5, scaled: row 5 is the best hit with similarity 1.
        let q = bank.embeddings().slice(s![5..6, ..]).mapv(|v| v * 3.0);
        let hits = bank.top_k(q.view(), 1, None).unwrap();
        assert_eq!(hits[0][0].index, 5);
        assert!((hits[0][0].similarity - 1.0).abs() < 1e-5);
        // A zero query ties with every spot: the lowest rows win.
        let zero = Array2::<f32>::zeros((1, 16));
        let hits = bank.top_k(zero.view(), 3, Some("A")).unwrap();
        assert_eq!(hits[0].iter().map(|h| h.index).collect::<Vec<_>>(), vec![30, 31, 32]);
        assert_eq!(bank.top_k(zero.view(), 500, None).unwrap()[0].len(), 50);
    }

    #[test]
    fn mismatched_queries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 3);
        assert!(bank.top_k(Array2::<f32>::zeros((2, 15)).view(), 3, None).is_err());
        assert!(bank.top_k(Array2::<f32>::from_elem((1, 16), f32::NAN).view(), 3, None).is_err());
    }
}
