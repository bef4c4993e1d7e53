//! `spahgc`: predict spatial gene expression from H&E images — command-line tools.

mod bank;
mod bench;
mod cache;
mod embed;
mod eval;
mod output;
mod panel;

use clap::{Parser, Subcommand};

// Batches allocate and free tens of MB of tensors; glibc's malloc returns such blocks to the OS
// each time and page-faults them back in, mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spatial gene expression from H&E images (SpaHGC).
#[derive(Parser)]
#[command(name = "spahgc", version, about)]
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
    /// Leave-one-section-out evaluation of the baselines (SpaHGC joins with the model).
    Eval(eval::EvalArgs),
    /// Measure throughput against the raw runtime.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let out = output::Output::new(cli.quiet, cli.json);
    let result = match cli.command {
        Command::Panel(args) => panel::run(args, &out),
        Command::Embed(args) => embed::run(args, &out),
        Command::Bank(cmd) => bank::run(cmd, &out),
        Command::Cache(cmd) => cache::run(cmd, &out),
        Command::Eval(args) => eval::run(args, &out),
        Command::Bench(cmd) => bench::run(cmd, &out),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
