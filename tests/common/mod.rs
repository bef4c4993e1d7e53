//! What the command-line tests of tests/ share: running `spahgc` and checking its cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `spahgc` command with the cache at `cache`, warnings only, `--json` summaries.
pub fn spahgc(args: &[&str], cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spahgc"));
    command.args(args).arg("--json").env("SPAHGC_CACHE_DIR", cache).env("RUST_LOG", "warn");
    command
}

/// Runs `command`, asserts that it succeeded, and returns its JSON summary and how long it took.
pub fn succeeds(command: &mut Command) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let out = command.output().expect("spahgc runs");
    assert!(out.status.success(), "spahgc failed: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("a JSON summary"), started.elapsed())
}

/// Asserts that every cache entry verifies, and returns how many there are.
pub fn verified_entries(cache: &Path) -> u64 {
    let (summary, _) = succeeds(&mut spahgc(&["cache", "verify"], cache));
    assert_eq!(summary["removed"], serde_json::json!([]), "corrupt cache entries: {summary}");
    summary["valid"].as_u64().unwrap()
}

/// The her2st data and a scratch directory for one test.
pub struct Paths {
    /// The her2st directory, as an argument.
    pub data: String,
    pub scratch: tempfile::TempDir,
}

impl Paths {
    /// `name` in the scratch directory.
    pub fn at(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }
    /// `name` in the scratch directory, as an argument.
    pub fn arg(&self, name: &str) -> String {
        self.at(name).to_string_lossy().into_owned()
    }
}

/// `None` (the test is skipped) without the her2st data or the default encoder.
pub fn setup() -> Option<Paths> {
    let data = spahgc_testdata::shared("her2st")?;
    spahgc_testdata::default_encoder()?;
    Some(Paths { data: data.to_string_lossy().into_owned(), scratch: tempfile::tempdir().unwrap() })
}
