//! Top-k retrieval by cosine similarity: an exact scan, or the exact ranking of an approximate
//! index's candidates for large banks.

use std::sync::Arc;

use ndarray::{ArrayView2, Axis};

use crate::shards::Shard;
use crate::{BankError, Embeddings, ReferenceBank};

/// A retrieved reference spot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Row of the spot in the bank.
    pub index: usize,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

/// An approximate nearest-neighbour index over a bank's embeddings (spahgc-ann builds one), for
/// banks too large to scan: it proposes candidate rows, which the bank ranks exactly.
pub trait ApproximateIndex: Send + Sync {
    /// Rows and embedding dimensions the index was built over.
    fn shape(&self) -> (usize, usize);

    /// For each query row, the bank rows the index finds most similar by cosine: at least `k`
    /// of them where the bank holds that many, best first by the index's estimate.
    fn candidates(&self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<Vec<usize>>, BankError>;
}

/// Rows of f16 embeddings converted at a time by a scan (5 MB of f32 at 1280 dimensions; 16 in
/// unit tests, so that their small banks are scanned in several slices).
const F16_SCAN_ROWS: usize = if cfg!(test) { 16 } else { 1024 };

/// Banks from this many spots on search an attached index; smaller ones are scanned exactly.
pub const APPROXIMATE_FROM_SPOTS: usize = 100_000;

/// An index attached to a bank, and from which bank size it is used.
pub(crate) struct AttachedIndex {
    index: Arc<dyn ApproximateIndex>,
    from_spots: usize,
}

/// The `k` best of `scored`, best first: higher similarity, then lower bank row.
pub fn best_k(mut scored: Vec<Neighbour>, k: usize) -> Vec<Neighbour> {
    let better = |a: &Neighbour, b: &Neighbour| b.similarity.total_cmp(&a.similarity).then(a.index.cmp(&b.index));
    let k = k.min(scored.len());
    if k < scored.len() && k > 0 {
        scored.select_nth_unstable_by(k - 1, better);
    }
    scored.truncate(k);
    scored.sort_by(better);
    scored
}

impl ReferenceBank {
    /// Gives shard `shard` (0 for a bank of one file) an index, searched instead of scanning
    /// every spot of it once the shard holds `from_spots` spots or more
    /// ([`APPROXIMATE_FROM_SPOTS`] by default; 0: always). An index built over another number of
    /// spots or embedding dimensions is refused.
    pub fn attach_index(
        &mut self,
        shard: usize,
        index: Arc<dyn ApproximateIndex>,
        from_spots: usize,
    ) -> Result<(), BankError> {
        let count = self.shards.len();
        let Some(target) = self.shards.get_mut(shard) else {
            return Err(BankError::Input(format!("the bank has {count} shards, no shard {shard}")));
        };
        let (rows, dim) = index.shape();
        let (spots, bank_dim) = (target.file.len(), target.file.meta().embedding_dim);
        if (rows, dim) != (spots, bank_dim) {
            return Err(BankError::Input(format!(
                "the index covers {rows} spots of {dim} dimensions, the bank {} holds {spots} spots of {bank_dim}",
                target.file.path().display()
            )));
        }
        target.index = Some(AttachedIndex { index, from_spots });
        Ok(())
    }

    /// Whether queries go through an attached index (for some shard at least; the others are
    /// scanned).
    pub fn searches_index(&self) -> bool {
        self.shards.iter().any(Shard::searches_index)
    }

    /// The `k` bank spots most similar to each query row (queries × embedding_dim), best first.
    ///
    /// Ties are broken by bank row, lower first, so results are deterministic. Spots of the
    /// section named `exclude_section` are never returned (a section must not retrieve itself).
    /// Zero vectors (queries or bank rows) have similarity 0 to everything. Fewer than `k`
    /// neighbours come back only when the bank has fewer eligible spots. A shard searched
    /// through an index ([`ReferenceBank::searches_index`]) gives the best of its candidates; a
    /// query whose candidates hold too few eligible spots scans that shard in full.
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
        let mut results = vec![Vec::new(); queries.nrows()];
        for shard in &self.shards {
            let local_excluded = excluded.and_then(|e| e.checked_sub(shard.first_section));
            for (all, found) in results.iter_mut().zip(shard.top_k(queries, k, local_excluded)?) {
                all.extend(found.into_iter().map(|n| Neighbour { index: n.index + shard.first_row, ..n }));
            }
        }
        if self.shards.len() > 1 {
            results = results.into_iter().map(|found| best_k(found, k)).collect();
        }
        Ok(results)
    }
}

