//! Crash-safe file writing shared by every crate that writes user-visible files.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Name prefix of the temporary files and directories writes stage their content in: hidden, and
/// particular to spahgc, so that clearing leftovers never touches anyone else's files.
pub const TEMPORARY_PREFIX: &str = ".spahgc-tmp-";
/// Name prefix of a directory moved aside while its replacement moves in (where no atomic
/// exchange is available).
const ASIDE_PREFIX: &str = ".spahgc-old-";
/// Temporaries (of either prefix) beside a file being written that were last modified longer ago
/// than this are leftovers of a killed writer, and the next write removes them.
pub const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(60 * 60);

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
/// `fill` writes into a temporary sibling directory, which then takes `path`'s place. On Linux an
/// existing `path` is swapped with it in one atomic exchange, so a crash at any moment leaves the
/// old directory or the new one under `path`, never neither; elsewhere the old one is moved aside
/// first. On any error the temporary directory is removed and `path` is untouched. A crash can
/// leave a hidden `.spahgc-tmp-*` or `.spahgc-old-*` sibling behind: readers ignore them, the
/// next write beside them removes them once they are an hour old, and they are safe to delete.
pub fn write_dir_atomically<E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let parent = parent_of(path);
    std::fs::create_dir_all(parent)?;
    remove_stale_temporaries(parent);
    let staged = tempfile::Builder::new().prefix(TEMPORARY_PREFIX).tempdir_in(parent)?;
    fill(staged.path())?;
    sync_tree(staged.path())?;
    if path.exists() && exchange(staged.path(), path)? {
        // `staged` now holds the old directory; dropping it removes it.
        sync_dir(parent);
        return Ok(());
    }
    // A directory cannot be renamed over a non-empty one: move the old one aside first.
    let old = path.exists().then(|| tempfile::Builder::new().prefix(ASIDE_PREFIX).tempdir_in(parent)).transpose()?;
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

/// Makes every file and directory under `dir` (and `dir` itself) durable.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Atomically swaps two existing paths (Linux `renameat2(RENAME_EXCHANGE)`). `Ok(false)` where
/// the platform or file system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c_path(a)?, c_path(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let done =
        unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if done == 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => Ok(false),
        e => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<bool> {
    Ok(false)
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Removes the leftovers of killed writers from `dir`: files and directories named with
/// [`TEMPORARY_PREFIX`] or the aside prefix and older than [`STALE_TEMPORARY_AGE`]. Best effort:
/// what cannot be removed stays.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(TEMPORARY_PREFIX) || name.starts_with(ASIDE_PREFIX)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let stale =
            meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > STALE_TEMPORARY_AGE);
        if stale {
            let path = entry.path();
            let removed = if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            match removed {
                Ok(()) => tracing::debug!(path = %path.display(), "removed a killed writer's leftover"),
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "could not remove a leftover"),
            }
        }
    }
}

/// A temporary file beside `path`.
fn staging_file(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    remove_stale_temporaries(parent_of(path));
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMPORARY_PREFIX);
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
    fn old_leftovers_of_spahgc_go_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - 2 * STALE_TEMPORARY_AGE;
        let aged = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::File::open(&path).unwrap().set_modified(long_ago).unwrap();
            path
        };
        let leftover = aged(&format!("{TEMPORARY_PREFIX}killed"));
        let aside = aged(&format!("{ASIDE_PREFIX}killed"));
        let someone_elses = aged(".tmp-not-ours");
        let recent = dir.path().join(format!("{TEMPORARY_PREFIX}running"));
        std::fs::write(&recent, b"in progress").unwrap();
        write_atomically(&dir.path().join("out.txt"), |w| w.write_all(b"new")).unwrap();
        assert!(!leftover.exists() && !aside.exists(), "an hour-old leftover stays");
        assert!(someone_elses.exists() && recent.exists(), "removed what is not an old leftover of spahgc");
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
