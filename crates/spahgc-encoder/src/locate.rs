//! Where spahgc finds files that the setup script installs into the project (`.spahgc/`).

use std::path::{Path, PathBuf};

/// Directory, relative to the project root, where `scripts/setup.sh` installs runtime files.
pub const SETUP_DIR: &str = ".spahgc";

/// Finds `SETUP_DIR/relative` in the nearest ancestor of the running executable or of the
/// current directory that has it.
///
/// Binaries built in the repository (`target/*/spahgc`, test binaries) find the project's setup
/// directory this way, wherever they are started from.
pub fn project_file(relative: &str) -> Option<PathBuf> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    [exe_dir, cwd]
        .into_iter()
        .flatten()
        .flat_map(|start| start.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .map(|dir| dir.join(SETUP_DIR).join(relative))
        .find(|p| p.exists())
}

/// The default encoder's model directory, as installed by the setup script.
pub fn default_model_dir() -> Option<PathBuf> {
    project_file("models/efficientnet-lite0")
}
