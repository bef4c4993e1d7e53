//! Crash-safe file writing shared by every crate that writes user-visible files.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes a file so that readers see either the old content or the complete new content.
///
/// `fill` writes into a temporary file in the same directory; the file is flushed, fsynced and
/// renamed over `path`, and the directory is fsynced. On any error the temporary file is removed
/// and `path` is untouched.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // Temporary files are private (0600) by default; the finished file is an ordinary one,
    // readable as the umask allows (shared caches and outputs on a cluster need that).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let tmp = builder.tempfile_in(dir)?;
    let mut out = BufWriter::new(tmp);
    fill(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; not every platform can open a directory, hence best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomically(&path, |w| w.write_all(b"old")).unwrap();
        let err = write_atomically(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        write_atomically(&path, |w| w.write_all(b"x")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044 & !umask(), "mode {mode:o}");
    }

    /// The process umask, read back from a file created with mode 0o777.
    #[cfg(unix)]
    fn umask() -> u32 {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o777).open(&probe).unwrap();
        !std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777
    }
}