impl Shard {
    fn searches_index(&self) -> bool {
        self.index.as_ref().is_some_and(|a| self.file.len() >= a.from_spots)
    }

    /// [`ReferenceBank::top_k`] within this shard, rows and `excluded` section numbered within it.
    fn top_k(
        &self,
        queries: ArrayView2<f32>,
        k: usize,
        excluded: Option<usize>,
    ) -> Result<Vec<Vec<Neighbour>>, BankError> {
        let section_of = self.file.section_of();
        let is_eligible = |i: usize| excluded != Some(section_of[i] as usize);
        // Listed only when some query scans the shard: with an index, that is rare, and the
        // list is as long as the shard.
        let eligible = std::cell::OnceCell::new();
        let eligible = || eligible.get_or_init(|| (0..self.file.len()).filter(|&i| is_eligible(i)).collect::<Vec<_>>());
        let Some(attached) = self.index.as_ref().filter(|_| self.searches_index()) else {
            return Ok(self.scan(queries, k, eligible()));
        };
        let sections = &self.file.meta().sections;
        let excluded_spots = excluded.and_then(|s| sections.get(s)).map_or(0, |s| s.spot_ids.len());
        let wanted = k.min(self.file.len() - excluded_spots);
        let candidates = attached.index.candidates(queries, k)?;
        let embeddings = self.file.embeddings();
        let mut results = Vec::with_capacity(queries.nrows());
        for (q, rows) in queries.rows().into_iter().zip(candidates) {
            let q_inv = inverse_norm(q.dot(&q).sqrt());
            let scored: Vec<Neighbour> = rows
                .into_iter()
                .filter(|&i| i < self.file.len() && is_eligible(i))
                .map(|i| Neighbour {
                    index: i,
                    similarity: embeddings.row_f32(i).dot(&q) * q_inv * self.inverse_norm(i),
                })
                .collect();
            results.push(match scored.len() >= wanted {
                true => best_k(scored, k),
                false => self.scan(q.insert_axis(Axis(0)), k, eligible()).remove(0),
            });
        }
        Ok(results)
    }

    /// Top-k over every row of `eligible` (in increasing order).
    fn scan(&self, queries: ArrayView2<f32>, k: usize, eligible: &[usize]) -> Vec<Vec<Neighbour>> {
        let embeddings = self.file.embeddings();
        // f32 rows are used in place, all at once; f16 rows are converted a slice at a time.
        let chunk = match embeddings {
            Embeddings::F32(_) => self.file.len().max(1),
            Embeddings::F16(_) => F16_SCAN_ROWS,
        };
        let mut results = Vec::with_capacity(queries.nrows());
        // Queries in blocks bound the scores matrix to a few MB whatever the batch size.
        for block in queries.axis_chunks_iter(Axis(0), 256) {
            let q_inv: Vec<f32> = block.rows().into_iter().map(|q| inverse_norm(q.dot(&q).sqrt())).collect();
            let mut best: Vec<Vec<Neighbour>> = vec![Vec::new(); block.nrows()];
            for start in (0..self.file.len()).step_by(chunk) {
                let end = (start + chunk).min(self.file.len());
                let rows = &eligible[eligible.partition_point(|&i| i < start)..eligible.partition_point(|&i| i < end)];
                let dots = block.dot(&embeddings.rows_f32(start..end).t());
                for ((found, row), q_inv) in best.iter_mut().zip(dots.rows()).zip(&q_inv) {
                    let scored = rows
                        .iter()
                        .map(|&i| Neighbour { index: i, similarity: row[i - start] * q_inv * self.inverse_norm(i) });
                    found.extend(scored);
                    *found = best_k(std::mem::take(found), k);
                }
            }
            results.extend(best);
        }
        results
    }

    fn inverse_norm(&self, row: usize) -> f32 {
        inverse_norm(self.file.norms()[row])
    }
}

