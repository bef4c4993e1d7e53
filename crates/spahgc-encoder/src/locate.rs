//! Where spahgc finds files that the setup script installs into the project (`.spahgc/`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Directory, relative to the project root, where `scripts/setup.sh` installs runtime files.
pub const SETUP_DIR: &str = ".spahgc";

/// A directory laid out like `SETUP_DIR` that an embedding host names (the C ABI: the runtime
/// files installed beside `libspahgc`); set once per process, searched before the project's.
static HOST_SETUP_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Names the host's setup directory for this process; `Err` with the directory already named
/// when another one was set first (the ONNX Runtime library loads once per process).
pub fn set_host_setup_dir(dir: &Path) -> Result<(), PathBuf> {
    let set = HOST_SETUP_DIR.get_or_init(|| dir.to_path_buf());
    if set == dir { Ok(()) } else { Err(set.clone()) }
}

/// Finds `relative` in the host's setup directory ([`set_host_setup_dir`]), else `SETUP_DIR/relative`
/// in the nearest ancestor of the running executable or of the current directory that has it.
///
/// Binaries built in the repository (`target/*/spahgc`, test binaries) find the project's setup
/// directory this way, wherever they are started from.
pub fn project_file(relative: &str) -> Option<PathBuf> {
    if let Some(found) = HOST_SETUP_DIR.get().map(|dir| dir.join(relative)).filter(|p| p.exists()) {
        return Some(found);
    }
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
