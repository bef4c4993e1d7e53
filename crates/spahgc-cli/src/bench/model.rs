//! `spahgc bench head` and `spahgc bench train`: the SpaHGC network's forward pass and training
//! epoch on real her2st sections.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ndarray::{Array2, Axis, concatenate};
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_core::GenePanel;
use spahgc_model::{GraphInputs, ModelConfig, ModelSettings, SpaHgc, fit};

use crate::bank::GenesArgs;
use crate::embed::{CacheArgs, EmbeddedSections, EncoderArgs, SectionsArgs};
use crate::memory;
use crate::output::Output;

/// PyTorch running the reference SpaHGC head on a 500-spot graph on the 2-core reference
/// machine: forward time in ms and peak resident memory in MB.
const PYTORCH_FORWARD_MS: f64 = 34.0;
const PYTORCH_FORWARD_RSS_MB: f64 = 700.0;
/// PyTorch's seconds per training epoch over 4 sections on the same machine.
const PYTORCH_EPOCH_S: f64 = 0.61;

/// Where the benchmark data comes from.
#[derive(Args)]
struct BenchData {
    /// her2st data set directory.
    #[arg(long, default_value = "../shared/data/her2st")]
    her2st: PathBuf,
    #[command(flatten)]
    genes: GenesArgs,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

impl BenchData {
    /// The embedded `sections`, and a bank of the first `bank_sections` of them in `dir`.
    fn load(
        &self,
        sections: Vec<String>,
        bank_sections: usize,
        dir: &std::path::Path,
        out: &Output,
    ) -> anyhow::Result<(EmbeddedSections, ReferenceBank)> {
        let panel = GenePanel::read(&self.genes.panel)?;
        let args = SectionsArgs { her2st: self.her2st.clone(), sections };
        let data = EmbeddedSections::load(&args, &self.encoder, &self.cache, out)?;
        let path = dir.join("bank.spb");
        build_bank(
            &path,
            &data.views()[..bank_sections],
            &panel.genes,
            self.genes.normalisation.into(),
            &data.encoder_sha256,
        )?;
        let bank = ReferenceBank::open(&path)?;
        Ok((data, bank))
    }
}

#[derive(Args)]
pub struct HeadBenchArgs {
    /// Sections of the reference bank.
    #[arg(long, value_delimiter = ',', default_value = "B4,C2")]
    bank_sections: Vec<String>,
    /// Sections whose spots, laid side by side, are the graph's targets.
    #[arg(long, value_delimiter = ',', default_value = "C3,C4,C5")]
    target_sections: Vec<String>,
    /// Target spots in the graph.
    #[arg(long, default_value_t = 500)]
    spots: usize,
    /// Timed forward passes (the median is reported).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[command(flatten)]
    data: BenchData,
}

pub fn head(args: HeadBenchArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0 && args.spots >= 2, "--rounds must be at least 1 and --spots at least 2");
    let scratch = tempfile::tempdir()?;
    let names = [args.bank_sections.clone(), args.target_sections.clone()].concat();
    let (data, bank) = args.data.load(names, args.bank_sections.len(), scratch.path(), out)?;
    let targets = &data.views()[args.bank_sections.len()..];
    let (centres, embeddings) = side_by_side(targets);
    anyhow::ensure!(
        centres.len() >= args.spots,
        "sections {} hold {} spots, fewer than --spots {}",
        args.target_sections.join(","),
        centres.len(),
        args.spots
    );
    let settings = ModelSettings::default();

    let started = Instant::now();
    let rows = embeddings.slice(ndarray::s![..args.spots, ..]);
    let inputs = GraphInputs::build(&centres[..args.spots], rows, &bank, None, settings.graph)?;
    let graph_ms = started.elapsed().as_secs_f64() * 1e3;
    let model = SpaHgc::initial(ModelConfig::for_bank(bank.meta(), &settings, Vec::new()))?;
    model.predict(&inputs)?; // warm-up

