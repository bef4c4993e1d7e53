//! The approximate index: files, build, open and search.
//!
//! ```text
//! <dir>/ann.json         AnnMeta: format version, rows, dimensions, parameters, scale
//! <dir>/projection.f32   mean (dim) then basis (dim × components), f32 LE
//! <dir>/graph.usearch    the HNSW graph over the projected rows, 8-bit (usearch's format)
//! ```

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use spahgc_bank::{ApproximateIndex, BankError, Neighbour, best_k, inverse_norm};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::projection::Projection;
use crate::{AnnError, EmbeddingRows};

/// The index format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const META_FILE: &str = "ann.json";
const PROJECTION_FILE: &str = "projection.f32";
const GRAPH_FILE: &str = "graph.usearch";
/// Rows projected and added per step of a build.
const BUILD_BLOCK: usize = 4096;
/// Queries projected and searched together, in parallel with other chunks.
const QUERY_CHUNK: usize = 64;

/// How an index is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnnParams {
    /// Principal components the graph is built on (at most the embedding dimension).
    pub components: usize,
    /// Graph edges per node (HNSW's M).
    pub connectivity: usize,
    /// Candidate list while inserting (HNSW's efConstruction).
    pub expansion_add: usize,
    /// Candidate list while searching (HNSW's ef).
    pub expansion_search: usize,
    /// Candidates per query ranked exactly on the full embeddings (at least k).
    pub candidates: usize,
    /// Rows sampled to fit the projection.
    pub sample: usize,
    /// Seeds the sample and the projection; with the rows inserted in order, the same seed
    /// builds the same index.
    pub seed: u64,
}

impl Default for AnnParams {
    fn default() -> Self {
        Self {
            components: 128,
            connectivity: 24,
            expansion_add: 96,
            expansion_search: 64,
            candidates: 40,
            sample: 20_000,
            seed: 0x5BA_46C,
        }
    }
}

/// What `ann.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnMeta {
    pub format_version: u32,
    /// Rows and embedding dimensions indexed.
    pub rows: usize,
    pub dim: usize,
    pub params: AnnParams,
    /// Divides projected values so the sample's lie in [-1, 1] (8-bit quantisation).
    pub scale: f32,
}

/// An opened approximate index; its graph is memory-mapped, not loaded.
pub struct AnnIndex {
    dir: PathBuf,
    meta: AnnMeta,
    projection: Projection,
    graph: Index,
}

