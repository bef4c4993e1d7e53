//! `spahgc eval`: leave-one-section-out evaluation on her2st.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use indicatif::MultiProgress;
use spahgc_core::GenePanel;
use spahgc_eval::{EvalError, FoldReport, Protocol, Report, evaluate_fold};

use crate::bank::{GenesArgs, IndexKind};
use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
use crate::output::Output;
use crate::train::{ModelArgs, epoch_progress};

#[derive(Args)]
pub struct EvalArgs {
    /// The sections of the protocol.
    #[command(flatten)]
    sections: SectionsArgs,
    /// Test on this section only (train on the others); default: every section in turn.
    #[arg(long)]
    test: Option<String>,
    #[command(flatten)]
    genes: GenesArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Retrieve through an approximate index built over each fold's bank (to compare with
    /// exact retrieval, the default).
    #[arg(long, value_enum, default_value = "none")]
    index: IndexKind,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(args: EvalArgs, out: &Output) -> anyhow::Result<()> {
    let names = &args.sections.sections;
    let tests = match &args.test {
        Some(t) if names.contains(t) => vec![t.clone()],
        Some(t) => anyhow::bail!("--test {t} is not one of --sections {}", names.join(",")),
        None => names.clone(),
    };
    anyhow::ensure!(names.len() >= 2, "leave-one-section-out needs at least two sections");
    let panel = GenePanel::read(&args.genes.panel)?;
    let data = EmbeddedSections::load(&args.sections, &args.encoder, &args.cache, out)?;
    let inputs = data.views();
    let scratch = tempfile::tempdir()?;
    let settings = args.model.settings();
    let protocol = Protocol {
        genes: &panel.genes,
        method: args.genes.normalisation.into(),
        settings: &settings,
        approximate: args.index.params(),
    };
    // Folds are independent: run as many at once as there are cores.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tests.len());
    let bars = MultiProgress::new();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<FoldReport, EvalError>>>> = tests.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = tests.get(slot) else { break };
                    let bar = bars.add(out.progress(&format!("fold {t}"), settings.training.epochs));
                    let fold = evaluate_fold(&inputs, t, &protocol, scratch.path(), &mut epoch_progress(&bar));
                    bar.finish_and_clear();
                    *results[slot].lock().expect("no fold panics holding its slot") = Some(fold);
                }
            });
        }
    });
    let folds = results
        .into_iter()
        .map(|r| r.into_inner().expect("no fold panics holding its slot").expect("every fold ran"))
        .collect::<Result<Vec<_>, _>>()?;
    let report = Report::new(folds);
    let mut table =
        format!("{:<6} {:<8} {:>7} {:>10} {:>7} {:>9}", "test", "method", "pcc", "pcc_hvg50", "rmse", "excluded");
    let rows = report.folds.iter().map(|f| (f.test.as_str(), &f.methods)).chain([("mean", &report.mean)]);
    for (fold, methods) in rows {
        for (method, s) in methods {
            table.push_str(&format!(
                "\n{fold:<6} {method:<8} {:>7.3} {:>10.3} {:>7.3} {:>9}",
                s.pcc, s.pcc_hvg50, s.rmse, s.excluded_genes
            ));
        }
    }
    out.report(&table, serde_json::to_value(&report)?)
}
