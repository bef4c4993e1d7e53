//! A [`HeteroGraph`] with its node features, as tensors the network runs on.

use candle_core::Tensor;
use ndarray::ArrayView2;
use spahgc_bank::{Neighbour, ReferenceBank};
use spahgc_graph::{GraphParams, HeteroGraph, build_graph, build_graph_from_hits};

use crate::ModelError;
use crate::nn::{Edges, to_tensor};

/// The four edge sets of a graph, ready for message passing.
#[derive(Debug, Clone)]
pub(crate) struct GraphTensors {
    pub(crate) target_edges: Edges,
    pub(crate) reference_edges: Edges,
    /// Reference → target.
    pub(crate) refer: Edges,
    /// Target → reference (the refer edges reversed).
    pub(crate) refer_back: Edges,
}

/// Refuses embeddings with NaN or infinity.
fn check_finite(embeddings: ArrayView2<f32>) -> Result<(), ModelError> {
    if embeddings.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Input("target embeddings contain NaN or infinity".into()));
    }
    Ok(())
}

/// One graph and its node features: what a forward pass takes.
#[derive(Debug, Clone)]
pub struct GraphInputs {
    pub(crate) edges: GraphTensors,
    /// Target embeddings, N × D.
    pub(crate) targets: Tensor,
    /// Reference features `[embedding ‖ normalised expression]`, M × (D + G).
    pub(crate) references: Tensor,
    graph: HeteroGraph,
}

impl GraphInputs {
    /// Builds the graph for targets at `centres` with image `embeddings` against `bank`
    /// (retrieving nothing from `exclude_section`), and gathers the node features.
    pub fn build(
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        bank: &ReferenceBank,
        exclude_section: Option<&str>,
        params: GraphParams,
    ) -> Result<Self, ModelError> {
        check_finite(embeddings)?;
        let graph = build_graph(centres, embeddings, bank, exclude_section, params)?;
        Self::with_bank_features(graph, embeddings, bank)
    }

    /// As [`GraphInputs::build`], for targets whose references were already retrieved (`hits`,
    /// one [`ReferenceBank::top_k`] result per target).
    pub fn build_from_hits(
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        hits: &[Vec<Neighbour>],
        bank: &ReferenceBank,
        params: GraphParams,
    ) -> Result<Self, ModelError> {
        check_finite(embeddings)?;
        let graph = build_graph_from_hits(centres, hits, bank, params)?;
        Self::with_bank_features(graph, embeddings, bank)
    }

    fn with_bank_features(
        graph: HeteroGraph,
        embeddings: ArrayView2<f32>,
        bank: &ReferenceBank,
    ) -> Result<Self, ModelError> {
        let references = graph.reference_features(bank);
        Self::from_parts(graph, embeddings, references.view())
    }

    /// Wraps an already built graph with its target embeddings (N × D) and reference features
    /// (M × (D + G)).
    pub fn from_parts(
        graph: HeteroGraph,
        embeddings: ArrayView2<f32>,
        references: ArrayView2<f32>,
    ) -> Result<Self, ModelError> {
        let (n, m) = (graph.n_targets, graph.reference_rows.len());
        if embeddings.nrows() != n || references.nrows() != m {
            return Err(ModelError::Input(format!(
                "graph has {n} targets and {m} references, features have {} and {} rows",
                embeddings.nrows(),
                references.nrows()
            )));
        }
        let edges = GraphTensors {
            target_edges: Edges::new(&graph.target_edges, n)?,
            reference_edges: Edges::new(&graph.reference_edges, m)?,
            refer: Edges::new(&graph.refer_edges, n)?,
            refer_back: Edges::reversed(&graph.refer_edges, m)?,
        };
        Ok(Self { edges, targets: to_tensor(embeddings)?, references: to_tensor(references)?, graph })
    }

    /// The graph itself.
    pub fn graph(&self) -> &HeteroGraph {
        &self.graph
    }

    /// Target embedding width D.
    pub fn embedding_dim(&self) -> usize {
        self.targets.dims()[1]
    }

    /// Reference feature width D + G.
    pub fn reference_width(&self) -> usize {
        self.references.dims()[1]
    }
}
