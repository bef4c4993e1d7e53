//! The cache directory: lookup, storage, eviction and statistics.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use memmap2::Mmap;
use tracing::{debug, warn};

use crate::entry::CachedEmbeddings;
use crate::error::CacheError;
use crate::format::{self, EntryShape, FORMAT_VERSION, HEADER_LEN, Invalid, Precision};
use crate::key::CacheKey;

/// File-name suffix of entry files.
const ENTRY_SUFFIX: &str = ".emb";
/// Prefix of the temporary files [`spahgc_core::write_atomically`] creates.
const TEMP_PREFIX: &str = spahgc_core::TEMPORARY_PREFIX;
/// Name of the lock file that serialises eviction, inside the versioned directory.
const LOCK_NAME: &str = ".evict.lock";
/// Temporary files older than this are leftovers of a crashed writer.
const STALE_TEMP_AGE: Duration = spahgc_core::STALE_TEMPORARY_AGE;

/// A directory of cached embeddings, bounded in size by least-recently-used eviction.
///
/// The handle only holds paths and the size bound; it is cheap, `Send + Sync`, and may be used
/// from many threads at once. Several processes may open the same root concurrently.
#[derive(Clone, Debug)]
pub struct EmbeddingCache {
    root: PathBuf,
    /// `<root>/v<FORMAT_VERSION>`, the directory entries and the lock file live in.
    dir: PathBuf,
    max_bytes: u64,
}

/// A snapshot of the cache's contents, for `spahgc cache stats`.
#[derive(Clone, Debug)]
pub struct CacheStats {
    /// The cache root as given to [`EmbeddingCache::open`].
    pub root: PathBuf,
    /// Number of entry files.
    pub entries: usize,
    /// Total size of the entry files, in bytes (what `max_bytes` bounds).
    pub total_bytes: u64,
    /// The size bound, in bytes.
    pub max_bytes: u64,
    /// One line per entry, most recently used first.
    pub per_entry: Vec<EntryInfo>,
}

/// One entry in [`CacheStats`].
#[derive(Clone, Debug)]
pub struct EntryInfo {
    /// File name: the key digest followed by `.emb`.
    pub file_name: String,
    /// Shape and precision from the header; `None` if the header is unreadable or invalid (the
    /// entry will be deleted by the next `get` of its key). The payload is not verified here.
    pub shape: Option<EntryShape>,
    /// File size in bytes, header included.
    pub bytes: u64,
    /// When the entry was last written or read (its modification time).
    pub last_used: SystemTime,
}

/// One entry for [`EmbeddingCache::put_many`]: `rows` embeddings of `dim` values each.
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    pub key: &'a CacheKey,
    pub rows: usize,
    pub dim: usize,
    pub values: &'a [f32],
}

/// What [`EmbeddingCache::verify`] found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Entries whose header and checksum are right.
    pub valid: usize,
    /// Entries that failed, deleted: file name and why.
    pub removed: Vec<String>,
}

/// An entry file found by a directory scan.
struct EntryFile {
    path: PathBuf,
    file_name: String,
    bytes: u64,
    modified: SystemTime,
}

/// Everything a directory scan found.
#[derive(Default)]
struct Scan {
    entries: Vec<EntryFile>,
    /// Temporary files and their modification times.
    temps: Vec<(PathBuf, SystemTime)>,
}

impl EmbeddingCache {
    /// The default size bound: 10 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

    /// Opens (creating it if missing) the cache rooted at `root`, whose entries will be kept to at
    /// most `max_bytes` bytes in total.
    ///
    /// Fails with a [`CacheError::Io`] naming the path if the directory cannot be created or
    /// written to (the eviction lock file is created here, which checks that).
    pub fn open(root: &Path, max_bytes: u64) -> Result<Self, CacheError> {
        let dir = root.join(format!("v{FORMAT_VERSION}"));
        let cache = EmbeddingCache { root: root.to_path_buf(), dir, max_bytes };
        // Creates the directory too, and fails with the path if it is not writable.
        cache.open_lock_file()?;
        Ok(cache)
    }

