//! Where tests find the shared real data (`../shared/data` beside the repository).
//!
//! Tests that need it call [`shared`] and return early, with a message, when it is absent. CI
//! always has the data and sets `SPAHGC_REQUIRE_DATA=1`, which turns a missing directory into a
//! failure instead of a silent skip.

use std::path::PathBuf;

/// The path of `sub` (e.g. `"her2st"`) under the shared data directory, or `None` (after printing
/// why) when the data is absent and not required.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    let dir = root.join(sub);
    if dir.exists() {
        return Some(dir.canonicalize().unwrap_or(dir));
    }
    missing(&format!("test data {} is absent", dir.display()));
    None
}

/// The default encoder's directory as `scripts/setup.sh` installs it in the repository, or
/// `None` (after reporting it missing).
pub fn default_encoder() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.spahgc/models/efficientnet-lite0"));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    missing("the default encoder is not installed (run scripts/setup.sh)");
    None
}

/// The WebAssembly component `file` as `scripts/build-component.sh` installs it in the
/// repository (`.spahgc/wasm/`), or `None` (after reporting it missing).
pub fn component(file: &str) -> Option<PathBuf> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.spahgc/wasm")).join(file);
    if path.is_file() {
        return Some(path);
    }
    missing(&format!("{} is not built (run scripts/build-component.sh)", path.display()));
    None
}

/// The Python of the repository's tool environment (`.spahgc/venv`, made by `scripts/setup.sh`)
/// when it can import every module of `modules`, or `None` (after reporting it missing).
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.spahgc/venv/bin/python"));
    let import = format!("import {}", modules.join(", "));
    let imports = std::process::Command::new(&python).args(["-c", &import]).output();
    if imports.is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    missing(&format!("{} cannot run `{import}` (run scripts/setup.sh)", python.display()));
    None
}

/// Reports a missing test prerequisite (`what`): a failure when `SPAHGC_REQUIRE_DATA=1`, else a
/// message before the caller skips.
pub fn missing(what: &str) {
    let required = std::env::var("SPAHGC_REQUIRE_DATA").is_ok_and(|v| v == "1");
    assert!(!required, "SPAHGC_REQUIRE_DATA=1 but {what}");
    eprintln!("skipping: {what}");
}
