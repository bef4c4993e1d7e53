//! Message passing as fused host kernels with hand-written backward passes: mean aggregation and
//! segment-softmax attention over the edges arriving at each node.
//!
//! Written from tensor primitives, one attention pass gathers per-edge copies of queries, keys and
//! values, and runs a dozen elementwise operations over edges × width; here each destination
//! reads its query once and walks its incoming edges, so nothing edge-sized is materialised. The
//! backward passes recompute the softmax weights instead of storing them.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

/// Directed edges grouped by destination (compressed sparse rows): the sources of the edges
/// into destination `d` are `sources[offsets[d]..offsets[d + 1]]`, in the order given.
#[derive(Debug)]
pub(crate) struct Csr {
    offsets: Vec<usize>,
    sources: Vec<u32>,
    /// One past the largest source index: the fewest source rows the edges need.
    source_rows: usize,
}

impl Csr {
    /// Groups `(source, destination)` edges into `n_dst` destinations (a stable counting sort).
    pub(crate) fn new(edges: &[(u32, u32)], n_dst: usize) -> Self {
        let mut offsets = vec![0usize; n_dst + 1];
        for &(_, d) in edges {
            offsets[d as usize + 1] += 1;
        }
        for d in 0..n_dst {
            offsets[d + 1] += offsets[d];
        }
        let mut next = offsets.clone();
        let mut sources = vec![0u32; edges.len()];
        for &(s, d) in edges {
            sources[next[d as usize]] = s;
            next[d as usize] += 1;
        }
        let source_rows = sources.iter().max().map_or(0, |&s| s as usize + 1);
        Self { offsets, sources, source_rows }
    }

    /// Checks that `rows` source rows cover every edge's source.
    fn check_sources(&self, rows: usize) -> candle_core::Result<()> {
        if rows < self.source_rows {
            return Err(candle_core::Error::Msg(format!("edges reach source {} of {rows} rows", self.source_rows - 1)));
        }
        Ok(())
    }

    /// Checks that `rows` destination rows match the destinations.
    fn check_destinations(&self, rows: usize) -> candle_core::Result<()> {
        if rows != self.n_dst() {
            return Err(candle_core::Error::Msg(format!("{rows} destination rows for {} destinations", self.n_dst())));
        }
        Ok(())
    }

    pub(crate) fn n_dst(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(crate) fn n_edges(&self) -> usize {
        self.sources.len()
    }

    /// The number of edges into `d`.
    fn degree(&self, d: usize) -> usize {
        self.offsets[d + 1] - self.offsets[d]
    }

    /// The edge indices (positions in `sources`) and sources of the edges into `d`.
    fn incoming(&self, d: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (self.offsets[d]..self.offsets[d + 1]).map(|e| (e, self.sources[e] as usize))
    }
}

/// The f32 values of a contiguous CPU tensor.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        return Err(candle_core::Error::Msg("message passing takes f32 tensors".into()));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(candle_core::Error::Msg("message passing takes contiguous tensors".into()));
    };
    Ok(&values[start..end])
}

/// ⟨a, b⟩ over eight running sums, so that the compiler can keep them in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `out += a · x`.
fn add_scaled(out: &mut [f32], x: &[f32], a: f32) {
    out.iter_mut().zip(x).for_each(|(o, v)| *o += a * v);
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// Mean of the source rows arriving at each destination (0 where none arrive).
pub(crate) struct ScatterMean(pub(crate) Arc<Csr>);

impl CustomOp1 for ScatterMean {
    fn name(&self) -> &'static str {
        "scatter-mean"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout)?;
        let (rows, width) = layout.shape().dims2()?;
        let csr = &self.0;
        csr.check_sources(rows)?;
        let mut out = vec![0f32; csr.n_dst() * width];
        for (d, row) in out.chunks_exact_mut(width).enumerate() {
            for (_, s) in csr.incoming(d) {
                add_scaled(row, &x[s * width..(s + 1) * width], 1.0);
            }
            if csr.degree(d) > 0 {
                let scale = 1.0 / csr.degree(d) as f32;
                row.iter_mut().for_each(|o| *o *= scale);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((csr.n_dst(), width))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n_src, width) = arg.dims2()?;
        let grad = host(grad_res)?;
        let csr = &self.0;
        let mut grad_x = vec![0f32; n_src * width];
        for d in 0..csr.n_dst() {
            let scale = 1.0 / csr.degree(d).max(1) as f32;
            let g = &grad[d * width..(d + 1) * width];
            for (_, s) in csr.incoming(d) {
                add_scaled(&mut grad_x[s * width..(s + 1) * width], g, scale);
            }
        }
        Ok(Some(Tensor::from_vec(grad_x, (n_src, width), arg.device())?))
    }
}

/// Multi-head attention of destinations over their incoming edges: per head, score =
/// LeakyReLU(⟨q, k⟩ / √(head width)), softmax over the edges into each destination, optional
/// dropout multipliers on the weights, weighted sum of the values.
pub(crate) struct EdgeAttention {
    pub(crate) csr: Arc<Csr>,
    pub(crate) heads: usize,
    pub(crate) negative_slope: f32,
    /// Dropout multipliers (0 or 1/(1 − p)) per edge (in CSR order) and head; `None`: no dropout.
    pub(crate) keep: Option<Vec<f32>>,
}

