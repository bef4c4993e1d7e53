//! Assembling the graph for one set of target spots against a reference bank.

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use spahgc_bank::{Neighbour, ReferenceBank};

use crate::{GraphError, knn_edges, knn_edges_by, spatial_edges, spot_pitch};

/// The graph rules' parameters (SpaHGC's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphParams {
    /// Target–target radius as a multiple of the spot pitch.
    pub radius_factor: f64,
    /// Neighbours each target picks within the radius.
    pub max_neighbours: usize,
    /// Reference spots retrieved per target.
    pub top_k: usize,
    /// Reference–reference neighbours per reference node.
    pub reference_knn: usize,
}

impl Default for GraphParams {
    fn default() -> Self {
        Self { radius_factor: 1.5, max_neighbours: 5, top_k: 7, reference_knn: 3 }
    }
}

impl GraphParams {
    /// Refuses counts of zero and a radius that is not a positive number.
    fn check(&self) -> Result<(), GraphError> {
        if self.top_k == 0 || self.max_neighbours == 0 || !(self.radius_factor.is_finite() && self.radius_factor > 0.0)
        {
            return Err(GraphError::Input(format!("parameters must be positive, got {self:?}")));
        }
        Ok(())
    }
}

/// A SpaHGC graph; node features stay with their owners (target embeddings with the caller,
/// reference features in the bank) and are gathered with [`HeteroGraph::reference_features`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeteroGraph {
    pub n_targets: usize,
    /// Spot pitch the radius was derived from, in the units of the target centres.
    pub spot_pitch: f64,
    /// Target → target edges.
    pub target_edges: Vec<(u32, u32)>,
    /// Bank row of each reference node, in order of first retrieval.
    pub reference_rows: Vec<usize>,
    /// Reference node → target edges, one per retrieval.
    pub refer_edges: Vec<(u32, u32)>,
    /// Reference node → reference node edges.
    pub reference_edges: Vec<(u32, u32)>,
}

impl HeteroGraph {
    /// Reference node features: bank embedding followed by normalised expression, nodes × (D + G).
    pub fn reference_features(&self, bank: &ReferenceBank) -> Array2<f32> {
        bank.features(&self.reference_rows)
    }
}

/// Builds the graph for targets at `centres` (level-0 px) with image `embeddings`, retrieving
/// references from `bank` outside the section `exclude_section`.
pub fn build_graph(
    centres: &[(f64, f64)],
    embeddings: ArrayView2<f32>,
    bank: &ReferenceBank,
    exclude_section: Option<&str>,
    params: GraphParams,
) -> Result<HeteroGraph, GraphError> {
    if embeddings.nrows() != centres.len() {
        return Err(GraphError::Input(format!("{} embeddings for {} spots", embeddings.nrows(), centres.len())));
    }
    params.check()?;
    let hits = bank.top_k(embeddings, params.top_k, exclude_section)?;
    if hits.iter().any(Vec::is_empty) {
        return Err(GraphError::Input(format!(
            "the bank has no reference spot outside section {}",
            exclude_section.unwrap_or("(none)")
        )));
    }
    build_graph_from_hits(centres, &hits, bank, params)
}

