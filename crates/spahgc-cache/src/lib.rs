//! On-disk cache of reference-slice embeddings.
//!
//! Encoding every spot of a reference slide is the slow step of spahgc, and its result depends
//! only on the encoder, the slide and how patches are cut. [`EmbeddingCache`] stores those
//! embeddings on disk, named by the SHA-256 of a [`CacheKey`] holding all of that, and hands them
//! back as verified, memory-mapped [`CachedEmbeddings`].
//!
//! # Layout
//!
//! Entries live at `<root>/v1/<first 2 hex digits of the digest>/<digest>.emb`; the entry format
//! (128-byte header, then the little-endian payload) is described in [`mod@format`]. `v1` is the
//! format version, so a future format never misreads old files. `<root>/v1/.evict.lock` serialises
//! eviction.
//!
//! # Robustness
//!
//! * **Never serves bad data.** [`EmbeddingCache::get`] checks the magic, format version, key
//!   digest, payload length (with checked arithmetic) and a SHA-256 over header and payload before
//!   returning anything. A truncated, corrupt or foreign entry is logged with `tracing::warn!`,
//!   deleted and reported as a miss, so the caller recomputes it.
//! * **Crash safety.** [`EmbeddingCache::put`] writes a `.spahgc-tmp-*` file in the entry's directory,
//!   fsyncs it, renames it over the entry and fsyncs the directory
//!   ([`spahgc_core::write_atomically`]), so a reader sees the whole entry or none of it. Temporary
//!   files left behind by a crash are removed by the eviction scan once they are an hour old.
//! * **Several processes.** Any number of processes and threads may share one root. Concurrent
//!   `put`s of one key write identical content and the last rename wins. Eviction holds an
//!   exclusive lock on `.evict.lock` ([`std::fs::File::lock`]) so one process evicts at a time.
//!   Entries are never modified in place, only replaced by rename or deleted.
//! * **Eviction never pulls data from under a reader.** On Linux (and other Unix systems) deleting
//!   or replacing a file that another process has memory-mapped only removes its name: the
//!   mapping keeps the inode and its data alive until unmapped. So evicting or clearing an entry
//!   that some process is reading cannot make that reader fault (SIGBUS); only truncating a file
//!   in place could, and this crate never does. (On Windows a mapped file cannot be deleted;
//!   eviction then skips it with a warning.)
//! * **Least recently used eviction.** After each `put` the total size of entries is brought down to
//!   `max_bytes` by deleting the entries used longest ago, never the one just written. Recency is
//!   the file's modification time, which `get` sets to the current time (best effort).

mod cache;
mod entry;
mod error;
pub mod format;
mod key;

pub use cache::{CacheStats, EmbeddingCache, EntryInfo, NewEntry, Verified};
pub use entry::CachedEmbeddings;
pub use error::CacheError;
pub use format::{EntryShape, Precision};
pub use key::CacheKey;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_handles_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<EmbeddingCache>();
        shareable::<CachedEmbeddings>();
        shareable::<CacheError>();
    }
}