/// One destination's softmax over its incoming edges for one head.
struct Softmax {
    /// Weights before dropout, one per incoming edge.
    alpha: Vec<f32>,
    /// Whether each raw score was positive (LeakyReLU's slope for the backward pass).
    positive: Vec<bool>,
}

impl EdgeAttention {
    fn head_width(&self, width: usize) -> usize {
        width / self.heads
    }

    fn keep(&self, edge: usize, head: usize) -> f32 {
        self.keep.as_ref().map_or(1.0, |k| k[edge * self.heads + head])
    }

    /// The softmax of destination `d`, head `h`, into `sm` (reused between calls).
    fn softmax(&self, q: &[f32], k: &[f32], width: usize, d: usize, h: usize, sm: &mut Softmax) {
        let hw = self.head_width(width);
        let scale = 1.0 / (hw as f32).sqrt();
        let range = h * hw..(h + 1) * hw;
        let query = &q[d * width..][range.clone()];
        sm.alpha.clear();
        sm.positive.clear();
        for (_, s) in self.csr.incoming(d) {
            let key = &k[s * width..][range.clone()];
            let raw = dot(query, key) * scale;
            sm.positive.push(raw > 0.0);
            sm.alpha.push(if raw > 0.0 { raw } else { raw * self.negative_slope });
        }
        let max = sm.alpha.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0;
        for a in &mut sm.alpha {
            *a = (*a - max).exp();
            total += *a;
        }
        sm.alpha.iter_mut().for_each(|a| *a /= total);
    }
}

impl CustomOp3 for EdgeAttention {
    fn name(&self) -> &'static str {
        "edge-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (contiguous(sq, lq)?, contiguous(sk, lk)?, contiguous(sv, lv)?);
        let (rows, width) = lq.shape().dims2()?;
        let csr = &self.csr;
        csr.check_destinations(rows)?;
        let (key_rows, key_width) = lk.shape().dims2()?;
        if lv.shape().dims2()? != (key_rows, key_width) || key_width != width || !width.is_multiple_of(self.heads) {
            return Err(candle_core::Error::Msg(format!(
                "attention over {} heads: queries {:?}, keys {:?}, values {:?}",
                self.heads,
                lq.dims(),
                lk.dims(),
                lv.dims()
            )));
        }
        csr.check_sources(key_rows)?;
        let hw = self.head_width(width);
        let mut out = vec![0f32; csr.n_dst() * width];
        let mut sm = Softmax { alpha: Vec::new(), positive: Vec::new() };
        for d in 0..csr.n_dst() {
            for h in 0..self.heads {
                self.softmax(q, k, width, d, h, &mut sm);
                let range = h * hw..(h + 1) * hw;
                let row = &mut out[d * width..][range.clone()];
                for ((e, s), alpha) in csr.incoming(d).zip(&sm.alpha) {
                    let weight = alpha * self.keep(e, h);
                    add_scaled(row, &v[s * width..][range.clone()], weight);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((csr.n_dst(), width))))
    }

    fn bwd(
        &self,
        q_t: &Tensor,
        k_t: &Tensor,
        v_t: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v, grad) = (host(q_t)?, host(k_t)?, host(v_t)?, host(grad_res)?);
        let (n_dst, width) = q_t.dims2()?;
        let n_src = k_t.dims()[0];
        let hw = self.head_width(width);
        let scale = 1.0 / (hw as f32).sqrt();
        let (mut gq, mut gk, mut gv) =
            (vec![0f32; n_dst * width], vec![0f32; n_src * width], vec![0f32; n_src * width]);
        let mut sm = Softmax { alpha: Vec::new(), positive: Vec::new() };
        let mut grad_alpha = Vec::new();
        for d in 0..n_dst {
            for h in 0..self.heads {
                self.softmax(&q, &k, width, d, h, &mut sm);
                let range = h * hw..(h + 1) * hw;
                let g = &grad[d * width..][range.clone()];
                // Through the weighted sum: values get weight × g, weights get ⟨g, v⟩.
                grad_alpha.clear();
                for ((e, s), alpha) in self.csr.incoming(d).zip(&sm.alpha) {
                    let keep = self.keep(e, h);
                    let value = &v[s * width..][range.clone()];
                    add_scaled(&mut gv[s * width..][range.clone()], g, alpha * keep);
                    grad_alpha.push(keep * dot(value, g));
                }
                // Through the softmax and LeakyReLU to the raw scores, then to queries and keys.
                let mean: f32 = sm.alpha.iter().zip(&grad_alpha).map(|(a, g)| a * g).sum();
                for (i, (_, s)) in self.csr.incoming(d).enumerate() {
                    let slope = if sm.positive[i] { 1.0 } else { self.negative_slope };
                    let g_raw = sm.alpha[i] * (grad_alpha[i] - mean) * slope * scale;
                    let key = &k[s * width..][range.clone()];
                    add_scaled(&mut gq[d * width..][range.clone()], key, g_raw);
                    let query = &q[d * width..][range.clone()];
                    add_scaled(&mut gk[s * width..][range.clone()], query, g_raw);
                }
            }
        }
        let device = q_t.device();
        Ok((
            Some(Tensor::from_vec(gq, (n_dst, width), device)?),
            Some(Tensor::from_vec(gk, (n_src, width), device)?),
            Some(Tensor::from_vec(gv, (n_src, width), device)?),
        ))
    }
}
