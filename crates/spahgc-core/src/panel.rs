//! Gene panels: the genes a model predicts, and how they are chosen.
//!
//! A panel file is plain text: one gene per line, `#` starts a comment line. `write` records how
//! the panel was chosen in its comment header.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use ndarray::Axis;

use crate::{CoreError, Section, log_cp10k, write_atomically};

/// The highly-variable-gene criterion used by [`GenePanel::select_hvg`].
///
/// Candidates are the genes measured in every section. For each section, expression is
/// normalised with [`log_cp10k`] and each gene's variance across that section's spots is taken
/// (population variance); a gene's score is the mean of its per-section variances, so genes that
/// vary *within* sections rank high while genes that only differ *between* sections (batch
/// effects, depth) do not. Genes are ranked by score, descending, ties broken by name, and the
/// first `n` are kept. The result depends only on the given sections, never on their order.
#[derive(Debug, Clone, Copy)]
pub struct HvgCriterion;

impl HvgCriterion {
    /// One-line description written into panel files.
    pub const DESCRIPTION: &'static str = "mean over sections of the within-section variance of ln(1 + CP10k), genes common to all sections, ties by name";
}

/// An ordered list of gene names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenePanel {
    pub genes: Vec<String>,
}

impl GenePanel {
    /// Reads a panel file; blank lines and `#` comments are skipped, duplicates are an error.
    pub fn read(path: &Path) -> Result<Self, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| CoreError::PanelIo { path: path.into(), source })?;
        let mut seen = HashSet::new();
        let mut genes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let gene = line.trim();
            if gene.is_empty() || gene.starts_with('#') {
                continue;
            }
            let problem = if gene.contains(char::is_whitespace) {
                Some(format!("expected one gene name, found {gene:?}"))
            } else if !seen.insert(gene.to_string()) {
                Some(format!("gene {gene} is listed twice"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CoreError::PanelFormat { path: path.into(), line: i + 1, problem });
            }
            genes.push(gene.to_string());
        }
        if genes.is_empty() {
            return Err(CoreError::PanelFormat {
                path: path.into(),
                line: text.lines().count(),
                problem: "the panel lists no gene".into(),
            });
        }
        Ok(Self { genes })
    }

    /// Writes the panel atomically (temporary file, then rename) with `header` as comments.
    pub fn write(&self, path: &Path, header: &[String]) -> Result<(), CoreError> {
        write_atomically(path, |out| {
            for line in header {
                writeln!(out, "# {line}")?;
            }
            for gene in &self.genes {
                writeln!(out, "{gene}")?;
            }
            Ok(())
        })
        .map_err(|source| CoreError::PanelIo { path: path.into(), source })
    }

    /// Picks the `n` most variable genes of `sections` by [`HvgCriterion`].
    pub fn select_hvg(sections: &[Section], n: usize) -> Result<Self, CoreError> {
        let Some(first) = sections.first() else {
            return Err(CoreError::Panel("no section given".into()));
        };
        let mut common: BTreeSet<&String> = first.counts.genes().iter().collect();
        for s in &sections[1..] {
            let genes: HashSet<&String> = s.counts.genes().iter().collect();
            common.retain(|g| genes.contains(g));
        }
        let candidates: Vec<String> = common.into_iter().cloned().collect();
        if candidates.len() < n {
            return Err(CoreError::Panel(format!(
                "asked for {n} genes but the sections share only {}",
                candidates.len()
            )));
        }
        let mut score = vec![0f64; candidates.len()];
        for s in sections {
            let (expr, _) = log_cp10k(s, &candidates);
            let var = expr.mapv(f64::from).var_axis(Axis(0), 0.0);
            for (acc, v) in score.iter_mut().zip(var) {
                *acc += v / sections.len() as f64;
            }
        }
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(candidates[a].cmp(&candidates[b])));
        Ok(Self { genes: order[..n].iter().map(|&i| candidates[i].clone()).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CountMatrix, Spot};

    fn section(name: &str, genes: &[&str], rows: &[&[f32]]) -> Section {
        let mut indptr = vec![0];
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for row in rows {
            for (g, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(g as u32);
                    values.push(v);
                }
            }
            indptr.push(indices.len());
        }
        let genes = genes.iter().map(|g| g.to_string()).collect();
        let spots = (0..rows.len()).map(|i| Spot { id: i.to_string(), x: 0.0, y: 0.0 }).collect();
        Section {
            name: name.into(),
            spots,
            counts: CountMatrix::from_csr(genes, indptr, indices, values).unwrap(),
            image: None,
            microns_per_pixel: None,
            spot_diameter_px: None,
        }
    }

    #[test]
    fn hvg_keeps_common_genes_that_vary_within_sections() {
        // V varies within both sections; F is flat; X exists in one section only.
        let a = section("a", &["F", "V", "X"], &[&[10.0, 1.0, 50.0], &[10.0, 30.0, 0.0]]);
        let b = section("b", &["V", "F"], &[&[40.0, 10.0], &[2.0, 10.0]]);
        let panel = GenePanel::select_hvg(&[a.clone(), b.clone()], 1).unwrap();
        assert_eq!(panel.genes, vec!["V"]);
        let forward = GenePanel::select_hvg(&[a.clone(), b.clone()], 2).unwrap();
        assert_eq!(forward.genes, vec!["V", "F"]);
        assert_eq!(GenePanel::select_hvg(&[b, a.clone()], 2).unwrap(), forward);
        assert!(GenePanel::select_hvg(&[a], 4).is_err());
    }

    #[test]
    fn panel_file_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panel.txt");
        let panel = GenePanel { genes: vec!["ERBB2".into(), "GRB7".into()] };
        panel.write(&path, &["test".into()]).unwrap();
        assert_eq!(GenePanel::read(&path).unwrap(), panel);
        std::fs::write(&path, "A\nB\nA\n").unwrap();
        let err = GenePanel::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("twice"), "{err}");
    }
}