/// Builds the graph for targets at `centres` whose references were already retrieved: `hits`
/// holds each target's [`ReferenceBank::top_k`] result (best first, `params.top_k` of them).
pub fn build_graph_from_hits(
    centres: &[(f64, f64)],
    hits: &[Vec<Neighbour>],
    bank: &ReferenceBank,
    params: GraphParams,
) -> Result<HeteroGraph, GraphError> {
    let n = centres.len();
    if hits.len() != n {
        return Err(GraphError::Input(format!("retrieval results for {} targets, {n} spots", hits.len())));
    }
    params.check()?;
    let Some(pitch) = spot_pitch(centres) else {
        return Err(GraphError::Input(format!(
            "a graph needs at least two spots at distinct positions, got {n} spot(s)"
        )));
    };
    if let Some(target) = hits.iter().position(Vec::is_empty) {
        return Err(GraphError::Input(format!("target {target} has no reference spot to retrieve")));
    }
    if let Some(bad) = hits.iter().flatten().find(|hit| hit.index >= bank.len()) {
        return Err(GraphError::Input(format!("reference row {} is outside the {}-spot bank", bad.index, bank.len())));
    }
    let target_edges = spatial_edges(centres, params.radius_factor * pitch, params.max_neighbours);
    let mut node_of: HashMap<usize, u32> = HashMap::new();
    let mut reference_rows = Vec::new();
    let mut refer_edges = Vec::with_capacity(n * params.top_k);
    for (target, neighbours) in hits.iter().enumerate() {
        for hit in neighbours {
            let node = *node_of.entry(hit.index).or_insert_with(|| {
                reference_rows.push(hit.index);
                (reference_rows.len() - 1) as u32
            });
            refer_edges.push((node, target as u32));
        }
    }
    let mut graph = HeteroGraph {
        n_targets: n,
        spot_pitch: pitch,
        target_edges,
        reference_rows,
        refer_edges,
        reference_edges: Vec::new(),
    };
    let rows = &graph.reference_rows;
    graph.reference_edges = match bank.feature_distances() {
        Some(d) => knn_edges_by(rows.len(), params.reference_knn, |a, b| d[[rows[a], rows[b]]]),
        None => knn_edges(graph.reference_features(bank).view(), params.reference_knn)?,
    };
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use spahgc_bank::{BankSection, build_bank};
    use spahgc_core::{CountMatrix, Normalisation, Section, Spot};

    /// A section of `n` spots on a row of pitch 100, with random counts over genes G0..G3.
    fn section(name: &str, n: usize, rng: &mut ChaCha8Rng) -> Section {
        let genes: Vec<String> = (0..4).map(|g| format!("G{g}")).collect();
        let values: Vec<f32> = (0..n * 4).map(|_| rng.random_range(1..20) as f32).collect();
        let indptr = (0..=n).map(|i| i * 4).collect();
        let indices = (0..n * 4).map(|i| (i % 4) as u32).collect();
        Section {
            name: name.into(),
            spots: (0..n).map(|i| Spot { id: i.to_string(), x: 100.0 * i as f64, y: 0.0 }).collect(),
            counts: CountMatrix::from_csr(genes, indptr, indices, values).unwrap(),
            image: None,
            microns_per_pixel: None,
            spot_diameter_px: None,
        }
    }

    fn fixture(dir: &std::path::Path) -> (ReferenceBank, Section, Array2<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (a, b) = (section("A", 12, &mut rng), section("B", 8, &mut rng));
        let ea = Array2::from_shape_fn((12, 6), |_| rng.random_range(-1.0..1.0f32));
        let eb = Array2::from_shape_fn((8, 6), |_| rng.random_range(-1.0..1.0f32));
        let path = dir.join("bank.spb");
        let genes: Vec<String> = vec!["G0".into(), "G2".into()];
        let inputs =
            [BankSection { section: &a, embeddings: ea.view() }, BankSection { section: &b, embeddings: eb.view() }];
        build_bank(&path, &inputs, &genes, Normalisation::MinMax, "00").unwrap();
        (ReferenceBank::open(&path).unwrap(), b, eb)
    }

    #[test]
    fn a_graph_follows_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, b, eb) = fixture(dir.path());
        let centres = b.centres();
        let g = build_graph(&centres, eb.view(), &bank, Some("B"), GraphParams::default()).unwrap();
        assert_eq!((g.n_targets, g.spot_pitch), (8, 100.0));
        // A row of pitch 100 with radius 150: each spot's neighbours are the spots beside it.
        assert_eq!(g.target_edges.len(), 2 * 7);
        // 7 references per target, all from section A (bank rows 0..12), each bank spot once.
        assert_eq!(g.refer_edges.len(), 8 * 7);
        assert!(g.reference_rows.iter().all(|&r| r < 12));
        let mut unique = g.reference_rows.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), g.reference_rows.len());
        for t in 0..8u32 {
            let mut refs: Vec<u32> = g.refer_edges.iter().filter(|e| e.1 == t).map(|e| e.0).collect();
            refs.dedup();
            assert_eq!(refs.len(), 7, "target {t} retrieves 7 distinct references");
        }
        // Each reference node hears from its 3 nearest other reference nodes.
        let r = g.reference_rows.len() as u32;
        for node in 0..r {
            let from: Vec<u32> = g.reference_edges.iter().filter(|e| e.1 == node).map(|e| e.0).collect();
            assert_eq!(from.len(), 3);
            assert!(!from.contains(&node));
        }
        assert_eq!(g.reference_features(&bank).dim(), (r as usize, 6 + 2));
        // The same inputs give the same graph.
        assert_eq!(build_graph(&centres, eb.view(), &bank, Some("B"), GraphParams::default()).unwrap(), g);
    }

    #[test]
    fn impossible_graphs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (bank, _, eb) = fixture(dir.path());
        let one = build_graph(&[(0.0, 0.0)], eb.slice(ndarray::s![..1, ..]), &bank, None, GraphParams::default());
        assert!(one.unwrap_err().to_string().contains("at least two spots"));
        let wrong_dim = Array2::<f32>::zeros((2, 5));
        assert!(build_graph(&[(0.0, 0.0), (1.0, 0.0)], wrong_dim.view(), &bank, None, GraphParams::default()).is_err());
        let rows = build_graph(
            &[(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)],
            eb.slice(ndarray::s![..2, ..]),
            &bank,
            None,
            Default::default(),
        );
        assert!(rows.unwrap_err().to_string().contains("2 embeddings for 3 spots"));
    }
}