    /// The default cache root: `$SPAHGC_CACHE_DIR`, else `$XDG_CACHE_HOME/spahgc`, else
    /// `$HOME/.cache/spahgc`. Empty variables (and a relative `XDG_CACHE_HOME`, as the XDG
    /// specification requires) are ignored. Creates nothing.
    pub fn default_root() -> Result<PathBuf, CacheError> {
        root_from_env(|name| std::env::var_os(name))
    }

    /// Looks `key` up and returns its verified, memory-mapped embeddings, or `None` on a miss.
    ///
    /// A truncated, corrupt or foreign entry is logged (`tracing::warn!`), deleted and reported as
    /// `None`, so the caller recomputes it; it is never served. A hit marks the entry as recently
    /// used. Errors only when the entry exists but cannot be opened or mapped.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CachedEmbeddings>, CacheError> {
        let digest = key.digest();
        let path = self.entry_path(&digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            // NotADirectory: something other than a shard directory is in the way; still a miss.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(CacheError::io("open cache entry", &path, e)),
        };
        match check_entry(&file, &path, &digest)? {
            Ok((map, shape)) => {
                if let Err(e) = file.set_modified(SystemTime::now()) {
                    debug!(path = %path.display(), error = %e, "could not mark cache entry as used");
                }
                Ok(Some(CachedEmbeddings::new(map, shape)))
            }
            Err(why) => {
                discard(&path, &why);
                Ok(None)
            }
        }
    }

    /// Reads every entry in full and checks it as [`get`](Self::get) does, deleting (as `get`
    /// would) those that fail. For `spahgc cache verify` and for checking a cache after a crash.
    pub fn verify(&self) -> Result<Verified, CacheError> {
        let mut verified = Verified::default();
        for entry in self.scan()?.entries {
            let file = match File::open(&entry.path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // evicted meanwhile
                Err(e) => return Err(CacheError::io("open cache entry", &entry.path, e)),
            };
            let digest = entry.file_name.trim_end_matches(ENTRY_SUFFIX);
            let is_digest = digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let checked = if is_digest && entry.path.parent() == Some(self.shard_dir(digest).as_path()) {
                check_entry(&file, &entry.path, digest)?.map(|_| ())
            } else {
                Err(Invalid::Misplaced)
            };
            match checked {
                Ok(()) => verified.valid += 1,
                Err(why) => {
                    discard(&entry.path, &why);
                    verified.removed.push(format!("{}: {why}", entry.file_name));
                }
            }
        }
        Ok(verified)
    }

    /// Stores `rows × dim` embeddings for `key`: `values` is row-major f32, stored at `precision`
    /// (f16 rounds to nearest; magnitudes above 65504 become infinite). Replaces any existing entry
    /// for the key.
    ///
    /// The write is crash-safe: readers, in this or any other process, see the old entry, no
    /// entry, or the complete new one. Afterwards least-recently-used entries are evicted until the
    /// total is at most `max_bytes`, never the entry just written (so one entry larger than the
    /// bound is still kept). Fails with [`CacheError::Shape`] if `values.len() != rows * dim`
    /// (nothing is written), and with [`CacheError::Io`] if the entry cannot be written.
    pub fn put(
        &self,
        key: &CacheKey,
        rows: usize,
        dim: usize,
        values: &[f32],
        precision: Precision,
    ) -> Result<(), CacheError> {
        self.put_many(&[NewEntry { key, rows, dim, values }], precision)
    }

    /// Stores several entries as [`EmbeddingCache::put`] stores one, then evicts once: none of
    /// them is evicted, and the directory is scanned once instead of once per entry. Entries
    /// written before a failure stay. Fails with [`CacheError::Shape`] before writing anything if
    /// any entry's values do not fill its shape.
    pub fn put_many(&self, entries: &[NewEntry], precision: Precision) -> Result<(), CacheError> {
        if let Some(bad) = entries.iter().find(|e| e.rows.checked_mul(e.dim) != Some(e.values.len())) {
            return Err(CacheError::Shape { rows: bad.rows, dim: bad.dim, len: bad.values.len() });
        }
        let mut written = Vec::with_capacity(entries.len());
        for entry in entries {
            let digest = entry.key.digest();
            let shard = self.shard_dir(&digest);
            fs::create_dir_all(&shard).map_err(|e| CacheError::io("create cache directory", &shard, e))?;
            let path = self.entry_path(&digest);
            let bytes = format::encode(&digest, entry.rows, entry.dim, entry.values, precision);
            spahgc_core::write_atomically(&path, |w| w.write_all(&bytes))
                .map_err(|e| CacheError::io("write cache entry", &path, e))?;
            written.push(path);
        }
        self.evict(&written)
    }

    /// Counts and measures the entries (reading only their headers) for `spahgc cache stats`.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let mut per_entry: Vec<EntryInfo> = self
            .scan()?
            .entries
            .into_iter()
            .map(|e| EntryInfo {
                shape: read_shape(&e.path),
                file_name: e.file_name,
                bytes: e.bytes,
                last_used: e.modified,
            })
            .collect();
        per_entry.sort_by(|a, b| b.last_used.cmp(&a.last_used).then_with(|| a.file_name.cmp(&b.file_name)));
        Ok(CacheStats {
            root: self.root.clone(),
            entries: per_entry.len(),
            total_bytes: per_entry.iter().map(|e| e.bytes).sum(),
            max_bytes: self.max_bytes,
            per_entry,
        })
    }

    /// Deletes every entry and returns how many it deleted. Embeddings already returned by `get`
    /// stay readable. Temporary files of writes in progress are left alone.
    pub fn clear(&self) -> Result<usize, CacheError> {
        let _lock = self.lock()?;
        let mut removed = 0;
        for entry in self.scan()?.entries {
            match fs::remove_file(&entry.path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CacheError::io("remove cache entry", &entry.path, e)),
            }
        }
        Ok(removed)
    }

    fn shard_dir(&self, digest: &str) -> PathBuf {
        self.dir.join(&digest[..2])
    }

    fn entry_path(&self, digest: &str) -> PathBuf {
        self.shard_dir(digest).join(format!("{digest}{ENTRY_SUFFIX}"))
    }

    /// Opens (creating it, and the directory, if missing) the eviction lock file.
    fn open_lock_file(&self) -> Result<File, CacheError> {
        fs::create_dir_all(&self.dir).map_err(|e| CacheError::io("create cache directory", &self.dir, e))?;
        let path = self.dir.join(LOCK_NAME);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CacheError::io("create cache lock file", &path, e))
    }

    /// Takes the exclusive eviction lock, blocking while another process or thread holds it. The
    /// lock is released when the returned file is dropped. Each call opens the file anew, so the
    /// lock also excludes other threads of this process.
    fn lock(&self) -> Result<File, CacheError> {
        let file = self.open_lock_file()?;
        file.lock().map_err(|e| CacheError::io("lock", self.dir.join(LOCK_NAME), e))?;
        Ok(file)
    }

    /// Removes stale temporary files, then least-recently-used entries other than those in `keep`
    /// until the entries total at most `max_bytes`.
    fn evict(&self, keep: &[PathBuf]) -> Result<(), CacheError> {
        let _lock = self.lock()?;
        let Scan { mut entries, temps } = self.scan()?;
        let now = SystemTime::now();
        for (path, modified) in temps {
            if now.duration_since(modified).is_ok_and(|age| age > STALE_TEMP_AGE) {
                match fs::remove_file(&path) {
                    Ok(()) => debug!(path = %path.display(), "removed stale temporary file"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => warn!(path = %path.display(), error = %e, "could not remove stale temporary file"),
                }
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        if total <= self.max_bytes {
            return Ok(());
        }
        entries.sort_by(|a, b| a.modified.cmp(&b.modified).then_with(|| a.path.cmp(&b.path)));
        for entry in entries {
            if total <= self.max_bytes {
                break;
            }
            if keep.contains(&entry.path) {
                continue;
            }
            match fs::remove_file(&entry.path) {
                Ok(()) => {
                    debug!(path = %entry.path.display(), bytes = entry.bytes, "evicted cache entry");
                    total -= entry.bytes;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => total -= entry.bytes,
                Err(e) => warn!(path = %entry.path.display(), error = %e, "could not evict cache entry"),
            }
        }
        Ok(())
    }

    /// Lists entry files and temporary files in the shard directories. Files that disappear during
    /// the scan (another process evicting) are skipped; a deleted cache directory is empty.
    fn scan(&self) -> Result<Scan, CacheError> {
        let mut scan = Scan::default();
        let list_err = |path: &Path, e| CacheError::io("list cache directory", path, e);
        let shards = match fs::read_dir(&self.dir) {
            Ok(shards) => shards,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(list_err(&self.dir, e)),
        };
        for shard in shards {
            let shard = shard.map_err(|e| list_err(&self.dir, e))?;
            let is_dir = shard.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !is_shard_name(&shard.file_name()) {
                continue;
            }
            let shard = shard.path();
            let files = match fs::read_dir(&shard) {
                Ok(files) => files,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(list_err(&shard, e)),
            };
            for file in files {
                let file = file.map_err(|e| list_err(&shard, e))?;
                let Ok(file_name) = file.file_name().into_string() else { continue };
                let meta = match file.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(CacheError::io("read metadata of", file.path(), e)),
                };
                if !meta.is_file() {
                    continue;
                }
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                if file_name.starts_with(TEMP_PREFIX) {
                    scan.temps.push((file.path(), modified));
                } else if file_name.ends_with(ENTRY_SUFFIX) {
                    scan.entries.push(EntryFile { path: file.path(), file_name, bytes: meta.len(), modified });
                }
            }
        }
        Ok(scan)
    }
}

/// Resolves the default root from environment variables read through `var`.
fn root_from_env(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, CacheError> {
    let set = |name| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("SPAHGC_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("spahgc"));
    }
    set("HOME").map(|home| home.join(".cache").join("spahgc")).ok_or(CacheError::NoDefaultRoot)
}

/// Whether `name` is a shard directory name: two lowercase hex digits.
fn is_shard_name(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Maps the opened entry `file` (at `path`) and checks it against `digest`: the outer error is an
/// I/O failure, the inner one a bad entry.
fn check_entry(file: &File, path: &Path, digest: &str) -> Result<Result<(Mmap, EntryShape), Invalid>, CacheError> {
    let meta = file.metadata().map_err(|e| CacheError::io("read metadata of cache entry", path, e))?;
    if !meta.is_file() {
        return Ok(Err(Invalid::NotAFile));
    }
    if meta.len() < HEADER_LEN as u64 {
        return Ok(Err(Invalid::Truncated(meta.len())));
    }
    // SAFETY: mapping a file is unsound only if the file is modified while mapped. This crate
    // never modifies an entry in place: `put` replaces it by an atomic rename and eviction
    // unlinks it, both of which leave this mapping's inode untouched.
    let map = unsafe { Mmap::map(file) }.map_err(|e| CacheError::io("memory-map cache entry", path, e))?;
    Ok(format::verify(&map, digest).map(|shape| (map, shape)))
}

/// Deletes an entry that failed verification, logging why.
fn discard(path: &Path, why: &Invalid) {
    match fs::remove_file(path) {
        Ok(()) => warn!(path = %path.display(), reason = %why, "deleted invalid cache entry; it will be recomputed"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            warn!(path = %path.display(), reason = %why, "invalid cache entry was already deleted")
        }
        Err(e) => warn!(path = %path.display(), reason = %why, error = %e, "could not delete invalid cache entry"),
    }
}

/// Reads and checks an entry's header, without verifying its payload.
fn read_shape(path: &Path) -> Option<EntryShape> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut header = [0; HEADER_LEN];
    file.read_exact(&mut header).ok()?;
    format::parse_header(&header, len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn default_root_prefers_spahgc_then_xdg_then_home() {
        let all = [("SPAHGC_CACHE_DIR", "/s"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(root_from_env(env(&all)).unwrap(), PathBuf::from("/s"));
        assert_eq!(root_from_env(env(&all[1..])).unwrap(), PathBuf::from("/x/spahgc"));
        assert_eq!(root_from_env(env(&all[2..])).unwrap(), PathBuf::from("/h/.cache/spahgc"));
        let ignored = [("SPAHGC_CACHE_DIR", ""), ("XDG_CACHE_HOME", "relative"), ("HOME", "/h")];
        assert_eq!(root_from_env(env(&ignored)).unwrap(), PathBuf::from("/h/.cache/spahgc"));
        assert!(matches!(root_from_env(env(&[])), Err(CacheError::NoDefaultRoot)));
    }
}