impl AnnIndex {
    /// Builds the index of `rows` into the directory `dir` (replaced whole, atomically) and
    /// opens it. Rows are read a block at a time: only the sample and the 8-bit graph are held.
    pub fn build(rows: &dyn EmbeddingRows, params: AnnParams, dir: &Path) -> Result<Self, AnnError> {
        let (n, dim) = rows.shape();
        let components = params.components.min(dim);
        if n == 0 || components == 0 || params.connectivity < 2 || params.sample == 0 {
            return Err(AnnError::Input(format!(
                "an index needs rows ({n}), components ({components}), connectivity of 2 or more ({}) and a \
                 sample ({})",
                params.connectivity, params.sample
            )));
        }
        let params = AnnParams { components, ..params };
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut chosen = rand::seq::index::sample(&mut rng, n, params.sample.min(n)).into_vec();
        chosen.sort_unstable();
        let mut sample = Array2::zeros((chosen.len(), dim));
        for (&i, mut row) in chosen.iter().zip(sample.rows_mut()) {
            rows.row_into(i, row.as_slice_mut().expect("a fresh array is contiguous"));
        }
        let projection = Projection::fit(sample.view(), components, params.seed);
        drop(sample);

        let graph = Index::new(&graph_options(&params)).map_err(graph_error)?;
        graph.reserve(n).map_err(graph_error)?;
        for start in (0..n).step_by(BUILD_BLOCK) {
            let end = (start + BUILD_BLOCK).min(n);
            let projected = projection.apply(rows.block(start, end).view());
            for (i, row) in (start..end).zip(projected.rows()) {
                graph.add(i as u64, row.as_slice().expect("a fresh array is contiguous")).map_err(graph_error)?;
            }
        }
        let meta = AnnMeta { format_version: FORMAT_VERSION, rows: n, dim, params, scale: projection.scale };
        spahgc_core::write_dir_atomically(dir, |staged| -> std::io::Result<()> {
            let graph_path = staged.join(GRAPH_FILE);
            let path = graph_path.to_str().ok_or_else(|| std::io::Error::other("the path is not UTF-8"))?;
            graph.save(path).map_err(|e| std::io::Error::other(e.to_string()))?;
            let values = projection.mean.iter().chain(projection.basis.iter());
            std::fs::write(staged.join(PROJECTION_FILE), values.flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
            std::fs::write(staged.join(META_FILE), serde_json::to_vec_pretty(&meta)?)
        })
        .map_err(|error| AnnError::Io { path: dir.into(), error })?;
        drop(graph);
        Self::open(dir)
    }

    /// Opens the index in `dir`, checking each file against `ann.json`.
    pub fn open(dir: &Path) -> Result<Self, AnnError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|error| AnnError::Io { path, error })
        };
        let bad = |file: &str, problem: String| AnnError::Format { path: dir.join(file), problem };
        let meta: AnnMeta = serde_json::from_slice(&read(META_FILE)?).map_err(|e| bad(META_FILE, e.to_string()))?;
        if meta.format_version != FORMAT_VERSION {
            let found = meta.format_version;
            return Err(bad(META_FILE, format!("index format {found}; this build reads {FORMAT_VERSION}")));
        }
        let (dim, components) = (meta.dim, meta.params.components);
        let bytes = read(PROJECTION_FILE)?;
        if Some(bytes.len()) != dim.checked_mul(components + 1).and_then(|v| v.checked_mul(4)) {
            let problem = format!("{} bytes, not a projection of {dim} dimensions onto {components}", bytes.len());
            return Err(bad(PROJECTION_FILE, problem));
        }
        let values: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        let projection = Projection {
            mean: Array1::from(values[..dim].to_vec()),
            basis: Array2::from_shape_vec((dim, components), values[dim..].to_vec()).expect("length checked"),
            scale: meta.scale,
        };
        let graph_path = dir.join(GRAPH_FILE);
        let path = graph_path.to_str().ok_or_else(|| bad(GRAPH_FILE, "the path is not UTF-8".into()))?;
        // The header is read first: usearch would reinterpret a file of another kind silently.
        let header = Index::metadata(path).map_err(|e| bad(GRAPH_FILE, e.to_string()))?;
        let graph = Index::restore_view(path).map_err(|e| bad(GRAPH_FILE, e.to_string()))?;
        let shape = (graph.size(), graph.dimensions(), graph.scalar_kind());
        if shape != (meta.rows, components, ScalarKind::I8) || header.dimensions != components as u64 {
            let (size, dims, _) = shape;
            let problem = format!("{size} rows of {dims} 8-bit values; {META_FILE} says {} of {components}", meta.rows);
            return Err(bad(GRAPH_FILE, problem));
        }
        graph.change_expansion_search(meta.params.expansion_search);
        Ok(Self { dir: dir.into(), meta, projection, graph })
    }

    /// Changes how searches run (HNSW's ef, and the candidates ranked exactly per query); the
    /// files are not touched.
    pub fn set_search(&mut self, expansion_search: usize, candidates: usize) {
        self.graph.change_expansion_search(expansion_search);
        self.meta.params.expansion_search = expansion_search;
        self.meta.params.candidates = candidates;
    }

    pub fn meta(&self) -> &AnnMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the index's files.
    pub fn size_on_disk(&self) -> u64 {
        [META_FILE, PROJECTION_FILE, GRAPH_FILE]
            .iter()
            .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Up to `count` rows for each query (queries × dim), nearest first by the graph.
    pub fn candidates(&self, queries: ArrayView2<f32>, count: usize) -> Result<Vec<Vec<usize>>, AnnError> {
        if queries.ncols() != self.meta.dim {
            return Err(AnnError::Input(format!(
                "queries have {} dimensions, the index at {} has {}",
                queries.ncols(),
                self.dir.display(),
                self.meta.dim
            )));
        }
        let chunks: Vec<_> = queries.axis_chunks_iter(Axis(0), QUERY_CHUNK).collect();
        let found: Result<Vec<Vec<Vec<usize>>>, AnnError> = chunks
            .into_par_iter()
            .map(|chunk| {
                let projected = self.projection.apply(chunk);
                projected
                    .rows()
                    .into_iter()
                    .map(|q| {
                        let query = q.as_slice().expect("a fresh array is contiguous");
                        let found = self.graph.search(query, count).map_err(graph_error)?;
                        Ok(found.keys.iter().map(|&k| k as usize).collect())
                    })
                    .collect()
            })
            .collect();
        Ok(found?.into_iter().flatten().collect())
    }

    /// The `k` rows most similar by cosine to each query: the graph's candidates ranked on
    /// `rows`, the embeddings the index was built from.
    pub fn search(
        &self,
        rows: &dyn EmbeddingRows,
        queries: ArrayView2<f32>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbour>>, AnnError> {
        if rows.shape() != (self.meta.rows, self.meta.dim) {
            return Err(AnnError::Input(format!(
                "the index at {} covers {} rows of {} dimensions, the embeddings given hold {:?}",
                self.dir.display(),
                self.meta.rows,
                self.meta.dim,
                rows.shape()
            )));
        }
        let candidates = self.candidates(queries, self.meta.params.candidates.max(k))?;
        let ranked = queries.rows().into_iter().zip(candidates).collect::<Vec<_>>();
        Ok(ranked
            .into_par_iter()
            .map(|(q, found)| {
                let q_inv = inverse_norm(q.dot(&q).sqrt());
                let mut row = Array1::zeros(self.meta.dim);
                let scored = found
                    .into_iter()
                    .map(|i| {
                        rows.row_into(i, row.as_slice_mut().expect("a fresh array is contiguous"));
                        let similarity = row.dot(&q) * q_inv * inverse_norm(row.dot(&row).sqrt());
                        Neighbour { index: i, similarity }
                    })
                    .collect();
                best_k(scored, k)
            })
            .collect())
    }
}

impl ApproximateIndex for AnnIndex {
    fn shape(&self) -> (usize, usize) {
        (self.meta.rows, self.meta.dim)
    }

    fn candidates(&self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<Vec<usize>>, BankError> {
        Ok(AnnIndex::candidates(self, queries, self.meta.params.candidates.max(k))?)
    }
}

fn graph_options(params: &AnnParams) -> IndexOptions {
    IndexOptions {
        dimensions: params.components,
        metric: MetricKind::L2sq,
        quantization: ScalarKind::I8,
        connectivity: params.connectivity,
        expansion_add: params.expansion_add,
        expansion_search: params.expansion_search,
        multi: false,
    }
}

fn graph_error(e: impl std::fmt::Display) -> AnnError {
    AnnError::Graph(e.to_string())
}
