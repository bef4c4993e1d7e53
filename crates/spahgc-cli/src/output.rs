//! What the commands print: log lines, progress bars, and the `--json` summary.

use indicatif::{ProgressBar, ProgressStyle};

/// Output settings shared by every command.
pub struct Output {
    quiet: bool,
    json: bool,
}

impl Output {
    /// Sets up logging to stderr (`RUST_LOG` overrides the level; `--quiet` keeps errors only).
    pub fn new(quiet: bool, json: bool) -> Self {
        let default = if quiet { "error" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
        Self { quiet, json }
    }

    /// A progress bar on stderr, hidden with `--quiet`/`--json` or when stderr is not a terminal.
    pub fn progress(&self, what: &str, total: usize) -> ProgressBar {
        if self.quiet || self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar
    }

    /// Prints a result: human lines on stdout, or the JSON summary with `--json`.
    pub fn report(&self, human: &str, json: serde_json::Value) {
        if self.json {
            println!("{json}");
        } else if !self.quiet {
            println!("{human}");
        }
    }
}
