//! What the commands print: log lines, progress bars, and the `--json` summary.

use indicatif::{ProgressBar, ProgressStyle};

use std::path::PathBuf;

use anyhow::Context;

use crate::failure::Failure;

/// Output settings shared by every command.
pub struct Output {
    quiet: bool,
    /// `-` for stdout, else a file to write the JSON to.
    json: Option<PathBuf>,
}

impl Output {
    /// Sets up logging to stderr (`RUST_LOG` overrides the level; `--quiet` keeps errors only).
    pub fn new(quiet: bool, json: Option<PathBuf>) -> Self {
        let default = if quiet { "error" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
        Self { quiet, json }
    }

    fn json_to_stdout(&self) -> bool {
        self.json.as_deref().is_some_and(|p| p.as_os_str() == "-")
    }

    /// A progress bar on stderr, hidden with `--quiet`/`--json` or when stderr is not a terminal.
    pub fn progress(&self, what: &str, total: usize) -> ProgressBar {
        if self.quiet || self.json_to_stdout() {
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

    /// Tells how a command failed: the error on stderr and, with `--json`, a one-line summary
    /// (`status`, `exit_code`, `kind`, `error`) where the success summary would have gone.
    pub fn report_failure(&self, error: &anyhow::Error, failure: Failure) {
        let message = describe(error);
        eprintln!("error: {message}");
        let json = serde_json::json!({
            "status": "error", "exit_code": failure as u8, "kind": failure.kind(), "error": message,
        });
        match &self.json {
            Some(_) if self.json_to_stdout() => println!("{json}"),
            Some(path) => {
                if let Err(e) = spahgc_core::write_atomically(path, |w| writeln!(w, "{json:#}")) {
                    eprintln!("error: writing {}: {e}", path.display());
                }
            }
            None => {}
        }
    }

    /// Prints a result: human lines on stdout, or the JSON summary with `--json`; with
    /// `--json FILE`, the human lines and the JSON written (atomically) to FILE.
    pub fn report(&self, human: &str, json: serde_json::Value) -> anyhow::Result<()> {
        match &self.json {
            Some(_) if self.json_to_stdout() => println!("{json}"),
            Some(path) => {
                spahgc_core::write_atomically(path, |w| writeln!(w, "{json:#}"))
                    .with_context(|| format!("writing {}", path.display()))?;
                if !self.quiet {
                    println!("{human}");
                }
            }
            None if !self.quiet => println!("{human}"),
            None => {}
        }
        Ok(())
    }
}

/// An error and its causes, joined by `: `, each cause left out when the message before it
/// already quotes it (errors that print their source as part of their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !message.ends_with(&cause) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&cause);
        }
    }
    message
}
