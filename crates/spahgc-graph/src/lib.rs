//! The heterogeneous graph SpaHGC runs on, for one target section or viewer region.
//!
//! - **Target nodes**: the spots to predict; their feature is the image embedding.
//! - **Target–target edges**: spatial neighbours — each spot's nearest spots within
//!   `radius_factor` × the spot pitch, at most `max_neighbours`, no self loops, and every edge in
//!   both directions.
//! - **Reference nodes**: for each target, the `top_k` most similar bank spots by cosine
//!   similarity, never from the target's own section; a bank spot retrieved by several targets is
//!   one node. Its feature is its embedding followed by its normalised expression.
//! - **Refer edges**: from each retrieved reference node to every target that retrieved it.
//! - **Reference–reference edges**: each reference node receives from its `reference_knn`
//!   nearest reference nodes (Euclidean distance on the reference feature), no self loops.
//!
//! Edges are `(source, destination)` pairs: messages flow from source to destination. Every
//! ordering and tie is broken by index, so a graph is a pure function of its inputs.

mod build;
mod edges;

pub use build::{GraphParams, HeteroGraph, build_graph, build_graph_from_hits};
pub use edges::{knn_edges, knn_edges_by, spatial_edges, spot_pitch};

/// Errors raised while building a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The request cannot form a graph (too few spots, mismatched dimensions, bad parameters).
    #[error("graph: {0}")]
    Input(String),
    #[error(transparent)]
    Bank(#[from] spahgc_bank::BankError),
}
