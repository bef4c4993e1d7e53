//! `spahgc`: predict spatial gene expression from H&E images — command-line tools.

mod bank;
mod bench;
mod bundle;
mod cache;
mod embed;
mod eval;
mod failure;
mod heatmap;
mod memory;
mod output;
mod panel;
mod predict;
mod train;
mod wasm;

use clap::{Parser, Subcommand};

// Batches allocate and free tens of MB of tensors; glibc's malloc returns such blocks to the OS
// each time and page-faults them back in, mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: memory::CountingAllocator = memory::CountingAllocator;

/// How `spahgc` exits (see [`failure::Failure`]).
const EXIT_CODES: &str = "Exit codes: 0 success; 1 internal error; 2 bad input (arguments, region, resolution, \
                          genes, bundle, data files); 3 unreadable slide (missing, not a slide, corrupt).";

/// Spatial gene expression from H&E images (SpaHGC).
#[derive(Parser)]
#[command(name = "spahgc", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Print nothing but errors (and the --json summary).
    #[arg(long, global = true)]
    quiet: bool,
    /// JSON for scripts: `--json` prints the summary on stdout instead of text; `--json FILE`
    /// writes it to FILE (for `eval`, the full report) and prints the text as usual.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "-", value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Choose a gene panel: the most variable genes common to the given sections.
    Panel(panel::PanelArgs),
    /// Embed a section's spots with an image encoder (served from the cache when possible).
    Embed(embed::EmbedArgs),
    /// Reference banks of spots with measured expression.
    #[command(subcommand)]
    Bank(bank::BankCommand),
    /// Inspect or empty the embedding cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Train SpaHGC on sections with measured expression into a model bundle.
    Train(train::TrainArgs),
    /// Predict expression for the spots of a her2st section or a slide region with a bundle.
    #[command(after_help = EXIT_CODES)]
    Predict(predict::PredictArgs),
    /// Model bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Leave-one-section-out evaluation of SpaHGC against baselines.
    Eval(eval::EvalArgs),
    /// Run spahgc's WebAssembly component in a sandbox.
    #[command(subcommand)]
    Wasm(wasm::WasmCommand),
    /// Measure throughput against the raw runtime.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Turns off candle's pool of threads for elementwise operations unless the user configured it
/// (`CANDLE_NUM_THREADS`). On graphs of hundreds of nodes its spinning workers cost more than they
/// save and slow the matrix products, which keep their rayon threads: `spahgc bench head` takes
/// 36 ms with the pool off, 49 ms with it on and 47 ms on one thread overall; `bench train`
/// 0.63 s per epoch with the pool off and 0.78 s on one thread.
fn no_elementwise_thread_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Exits on arguments the parser refused (help and version requests print and exit 0); with
/// `--json` among them, the one-line failure summary goes to stdout as for any failure.
fn refuse_arguments(error: clap::Error) -> std::process::ExitCode {
    if !error.use_stderr() {
        error.exit();
    }
    let _ = error.print();
    if std::env::args().any(|a| a == "--json") {
        let rendered = error.render().to_string();
        let message = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ");
        let kind = failure::Failure::BadInput;
        let json =
            serde_json::json!({"status": "error", "exit_code": kind as u8, "kind": kind.kind(), "error": message});
        println!("{json}");
    }
    std::process::ExitCode::from(failure::Failure::BadInput as u8)
}

fn main() -> std::process::ExitCode {
    memory::keep_freed_pages();
    no_elementwise_thread_pool();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refuse_arguments(e),
    };
    let out = output::Output::new(cli.quiet, cli.json);
    let result = match cli.command {
        Command::Panel(args) => panel::run(args, &out),
        Command::Embed(args) => embed::run(args, &out),
        Command::Bank(cmd) => bank::run(cmd, &out),
        Command::Cache(cmd) => cache::run(cmd, &out),
        Command::Train(args) => train::run(args, &out),
        Command::Bundle(cmd) => bundle::run(cmd, &out),
        Command::Predict(args) => predict::run(args, &out),
        Command::Eval(args) => eval::run(args, &out),
        Command::Wasm(cmd) => wasm::run(cmd, &out),
        Command::Bench(cmd) => bench::run(cmd, &out),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let failure = failure::Failure::of(&e);
            out.report_failure(&e, failure);
            std::process::ExitCode::from(failure as u8)
        }
    }
}
