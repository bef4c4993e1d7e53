//! `spahgc bench retrieval`: exact against approximate top-k on a synthetic bank of clustered
//! unit vectors — time per batch of queries, recall, build time, index size and peak memory.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spahgc_ann::{AnnIndex, AnnMeta, AnnParams, EmbeddingRows, F16Rows, F16RowsWriter, exact_top_k};

use crate::memory;
use crate::output::Output;

/// Goals for N = 1,000,000 on two cores.
const GOAL_QUERY_MS: f64 = 50.0;
const GOAL_RECALL: f64 = 0.95;
const GOAL_BUILD_S: f64 = 600.0;
const GOAL_RSS_GB: f64 = 2.0;
/// Bank spots per cluster of the synthetic bank.
const SPOTS_PER_CLUSTER: usize = 1000;
/// Length of a point's offset from its cluster centre (the centre has length 1).
const SPREAD: f32 = 0.7;

#[derive(Args)]
pub struct RetrievalBenchArgs {
    /// Spots in the synthetic bank.
    #[arg(long, default_value_t = 100_000)]
    n_ref: usize,
    /// Queries per batch.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 7)]
    k: usize,
    /// Embedding dimensions.
    #[arg(long, default_value_t = 1280)]
    dim: usize,
    /// Directory for the bank's f16 rows and the index, kept for reruns (rows of the same size and an
    /// index of the same build parameters are reused); default: a temporary one, removed after.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Principal components the graph is built on.
    #[arg(long, default_value_t = AnnParams::default().components)]
    components: usize,
    /// Graph edges per node.
    #[arg(long, default_value_t = AnnParams::default().connectivity)]
    connectivity: usize,
    /// Candidate list while inserting.
    #[arg(long, default_value_t = AnnParams::default().expansion_add)]
    expansion_add: usize,
    /// Candidate list while searching.
    #[arg(long, default_value_t = AnnParams::default().expansion_search)]
    expansion_search: usize,
    /// Candidates ranked exactly per query.
    #[arg(long, default_value_t = AnnParams::default().candidates)]
    candidates: usize,
}

/// Points of the synthetic bank: cluster centres uniform on the sphere; each point its centre
/// plus an offset of length about [`SPREAD`] whose variance falls off as 1/i over the
/// dimensions (as image-embedding spectra do), normalised to unit length.
struct Clusters {
    centres: Array2<f32>,
    /// Standard deviation of the offset along each dimension.
    spread: Vec<f32>,
}

impl Clusters {
    fn new(count: usize, dim: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut centres = Array2::from_shape_fn((count, dim), |_| gaussian(rng));
        for mut c in centres.rows_mut() {
            let norm = c.dot(&c).sqrt();
            c /= norm;
        }
        let raw: Vec<f32> = (1..=dim).map(|i| (i as f32).powf(-0.5)).collect();
        let total = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        Self { centres, spread: raw.iter().map(|v| SPREAD * v / total).collect() }
    }

