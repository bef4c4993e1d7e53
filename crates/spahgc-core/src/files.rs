//! Crash-safe file writing shared by every crate that writes user-visible files.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes a file so that readers see either the old content or the complete new content.
///
/// `fill` writes into a temporary file in the same directory; the file is flushed, fsynced and
/// renamed over `path`, and the directory is fsynced. On any error the temporary file is removed
/// and `path` is untouched.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let tmp = staging_file(path)?;
    let mut out = BufWriter::new(tmp);
    fill(&mut out)?;
    let tmp = out.into_inner().map_err(|e| e.into_error())?;
    persist(tmp, path)
}

/// As [`write_atomically`], for writers that take a file name rather than a stream (HDF5):
/// `fill` writes the file at the path it is given.
pub fn write_atomically_by_name<E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = staging_file(path)?;
    fill(tmp.path())?;
    Ok(persist(tmp, path)?)
}

/// Fills a directory so that `path` holds either its old content or all of the new one:
/// `fill` writes into a temporary sibling directory, which then takes `path`'s place (an old
/// directory there is removed). On any error the temporary directory is removed and `path` is
/// untouched.
pub fn write_dir_atomically<E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let parent = parent_of(path);
    std::fs::create_dir_all(parent)?;
    let staged = tempfile::Builder::new().prefix(".tmp-").tempdir_in(parent)?;
    fill(staged.path())?;
    for entry in std::fs::read_dir(staged.path())? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    // A directory cannot be renamed over a non-empty one: move the old one aside first.
    let old = path.exists().then(|| tempfile::Builder::new().prefix(".old-").tempdir_in(parent)).transpose()?;
    if let Some(old) = &old {
        std::fs::rename(path, old.path().join("previous"))?;
    }
    let staged = staged.keep();
    if let Err(e) = std::fs::rename(&staged, path) {
        let _ = std::fs::remove_dir_all(&staged);
        if let Some(old) = &old {
            let _ = std::fs::rename(old.path().join("previous"), path);
        }
        return Err(e.into());
    }
    sync_dir(parent);
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A temporary file beside `path`.
fn staging_file(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    // Temporary files are private (0600) by default; the finished file is an ordinary one,
    // readable as the umask allows (shared caches and outputs on a cluster need that).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(parent_of(path))
}

/// Makes a finished temporary file durable and renames it to `path`.
fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(parent_of(path));
    Ok(())
}

/// Makes a rename in `dir` durable; not every platform can open a directory, hence best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
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

    #[test]
    fn a_directory_is_replaced_whole_or_not_at_all() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let fill = |text: &'static [u8]| {
            move |dir: &Path| -> io::Result<()> {
                std::fs::write(dir.join("a.txt"), text)?;
                std::fs::write(dir.join("b.txt"), text)
            }
        };
        write_dir_atomically(&out, fill(b"one")).unwrap();
        write_dir_atomically(&out, fill(b"two")).unwrap();
        assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b"two");
        let failed = write_dir_atomically(&out, |dir: &Path| {
            std::fs::write(dir.join("a.txt"), b"three")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"two", "the old outputs stay");
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec!["out"], "no staging directory is left");
    }

    #[test]
    fn a_file_written_by_name_appears_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.h5");
        write_atomically_by_name(&path, |tmp: &Path| std::fs::write(tmp, b"data")).unwrap();
        let failed = write_atomically_by_name(&path, |tmp: &Path| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("no space"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
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