    let baseline = memory::restart_peak();
    let mut times: Vec<f64> = (0..args.rounds)
        .map(|_| {
            let t = Instant::now();
            model.predict(&inputs).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    let forward_peak_mb = (memory::peak() - baseline) as f64 / 1e6;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let rss_mb = memory::peak_resident_bytes().map_or(f64::NAN, |b| b as f64 / 1e6);
    let g = inputs.graph();
    out.report(
        &format!(
            "SpaHGC head (hidden {}, {} layers) on a {}-spot graph ({} references, {} target, {} refer, {} reference edges):\n  \
             graph build            {graph_ms:8.1} ms   (retrieval + edges, once per region)\n  \
             forward                {median:8.1} ms   (median of {}; fastest {:.1})\n  \
             forward peak heap      {forward_peak_mb:8.1} MB\n  \
             process peak RSS       {rss_mb:8.1} MB   (everything this run loaded)\n  \
             speed-up over PyTorch  {:8.2}x   (PyTorch {PYTORCH_FORWARD_MS} ms, measured separately on the reference machine)\n  \
             RSS / PyTorch's        {:8.3}    (PyTorch {PYTORCH_FORWARD_RSS_MB} MB)",
            settings.architecture.hidden,
            settings.architecture.layers,
            g.n_targets,
            g.reference_rows.len(),
            g.target_edges.len(),
            g.refer_edges.len(),
            g.reference_edges.len(),
            args.rounds,
            times[0],
            PYTORCH_FORWARD_MS / median,
            rss_mb / PYTORCH_FORWARD_RSS_MB,
        ),
        serde_json::json!({
            "spots": g.n_targets, "references": g.reference_rows.len(), "graph_ms": graph_ms,
            "forward_ms_median": median, "forward_ms_min": times[0], "forward_peak_heap_mb": forward_peak_mb,
            "peak_rss_mb": rss_mb, "speedup_over_pytorch": PYTORCH_FORWARD_MS / median,
        }),
    )
}

/// The sections' spots in one coordinate frame, each section shifted right of the previous
/// one (so no spatial edge joins two sections), with their embeddings stacked.
fn side_by_side(sections: &[BankSection]) -> (Vec<(f64, f64)>, Array2<f32>) {
    let mut centres = Vec::new();
    let mut offset = 0.0;
    for s in sections {
        let own = s.section.centres();
        let width = own.iter().map(|c| c.0).fold(0.0, f64::max);
        centres.extend(own.iter().map(|&(x, y)| (x + offset, y)));
        offset += 2.0 * width + 1.0;
    }
    let views: Vec<_> = sections.iter().map(|s| s.embeddings).collect();
    let embeddings = concatenate(Axis(0), &views).expect("embeddings of one encoder share their width");
    (centres, embeddings)
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Training sections.
    #[arg(long, value_delimiter = ',', default_value = "B4,C2,C3,C4")]
    sections: Vec<String>,
    /// Epochs to run; the first, which also builds the graphs, is not timed.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[command(flatten)]
    data: BenchData,
}

pub fn train(args: TrainBenchArgs, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.epochs >= 2, "--epochs must be at least 2 (the first is not timed)");
    let scratch = tempfile::tempdir()?;
    let (data, bank) = args.data.load(args.sections.clone(), args.sections.len(), scratch.path(), out)?;
    let mut settings = ModelSettings::default();
    settings.training.epochs = args.epochs;
    let mut ends = Vec::new();
    fit(&data.views(), &bank, &settings, &mut |_| ends.push(Instant::now()))?;
    let seconds: Vec<f64> = ends.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let rss_mb = memory::peak_resident_bytes().map_or(f64::NAN, |b| b as f64 / 1e6);
    out.report(
        &format!(
            "SpaHGC training on {} (default settings):\n  \
             epoch                  {mean:8.3} s    (mean of epochs 2..{})\n  \
             process peak RSS       {rss_mb:8.1} MB\n  \
             speed-up over PyTorch  {:8.2}x   (PyTorch {PYTORCH_EPOCH_S} s per epoch, measured separately on the reference machine)",
            args.sections.join(","),
            args.epochs,
            PYTORCH_EPOCH_S / mean
        ),
        serde_json::json!({
            "sections": args.sections, "epoch_s": mean, "epochs_timed": seconds.len(),
            "peak_rss_mb": rss_mb, "speedup_over_pytorch": PYTORCH_EPOCH_S / mean,
        }),
    )
}