/// 1 / `norm`, or 0 for a zero vector (similar to nothing); norms below the smallest normal
/// `f32` count as zero, since their inverse is infinite. A cosine similarity is the dot product
/// times both vectors' inverse norms.
pub fn inverse_norm(norm: f32) -> f32 {
    if norm >= f32::MIN_POSITIVE { 1.0 / norm } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ArrayView2};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::test_support::random_bank;

    /// Straightforward reference: every similarity in f64, full sort.
    fn brute_force(bank: &crate::ReferenceBank, q: &[f32], k: usize, exclude: Option<usize>) -> Vec<usize> {
        let qn = q.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let mut scored: Vec<(f64, usize)> = (0..bank.len())
            .filter(|&i| Some(bank.section_of(i)) != exclude)
            .map(|i| {
                let row = bank.embedding(i);
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
        let q = bank.embedding(5).insert_axis(ndarray::Axis(0)).mapv(|v| v * 3.0);
        let hits = bank.top_k(q.view(), 1, None).unwrap();
        assert_eq!(hits[0][0].index, 5);
        assert!((hits[0][0].similarity - 1.0).abs() < 1e-5);
        // A zero query ties with every spot: the lowest rows win.
        let zero = Array2::<f32>::zeros((1, 16));
        let hits = bank.top_k(zero.view(), 3, Some("A")).unwrap();
        assert_eq!(hits[0].iter().map(|h| h.index).collect::<Vec<_>>(), vec![30, 31, 32]);
        assert_eq!(bank.top_k(zero.view(), 500, None).unwrap()[0].len(), 50);
    }

    /// An index that proposes fixed rows for every query.
    struct FixedIndex {
        shape: (usize, usize),
        rows: Vec<usize>,
    }

    impl crate::ApproximateIndex for FixedIndex {
        fn shape(&self) -> (usize, usize) {
            self.shape
        }

        fn candidates(&self, queries: ArrayView2<f32>, _k: usize) -> Result<Vec<Vec<usize>>, crate::BankError> {
            Ok(vec![self.rows.clone(); queries.nrows()])
        }
    }

    #[test]
    fn an_attached_index_proposes_and_the_bank_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bank, _) = random_bank(dir.path(), 7);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let queries = Array2::from_shape_fn((5, 16), |_| rng.random_range(-1.0..1.0f32));
        let exact = bank.top_k(queries.view(), 3, None).unwrap();

        // Below its size threshold the index is not used.
        let wrong = FixedIndex { shape: (50, 16), rows: vec![0, 1, 2, 40, 41] };
        bank.attach_index(0, std::sync::Arc::new(wrong), 51).unwrap();
        assert!(!bank.searches_index());
        assert_eq!(bank.top_k(queries.view(), 3, None).unwrap(), exact);

        // In use, the answer is the exact ranking of its candidates; a query whose candidates
        // hold too few eligible spots (section A is rows 0..30) is answered by a full scan.
        let index = std::sync::Arc::new(FixedIndex { shape: (50, 16), rows: vec![0, 1, 2, 40, 41] });
        bank.attach_index(0, index, 0).unwrap();
        assert!(bank.searches_index());
        for hits in bank.top_k(queries.view(), 3, None).unwrap() {
            let rows: Vec<usize> = hits.iter().map(|h| h.index).collect();
            assert!(rows.iter().all(|r| [0, 1, 2, 40, 41].contains(r)), "{rows:?}");
            assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        }
        let without_a = bank.top_k(queries.view(), 3, Some("A")).unwrap();
        for (q, hits) in queries.rows().into_iter().zip(&without_a) {
            let want = brute_force(&bank, q.as_slice().unwrap(), 3, Some(0));
            assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), want);
        }

        // An index over other rows or dimensions is refused, naming both shapes.
        let e = bank.attach_index(0, std::sync::Arc::new(FixedIndex { shape: (50, 15), rows: vec![] }), 0).unwrap_err();
        assert!(e.to_string().contains("50 spots of 15 dimensions") && e.to_string().contains("50 spots of 16"), "{e}");
    }

    #[test]
    fn mismatched_queries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _) = random_bank(dir.path(), 3);
        assert!(bank.top_k(Array2::<f32>::zeros((2, 15)).view(), 3, None).is_err());
        assert!(bank.top_k(Array2::<f32>::from_elem((1, 16), f32::NAN).view(), 3, None).is_err());
    }
}
