//! Exact top-k by cosine over rows read a block at a time: the ground truth an approximate
//! index is measured against, in bounded memory whatever the number of rows.

use ndarray::{ArrayView2, Axis};
use rayon::prelude::*;
use spahgc_bank::{Neighbour, best_k, inverse_norm};

use crate::EmbeddingRows;

/// Rows scored per block.
const BLOCK_ROWS: usize = 8192;

/// The `k` rows most similar by cosine to each query, best first (ties: lower row first).
pub fn exact_top_k(rows: &dyn EmbeddingRows, queries: ArrayView2<f32>, k: usize) -> Vec<Vec<Neighbour>> {
    let n = rows.shape().0;
    let query_inverse: Vec<f32> = queries.rows().into_iter().map(|q| inverse_norm(q.dot(&q).sqrt())).collect();
    let starts: Vec<usize> = (0..n).step_by(BLOCK_ROWS).collect();
    let empty = || vec![Vec::new(); queries.nrows()];
    starts
        .par_iter()
        .fold(empty, |mut best: Vec<Vec<Neighbour>>, &start| {
            let block = rows.block(start, (start + BLOCK_ROWS).min(n));
            let inverse: Vec<f32> = block.rows().into_iter().map(|r| inverse_norm(r.dot(&r).sqrt())).collect();
            let dots = queries.dot(&block.t());
            for ((kept, scores), &q_inv) in best.iter_mut().zip(dots.axis_iter(Axis(0))).zip(&query_inverse) {
                let scored = scores
                    .iter()
                    .zip(&inverse)
                    .enumerate()
                    .map(|(i, (&dot, &r_inv))| Neighbour { index: start + i, similarity: dot * q_inv * r_inv });
                kept.extend(scored);
                *kept = best_k(std::mem::take(kept), k);
            }
            best
        })
        .reduce(empty, |a, b| {
            a.into_iter()
                .zip(b)
                .map(|(mut x, y)| {
                    best_k(
                        {
                            x.extend(y);
                            x
                        },
                        k,
                    )
                })
                .collect()
        })
}
