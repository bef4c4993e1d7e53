//! One fold of the protocol, and the report that gathers the folds.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{Array2, ArrayView2, Axis, concatenate};
use serde::Serialize;
use spahgc_ann::AnnParams;
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_core::{NormStats, Normalisation, mean_gene_pcc, panel_expression, rmse};
use spahgc_model::{EpochReport, GraphInputs, ModelSettings, fit};

use crate::EvalError;
use crate::baselines::{MeanBaseline, Mlp, PcaRidge, knn_exemplar};

/// Spots retrieved by the kNN exemplar baseline (SpaHGC's retrieval depth).
const KNN_K: usize = 7;
/// Principal components kept by the ridge baseline.
const PCA_COMPONENTS: usize = 256;
/// Genes in the "most variable genes" score.
const HVG: usize = 50;

/// The scores of one method on one test section.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Mean per-gene Pearson r over the genes that vary in the test section.
    pub pcc: f64,
    /// Mean per-gene Pearson r over the test section's 50 most variable genes.
    pub pcc_hvg50: f64,
    pub rmse: f64,
    /// Genes constant in the test section, left out of `pcc`.
    pub excluded_genes: usize,
}

/// Scores a prediction against the truth (spots × genes, normalised targets).
pub fn score(predicted: ArrayView2<f32>, truth: ArrayView2<f32>) -> Result<Scores, EvalError> {
    let all =
        mean_gene_pcc(predicted, truth).ok_or_else(|| EvalError::Input("no gene varies in the test section".into()))?;
    let variance = truth.var_axis(Axis(0), 0.0);
    let mut order: Vec<usize> = (0..truth.ncols()).collect();
    order.sort_by(|&a, &b| variance[b].total_cmp(&variance[a]).then(a.cmp(&b)));
    order.truncate(HVG);
    let hvg = mean_gene_pcc(predicted.select(Axis(1), &order).view(), truth.select(Axis(1), &order).view())
        .map_or(0.0, |p| p.mean);
    Ok(Scores { pcc: all.mean, pcc_hvg50: hvg, rmse: rmse(predicted, truth), excluded_genes: all.excluded })
}

/// The scores of every method on one test section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldReport {
    pub test: String,
    pub methods: BTreeMap<String, Scores>,
}

/// Every fold, and each method's scores averaged over the folds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub folds: Vec<FoldReport>,
    pub mean: BTreeMap<String, Scores>,
}

impl Report {
    /// Gathers folds and averages each method over them.
    pub fn new(folds: Vec<FoldReport>) -> Self {
        let mut mean: BTreeMap<String, Scores> = BTreeMap::new();
        for fold in &folds {
            for (method, s) in &fold.methods {
                let m = mean.entry(method.clone()).or_insert(Scores {
                    pcc: 0.0,
                    pcc_hvg50: 0.0,
                    rmse: 0.0,
                    excluded_genes: 0,
                });
                let n = folds.len() as f64;
                m.pcc += s.pcc / n;
                m.pcc_hvg50 += s.pcc_hvg50 / n;
                m.rmse += s.rmse / n;
                m.excluded_genes += s.excluded_genes;
            }
        }
        Self { folds, mean }
    }
}

/// What every fold of an evaluation shares.
pub struct Protocol<'a> {
    /// The gene panel, the columns scored.
    pub genes: &'a [String],
    /// How expression becomes targets (statistics from each fold's training sections).
    pub method: Normalisation,
    /// SpaHGC's architecture and training.
    pub settings: &'a ModelSettings,
    /// Retrieve through an approximate index of these parameters, built beside each fold's bank
    /// (training, test and the kNN baseline), to compare with exact retrieval.
    pub approximate: Option<AnnParams>,
}

/// Trains SpaHGC and every baseline on all `sections` (each with its spots' embeddings) but
/// `test`, and scores them on `test`. `progress` follows SpaHGC's training. The fold's reference
/// bank is written to `bank_dir`.
pub fn evaluate_fold(
    sections: &[BankSection],
    test: &str,
    protocol: &Protocol,
    bank_dir: &Path,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<FoldReport, EvalError> {
    let Protocol { genes, method, settings, approximate } = *protocol;
    let (tests, train): (Vec<&BankSection>, Vec<&BankSection>) = sections.iter().partition(|s| s.section.name == test);
    let [test_section] = tests[..] else {
        return Err(EvalError::Input(format!("test section {test} is not among the sections")));
    };
    if train.is_empty() {
        return Err(EvalError::Input("leave-one-out needs at least two sections".into()));
    }
    let train_expr = train.iter().map(|s| panel_expression(s.section, genes)).collect::<Result<Vec<_>, _>>()?;
    let norm = NormStats::fit(method, genes, &train_expr)?;
    let mut train_targets = Vec::with_capacity(train.len());
    for mut e in train_expr {
        norm.apply(&mut e)?;
        train_targets.push(e);
    }
    let mut truth = panel_expression(test_section.section, genes)?;
    norm.apply(&mut truth)?;
    let stack = |parts: Vec<ArrayView2<f32>>| -> Result<Array2<f32>, EvalError> {
        concatenate(Axis(0), &parts).map_err(|e| EvalError::Input(e.to_string()))
    };
    let targets = stack(train_targets.iter().map(|t| t.view()).collect())?;
    let features = stack(train.iter().map(|s| s.embeddings).collect())?;
    let query = test_section.embeddings;

    let bank_path = bank_dir.join(format!("fold-{test}.spb"));
    let inputs: Vec<BankSection> =
        train.iter().map(|s| BankSection { section: s.section, embeddings: s.embeddings }).collect();
    build_bank(&bank_path, &inputs, genes, method, "")?;
    let mut bank = ReferenceBank::open(&bank_path)?;
    if let Some(params) = approximate {
        spahgc_ann::build_beside(&bank, params)?;
        spahgc_ann::attach_beside(&mut bank, Some(0))?;
    }

    let mut methods = BTreeMap::new();
    let mean = MeanBaseline::fit(targets.view())?.predict(query.nrows());
    methods.insert("mean".to_string(), score(mean.view(), truth.view())?);
    methods.insert("knn".to_string(), score(knn_exemplar(&bank, query, KNN_K)?.view(), truth.view())?);
    let ridge = PcaRidge::fit(features.view(), targets.view(), PCA_COMPONENTS)?;
    methods.insert("ridge".to_string(), score(ridge.predict(query).view(), truth.view())?);
    let mlp = Mlp::fit(features.view(), targets.view(), settings.training.seed)?;
    methods.insert("mlp".to_string(), score(mlp.predict(query)?.view(), truth.view())?);

    let model = fit(&inputs, &bank, settings, progress)?;
    let graph = GraphInputs::build(&test_section.section.centres(), query, &bank, None, settings.graph)?;
    methods.insert("spahgc".to_string(), score(model.predict(&graph)?.view(), truth.view())?);
    Ok(FoldReport { test: test.into(), methods })
}