    fn point(&self, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        let centre = self.centres.row(rng.random_range(0..self.centres.nrows()));
        for ((o, c), s) in out.iter_mut().zip(centre).zip(&self.spread) {
            *o = c + s * gaussian(rng);
        }
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        out.iter_mut().for_each(|v| *v /= norm);
    }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

pub fn run(args: RetrievalBenchArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.n_ref >= args.k && args.k > 0 && args.queries > 0, "need n-ref ≥ k ≥ 1 and queries ≥ 1");
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().into());
    std::fs::create_dir_all(&dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let clusters = Clusters::new(args.n_ref.div_ceil(SPOTS_PER_CLUSTER).max(2), args.dim, &mut rng);

    // The rows depend only on N and the dimensions: a --dir from an earlier run keeps them.
    let rows_path = dir.join("bank.f16");
    let t = Instant::now();
    let rows = match F16Rows::open(&rows_path) {
        Ok(rows) if rows.shape() == (args.n_ref, args.dim) => rows,
        _ => {
            let mut writer = F16RowsWriter::create(&rows_path, args.dim)?;
            let mut row = vec![0f32; args.dim];
            for _ in 0..args.n_ref {
                clusters.point(&mut rng, &mut row);
                writer.push(&row)?;
            }
            writer.finish()?
        }
    };
    let generate_s = t.elapsed().as_secs_f64();
    let mut query_rng = ChaCha8Rng::seed_from_u64(2);
    let mut queries = Array2::zeros((args.queries, args.dim));
    for mut q in queries.rows_mut() {
        clusters.point(&mut query_rng, q.as_slice_mut().expect("a fresh array is contiguous"));
    }

    let t = Instant::now();
    let exact = exact_top_k(&rows, queries.view(), args.k);
    let exact_ms = t.elapsed().as_secs_f64() * 1e3;

    let params = AnnParams {
        components: args.components,
        connectivity: args.connectivity,
        expansion_add: args.expansion_add,
        expansion_search: args.expansion_search,
        candidates: args.candidates,
        ..Default::default()
    };
    // An index built over these rows with the same build parameters is reused.
    let index_dir = dir.join("index");
    let t = Instant::now();
    let (mut index, build_s) = match AnnIndex::open(&index_dir) {
        Ok(index) if same_build(index.meta(), &params, rows.shape()) => (index, None),
        _ => {
            let index = AnnIndex::build(&rows, params, &index_dir)?;
            (index, Some(t.elapsed().as_secs_f64()))
        }
    };
    index.set_search(args.expansion_search, args.candidates);
    // The median of a few batches: the first reads the candidates' rows from disk.
    let mut times = Vec::new();
    let mut found = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        found = index.search(&rows, queries.view(), args.k)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let ann_ms = times[times.len() / 2];
    let hits: usize =
        found.iter().zip(&exact).map(|(a, e)| a.iter().filter(|n| e.iter().any(|m| m.index == n.index)).count()).sum();
    let recall = hits as f64 / (args.queries * args.k.min(rows.shape().0)) as f64;
    let index_bytes = index.size_on_disk();
    let rss = memory::peak_resident_bytes().unwrap_or(0) as f64;
    let (anon, file) = memory::resident_anonymous_and_file_bytes().unwrap_or_default();

    let human = format!(
        "retrieval over {} spots of {} dimensions, {} queries, k = {}:\n  \
         exact          {exact_ms:9.1} ms per batch\n  \
         approximate    {ann_ms:9.1} ms per batch  ({:.1}x faster; goal < {GOAL_QUERY_MS} ms at N = 1M)\n  \
         recall@{}       {recall:9.4}               (goal ≥ {GOAL_RECALL})\n  \
         index build    {}            (goal < {GOAL_BUILD_S} s); rows ready in {generate_s:.1} s\n  \
         index size     {:9.1} MB\n  \
         peak RSS       {:9.2} GB            (goal ≤ {GOAL_RSS_GB} GB); at the end {:.2} GB heap, {:.2} GB mapped file pages",
        args.n_ref,
        args.dim,
        args.queries,
        args.k,
        exact_ms / ann_ms,
        args.k,
        build_s.map_or("reused from --dir".to_string(), |s| format!("{s:9.1} s")),
        index_bytes as f64 / 1e6,
        rss / 1e9,
        anon as f64 / 1e9,
        file as f64 / 1e9,
    );
    out.report(
        &human,
        serde_json::json!({
            "n_ref": args.n_ref, "dim": args.dim, "queries": args.queries, "k": args.k,
            "exact_ms": exact_ms, "ann_ms": ann_ms, "speedup": exact_ms / ann_ms, "recall": recall,
            "build_s": build_s, "generate_s": generate_s, "index_bytes": index_bytes, "peak_rss_bytes": rss, "rss_anon_bytes": anon, "rss_file_bytes": file,
            "params": index.meta().params,
            "goals": {"ann_ms": GOAL_QUERY_MS, "recall": GOAL_RECALL, "build_s": GOAL_BUILD_S, "peak_rss_gb": GOAL_RSS_GB},
        }),
    )
}

/// Whether `meta` describes an index of rows of `shape` built as `params` would build it.
fn same_build(meta: &AnnMeta, params: &AnnParams, shape: (usize, usize)) -> bool {
    let built = AnnParams { expansion_search: params.expansion_search, candidates: params.candidates, ..meta.params };
    (meta.rows, meta.dim) == shape && built == AnnParams { components: params.components.min(shape.1), ..*params }
}
