//! Behaviour of the embedding cache through its public API and its documented on-disk layout.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime};

use half::f16;
use spahgc_cache::format::HEADER_LEN;
use spahgc_cache::{CacheError, CacheKey, EmbeddingCache, EntryShape, NewEntry, Precision};

const ROWS: usize = 24;
const DIM: usize = 40;

fn key(seed: u32) -> CacheKey {
    CacheKey {
        encoder_sha256: "ab".repeat(32),
        slide_id: format!("slide-{seed:04}"),
        field_of_view_um: 112.0,
        patch_size_px: 224,
        microns_per_pixel: 0.2465,
        preprocess_version: 1,
        centres: (0..ROWS).map(|i| (1000.5 + 55.0 * i as f64, 2000.25 + f64::from(seed))).collect(),
    }
}

fn values(seed: u32, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + 0.37 * seed as f32) * 0.731).sin() * 3.0).collect()
}

/// What `values(seed, n)` reads back as after storage at `precision`.
fn stored(seed: u32, n: usize, precision: Precision) -> Vec<f32> {
    let v = values(seed, n);
    match precision {
        Precision::F32 => v,
        Precision::F16 => v.into_iter().map(|x| f16::from_f32(x).to_f32()).collect(),
    }
}

/// The documented location of `key`'s entry.
fn entry_path(root: &Path, key: &CacheKey) -> PathBuf {
    let d = key.digest();
    root.join("v1").join(&d[..2]).join(format!("{d}.emb"))
}

fn entry_bytes(rows: usize, dim: usize, precision: Precision) -> u64 {
    (HEADER_LEN + rows * dim * precision.bytes_per_value()) as u64
}

fn open(root: &Path) -> EmbeddingCache {
    EmbeddingCache::open(root, EmbeddingCache::DEFAULT_MAX_BYTES).unwrap()
}

fn put(cache: &EmbeddingCache, seed: u32, precision: Precision) {
    cache.put(&key(seed), ROWS, DIM, &values(seed, ROWS * DIM), precision).unwrap();
}

fn set_mtime(path: &Path, time: SystemTime) {
    OpenOptions::new().write(true).open(path).unwrap().set_modified(time).unwrap();
}

#[test]
fn f32_round_trip_is_exact_and_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert!(cache.get(&key(1)).unwrap().is_none());
    put(&cache, 1, Precision::F32);
    let got = cache.get(&key(1)).unwrap().expect("hit after put");
    assert_eq!((got.rows(), got.dim(), got.precision()), (ROWS, DIM, Precision::F32));
    assert_eq!(got.as_f32().expect("f32 view"), &values(1, ROWS * DIM)[..]);
    assert!(got.as_f16().is_none());
    assert_eq!(got.to_f32_vec(), values(1, ROWS * DIM));
    let path = entry_path(dir.path(), &key(1));
    assert_eq!(fs::metadata(path).unwrap().len(), entry_bytes(ROWS, DIM, Precision::F32));
}

#[test]
fn f16_round_trip_is_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    put(&cache, 2, Precision::F16);
    let got = cache.get(&key(2)).unwrap().expect("hit after put");
    assert_eq!((got.rows(), got.dim(), got.precision()), (ROWS, DIM, Precision::F16));
    assert!(got.as_f32().is_none());
    let halves = got.as_f16().expect("f16 view");
    let back = got.to_f32_vec();
    assert_eq!(halves.len(), ROWS * DIM);
    for ((&want, &h), &f) in values(2, ROWS * DIM).iter().zip(halves).zip(&back) {
        // Round to nearest: error at most half an ulp, 2^-11 relative for normal values.
        assert!((want - f).abs() <= want.abs() * 2f32.powi(-11) + 2f32.powi(-24), "{want} stored as {f}");
        assert_eq!(h.to_f32(), f);
    }
    let path = entry_path(dir.path(), &key(2));
    assert_eq!(fs::metadata(path).unwrap().len(), entry_bytes(ROWS, DIM, Precision::F16));
}

#[test]
fn empty_embeddings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let mut k = key(3);
    k.centres.clear();
    cache.put(&k, 0, 768, &[], Precision::F16).unwrap();
    let got = cache.get(&k).unwrap().expect("hit");
    assert_eq!((got.rows(), got.dim()), (0, 768));
    assert_eq!(got.as_f16().map(<[f16]>::len), Some(0));
    assert!(got.to_f32_vec().is_empty());
}

#[test]
fn wrong_value_count_is_rejected_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    for (rows, dim) in [(ROWS, DIM + 1), (usize::MAX, 2)] {
        let err = cache.put(&key(4), rows, dim, &values(4, ROWS * DIM), Precision::F32).unwrap_err();
        assert!(matches!(err, CacheError::Shape { .. }), "{err}");
    }
    assert_eq!(cache.stats().unwrap().entries, 0);
    assert!(!entry_path(dir.path(), &key(4)).exists());
}

#[test]
fn digest_is_the_documented_canonical_encoding() {
    // Computed independently (Python hashlib over the encoding described in `CacheKey::digest`).
    let k = CacheKey {
        encoder_sha256: "ab".repeat(32),
        slide_id: "slide-0001".into(),
        field_of_view_um: 112.0,
        patch_size_px: 224,
        microns_per_pixel: 0.2465,
        preprocess_version: 1,
        centres: vec![(1000.5, 2000.25), (-0.0, 3.0)],
    };
    assert_eq!(k.digest(), "39fa8cbf7e4be2d781768188b01a8d164ef979e9cb9856a3e072763e8f82853c");
}

type KeyChange = Box<dyn Fn(&mut CacheKey)>;

#[test]
fn every_key_field_changes_the_digest() {
    let base = key(5);
    let mutations: Vec<(&str, KeyChange)> = vec![
        ("encoder", Box::new(|k| k.encoder_sha256 = "cd".repeat(32))),
        ("slide", Box::new(|k| k.slide_id.push('0'))),
        ("field of view", Box::new(|k| k.field_of_view_um = 112.000_000_1)),
        ("patch size", Box::new(|k| k.patch_size_px = 256)),
        ("resolution", Box::new(|k| k.microns_per_pixel = 0.5)),
        ("preprocess version", Box::new(|k| k.preprocess_version = 2)),
        ("centre moved", Box::new(|k| k.centres[3].1 += 0.5)),
        ("centres reordered", Box::new(|k| k.centres.swap(0, 1))),
        ("x and y swapped", Box::new(|k| k.centres[0] = (k.centres[0].1, k.centres[0].0))),
        (
            "centre dropped",
            Box::new(|k| {
                k.centres.pop();
            }),
        ),
        ("centre added", Box::new(|k| k.centres.push((0.0, 0.0)))),
        ("negative zero", Box::new(|k| k.centres[0].0 = -0.0)),
        // Length prefixes: moving a character between the two strings must not collide.
        (
            "string boundary",
            Box::new(|k| {
                k.encoder_sha256.pop();
                k.slide_id.insert(0, 'b');
            }),
        ),
    ];
    let mut seen = vec![base.digest()];
    assert_eq!(seen[0], base.digest(), "digest is deterministic");
    assert!(seen[0].len() == 64 && seen[0].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    for (what, mutate) in &mutations {
        let mut k = base.clone();
        mutate(&mut k);
        let d = k.digest();
        assert!(!seen.contains(&d), "changing the {what} did not change the digest");
        seen.push(d);
    }
}

#[test]
fn an_entry_is_never_served_for_another_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let mine = key(6);
    let mut other = mine.clone();
    other.encoder_sha256 = "cd".repeat(32);
    cache.put(&mine, ROWS, DIM, &values(6, ROWS * DIM), Precision::F32).unwrap();
    assert!(cache.get(&other).unwrap().is_none());
    // Even an entry file copied under the other key's name is recognised as foreign and dropped.
    let foreign = entry_path(dir.path(), &other);
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::copy(entry_path(dir.path(), &mine), &foreign).unwrap();
    assert!(cache.get(&other).unwrap().is_none());
    assert!(!foreign.exists(), "foreign entry should be deleted");
    assert_eq!(cache.get(&mine).unwrap().expect("own entry intact").to_f32_vec(), values(6, ROWS * DIM));
}

/// Rewrites part of a file in place.
fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Damages the entry file at the given path.
type Damage = Box<dyn Fn(&Path)>;

#[test]
fn damaged_entries_are_deleted_not_served_and_can_be_rewritten() {
    let full = entry_bytes(ROWS, DIM, Precision::F32);
    let damages: Vec<(&str, Damage)> = vec![
        ("truncated by one byte", Box::new(move |p| truncate(p, full - 1))),
        ("truncated inside the header", Box::new(|p| truncate(p, 64))),
        ("emptied", Box::new(|p| truncate(p, 0))),
        ("one byte appended", Box::new(|p| fs::write(p, [fs::read(p).unwrap(), vec![0]].concat()).unwrap())),
        ("first payload byte flipped", Box::new(|p| patch(p, HEADER_LEN, &[fs::read(p).unwrap()[HEADER_LEN] ^ 1]))),
        ("last payload byte flipped", Box::new(move |p| patch(p, full as usize - 1, &[0x5a]))),
        ("checksum byte flipped", Box::new(|p| patch(p, 100, &[fs::read(p).unwrap()[100] ^ 0x80]))),
        ("key overwritten", Box::new(|p| patch(p, 32, key(99).digest().as_bytes()))),
        ("magic overwritten", Box::new(|p| patch(p, 0, b"NOTMAGIC"))),
        ("future format version", Box::new(|p| patch(p, 8, &2u32.to_le_bytes()))),
        ("unknown precision", Box::new(|p| patch(p, 12, &7u32.to_le_bytes()))),
        ("claims f16", Box::new(|p| patch(p, 12, &1u32.to_le_bytes()))),
        (
            "rows and dim swapped",
            Box::new(|p| patch(p, 16, &[(DIM as u64).to_le_bytes(), (ROWS as u64).to_le_bytes()].concat())),
        ),
        ("hostile huge shape", Box::new(|p| patch(p, 16, &[u64::MAX.to_le_bytes(), u64::MAX.to_le_bytes()].concat()))),
        (
            "shape overflowing by element size",
            Box::new(|p| patch(p, 16, &[(1u64 << 62).to_le_bytes(), 1u64.to_le_bytes()].concat())),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let k = key(7);
    let path = entry_path(dir.path(), &k);
    for (what, damage) in &damages {
        put(&cache, 7, Precision::F32);
        damage(&path);
        assert!(cache.get(&k).unwrap().is_none(), "{what}: damaged entry was served");
        assert!(!path.exists(), "{what}: damaged entry was not deleted");
        put(&cache, 7, Precision::F32);
        let again = cache.get(&k).unwrap().unwrap_or_else(|| panic!("{what}: no hit after rewriting"));
        assert_eq!(again.as_f32().unwrap(), &values(7, ROWS * DIM)[..], "{what}");
    }
}

#[test]
fn verify_reads_every_entry_and_deletes_damaged_and_misplaced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    for seed in 1..=3 {
        put(&cache, seed, Precision::F32);
    }
    let damaged = entry_path(dir.path(), &key(2));
    patch(&damaged, HEADER_LEN + 5, &[fs::read(&damaged).unwrap()[HEADER_LEN + 5] ^ 1]);
    // A good entry's file in a shard its name does not belong to.
    let first = entry_path(dir.path(), &key(1));
    let other_shard = if key(1).digest().starts_with("00") { "01" } else { "00" };
    let misplaced = dir.path().join("v1").join(other_shard).join(first.file_name().unwrap());
    fs::create_dir_all(misplaced.parent().unwrap()).unwrap();
    fs::copy(&first, &misplaced).unwrap();

    let verified = cache.verify().unwrap();
    assert_eq!(verified.valid, 2);
    let removed = &verified.removed;
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.iter().any(|r| r.ends_with("checksum mismatch")), "{removed:?}");
    assert!(removed.iter().any(|r| r.ends_with("not the digest of a key in its shard directory")), "{removed:?}");
    assert!(!damaged.exists() && !misplaced.exists());
    assert_eq!(cache.get(&key(1)).unwrap().unwrap().as_f32().unwrap(), &values(1, ROWS * DIM)[..]);
    assert_eq!(cache.verify().unwrap().removed, Vec::<String>::new());
}

#[test]
fn a_root_under_a_regular_file_fails_clearly_at_open_and_creates_nothing() {
    // Tests run as root, where permission bits are ignored; a path under a file is unwritable for all.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let root = blocker.join("cache");
    let err = EmbeddingCache::open(&root, 1 << 20).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CacheError::Io { .. }), "{msg}");
    assert!(msg.contains(&root.display().to_string()) && msg.contains("create cache directory"), "{msg}");
    assert_eq!(fs::read(&blocker).unwrap(), b"x");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "open created something");
}

#[test]
fn an_unwritable_entry_directory_fails_clearly_at_put() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let k = key(8);
    let shard = entry_path(dir.path(), &k).parent().unwrap().to_path_buf();
    fs::write(&shard, b"x").unwrap();
    let err = cache.put(&k, ROWS, DIM, &values(8, ROWS * DIM), Precision::F32).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CacheError::Io { .. }) && msg.contains(&shard.display().to_string()), "{msg}");
    assert_eq!(fs::read(&shard).unwrap(), b"x");
    assert!(cache.get(&k).unwrap().is_none());
    assert_eq!(cache.stats().unwrap().entries, 0);
}

const SHARED: [u32; 2] = [500, 501];
const ROUNDS: u32 = 12;

fn precision_of(seed: u32) -> Precision {
    if seed.is_multiple_of(2) { Precision::F32 } else { Precision::F16 }
}

/// One concurrent writer: repeatedly stores the shared keys and its own key, reading the shared
/// keys back in between. A read may miss (another writer's eviction) but must never be wrong.
fn write_and_read(root: &Path, writer: u32, max_bytes: u64) {
    let cache = EmbeddingCache::open(root, max_bytes).unwrap();
    let n = ROWS * DIM;
    for _ in 0..ROUNDS {
        for seed in [SHARED[0], SHARED[1], 100 + writer] {
            cache.put(&key(seed), ROWS, DIM, &values(seed, n), precision_of(seed)).unwrap();
            for read in SHARED {
                if let Some(got) = cache.get(&key(read)).unwrap() {
                    assert_eq!(got.to_f32_vec(), stored(read, n, precision_of(read)), "writer {writer} read {read}");
                }
            }
        }
    }
}

/// Checks that `seeds` are all present and verify, and that nothing else is cached.
fn assert_exactly_verified(root: &Path, seeds: &[u32]) {
    let cache = open(root);
    for &seed in seeds {
        let got = cache.get(&key(seed)).unwrap().unwrap_or_else(|| panic!("entry {seed} missing or corrupt"));
        assert_eq!(got.to_f32_vec(), stored(seed, ROWS * DIM, precision_of(seed)));
    }
    assert_eq!(cache.stats().unwrap().entries, seeds.len());
    assert_no_temporaries(root);
}

/// After every writer finished, every entry that survived eviction verifies and the bound holds.
fn assert_survivors_verified(root: &Path, max_bytes: u64, writers: u32) {
    let cache = EmbeddingCache::open(root, max_bytes).unwrap();
    let stats = cache.stats().unwrap();
    assert!(stats.total_bytes <= max_bytes, "{} > {max_bytes}", stats.total_bytes);
    let mut found = 0;
    for seed in SHARED.into_iter().chain((0..writers).map(|w| 100 + w)) {
        if let Some(got) = cache.get(&key(seed)).unwrap() {
            assert_eq!(got.to_f32_vec(), stored(seed, ROWS * DIM, precision_of(seed)));
            found += 1;
        }
    }
    assert_eq!(found, stats.entries, "every entry on disk should verify");
    assert!(found >= 1);
    assert_no_temporaries(root);
}

fn assert_no_temporaries(root: &Path) {
    for shard in fs::read_dir(root.join("v1")).unwrap() {
        let shard = shard.unwrap().path();
        if shard.is_dir() {
            for f in fs::read_dir(&shard).unwrap() {
                let name = f.unwrap().file_name();
                assert!(
                    !name.to_string_lossy().starts_with(spahgc_core::TEMPORARY_PREFIX),
                    "left a temporary file {name:?}"
                );
            }
        }
    }
}

fn run_threads(root: &Path, writers: u32, max_bytes: u64) {
    thread::scope(|s| {
        for w in 0..writers {
            s.spawn(move || write_and_read(root, w, max_bytes));
        }
    });
}

#[test]
fn concurrent_threads_leave_only_verified_entries() {
    let dir = tempfile::tempdir().unwrap();
    run_threads(dir.path(), 4, u64::MAX);
    assert_exactly_verified(dir.path(), &[SHARED[0], SHARED[1], 100, 101, 102, 103]);

    let dir = tempfile::tempdir().unwrap();
    let max = 3 * entry_bytes(ROWS, DIM, Precision::F32);
    run_threads(dir.path(), 4, max);
    assert_survivors_verified(dir.path(), max, 4);
}

const CHILD_ROOT: &str = "SPAHGC_CACHE_TEST_CHILD_ROOT";
const CHILD_WRITER: &str = "SPAHGC_CACHE_TEST_CHILD_WRITER";
const CHILD_MAX: &str = "SPAHGC_CACHE_TEST_CHILD_MAX_BYTES";

/// Not a test of its own: the body of the child processes spawned by
/// `concurrent_processes_leave_only_verified_entries`, which re-runs this test binary.
#[test]
#[ignore = "helper run in child processes by concurrent_processes_leave_only_verified_entries"]
fn child_writer() {
    let (Some(root), Some(writer), Some(max)) =
        (std::env::var_os(CHILD_ROOT), std::env::var(CHILD_WRITER).ok(), std::env::var(CHILD_MAX).ok())
    else {
        return;
    };
    write_and_read(Path::new(&root), writer.parse().unwrap(), max.parse().unwrap());
}

fn run_processes(root: &Path, writers: u32, max_bytes: u64) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..writers)
        .map(|w| {
            Command::new(&exe)
                .args(["child_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_ROOT, root)
                .env(CHILD_WRITER, w.to_string())
                .env(CHILD_MAX, max_bytes.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (w, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = format!("writer {w}: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{report}");
        assert!(stdout.contains("test child_writer ... ok"), "child did not run the writer: {report}");
    }
}

#[test]
fn concurrent_processes_leave_only_verified_entries() {
    let dir = tempfile::tempdir().unwrap();
    run_processes(dir.path(), 4, u64::MAX);
    assert_exactly_verified(dir.path(), &[SHARED[0], SHARED[1], 100, 101, 102, 103]);

    // With a bound of three entries, processes evict each other's entries while reading them.
    let dir = tempfile::tempdir().unwrap();
    let max = 3 * entry_bytes(ROWS, DIM, Precision::F32);
    run_processes(dir.path(), 4, max);
    assert_survivors_verified(dir.path(), max, 4);
}

#[test]
fn eviction_removes_the_least_recently_used_not_the_oldest_written() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_bytes(ROWS, DIM, Precision::F32);
    let cache = EmbeddingCache::open(dir.path(), 2 * one + one / 2).unwrap();
    let pause = || thread::sleep(Duration::from_millis(30));
    put(&cache, 10, Precision::F32);
    pause();
    put(&cache, 11, Precision::F32);
    pause();
    assert!(cache.get(&key(10)).unwrap().is_some(), "10 is now more recently used than 11");
    pause();
    put(&cache, 12, Precision::F32);
    assert!(!entry_path(dir.path(), &key(11)).exists(), "11 was least recently used");
    assert!(cache.get(&key(11)).unwrap().is_none());
    assert!(cache.get(&key(10)).unwrap().is_some());
    assert!(cache.get(&key(12)).unwrap().is_some());
    let stats = cache.stats().unwrap();
    assert_eq!((stats.entries, stats.total_bytes), (2, 2 * one));

    // Recency order after the reads above: 10, then 12. Reading 10 again makes 12 the victim.
    pause();
    assert!(cache.get(&key(10)).unwrap().is_some());
    pause();
    put(&cache, 13, Precision::F32);
    assert!(!entry_path(dir.path(), &key(12)).exists());
    assert!(entry_path(dir.path(), &key(10)).exists() && entry_path(dir.path(), &key(13)).exists());
}

#[test]
fn the_entry_just_written_survives_even_above_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache::open(dir.path(), 0).unwrap();
    put(&cache, 20, Precision::F32);
    put(&cache, 21, Precision::F16);
    assert!(cache.get(&key(20)).unwrap().is_none());
    assert!(cache.get(&key(21)).unwrap().is_some());
    assert_eq!(cache.stats().unwrap().entries, 1);
}

#[test]
fn entries_stored_together_all_survive_and_evict_the_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_bytes(ROWS, DIM, Precision::F32);
    let cache = EmbeddingCache::open(dir.path(), 2 * one).unwrap();
    put(&cache, 40, Precision::F32);
    let (keys, data): (Vec<CacheKey>, Vec<Vec<f32>>) = (41..44).map(|s| (key(s), values(s, ROWS * DIM))).unzip();
    let entries: Vec<NewEntry> =
        keys.iter().zip(&data).map(|(key, values)| NewEntry { key, rows: ROWS, dim: DIM, values }).collect();
    cache.put_many(&entries, Precision::F32).unwrap();
    assert!(cache.get(&key(40)).unwrap().is_none(), "the older entry makes room");
    for seed in 41..44 {
        let hit = cache.get(&key(seed)).unwrap().expect("every entry of the batch is kept, above the bound too");
        assert_eq!(hit.to_f32_vec(), stored(seed, ROWS * DIM, Precision::F32));
    }
    // One misshapen entry: nothing of the batch is written.
    let short = [0.0f32; 3];
    let fresh = [
        NewEntry { key: &key(50), rows: ROWS, dim: DIM, values: &data[0] },
        NewEntry { key: &key(51), rows: ROWS, dim: DIM, values: &short },
    ];
    let refused = cache.put_many(&fresh, Precision::F32);
    assert!(matches!(refused, Err(CacheError::Shape { rows: ROWS, dim: DIM, len: 3 })), "{refused:?}");
    assert!(!entry_path(dir.path(), &key(50)).exists() && !entry_path(dir.path(), &key(51)).exists());
}

#[test]
fn a_mapped_entry_stays_readable_after_eviction_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let one = entry_bytes(ROWS, DIM, Precision::F32);
    let cache = EmbeddingCache::open(dir.path(), one).unwrap();
    put(&cache, 30, Precision::F32);
    let held = cache.get(&key(30)).unwrap().expect("hit");
    put(&cache, 31, Precision::F32);
    assert!(!entry_path(dir.path(), &key(30)).exists(), "30 should have been evicted");
    assert_eq!(held.as_f32().unwrap(), &values(30, ROWS * DIM)[..]);

    // A rewrite of the same key replaces the file by rename; the old mapping is unaffected too.
    let held31 = cache.get(&key(31)).unwrap().expect("hit");
    cache.put(&key(31), ROWS, DIM, &values(31, ROWS * DIM), Precision::F16).unwrap();
    assert_eq!(cache.clear().unwrap(), 1);
    assert_eq!(held31.to_f32_vec(), values(31, ROWS * DIM));
    assert_eq!(held.to_f32_vec(), values(30, ROWS * DIM));
}

#[test]
fn stale_temporary_files_are_removed_by_eviction_scans() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    put(&cache, 40, Precision::F32);
    let shard = entry_path(dir.path(), &key(40)).parent().unwrap().to_path_buf();
    let temporary = |name: &str| shard.join(format!("{}{name}", spahgc_core::TEMPORARY_PREFIX));
    let (stale, fresh) = (temporary("crashed"), temporary("in-flight"));
    fs::write(&stale, b"partial").unwrap();
    fs::write(&fresh, b"partial").unwrap();
    set_mtime(&stale, SystemTime::now() - Duration::from_secs(2 * 3600));
    set_mtime(&fresh, SystemTime::now() - Duration::from_secs(30 * 60));
    assert_eq!(cache.stats().unwrap().entries, 1, "temporary files are not entries");
    put(&cache, 41, Precision::F32);
    assert!(!stale.exists(), "an hour-old temporary file should be removed");
    assert!(fresh.exists(), "a recent temporary file may belong to a running writer");
}

#[test]
fn stats_and_clear_report_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache::open(dir.path(), 1 << 30).unwrap();
    let empty = cache.stats().unwrap();
    assert_eq!((empty.entries, empty.total_bytes, empty.max_bytes), (0, 0, 1 << 30));
    assert_eq!(empty.root, dir.path());
    assert!(empty.per_entry.is_empty());

    put(&cache, 50, Precision::F32);
    cache.put(&key(51), 3, 5, &values(51, 15), Precision::F16).unwrap();
    put(&cache, 52, Precision::F16);
    thread::sleep(Duration::from_millis(30));
    assert!(cache.get(&key(51)).unwrap().is_some());

    let stats = cache.stats().unwrap();
    let sizes = [
        entry_bytes(ROWS, DIM, Precision::F32),
        entry_bytes(3, 5, Precision::F16),
        entry_bytes(ROWS, DIM, Precision::F16),
    ];
    assert_eq!(stats.entries, 3);
    assert_eq!(stats.per_entry.len(), 3);
    assert_eq!(stats.total_bytes, sizes.iter().sum::<u64>());
    let first = &stats.per_entry[0];
    assert_eq!(first.file_name, format!("{}.emb", key(51).digest()), "most recently used first");
    assert_eq!(first.shape, Some(EntryShape { rows: 3, dim: 5, precision: Precision::F16 }));
    assert_eq!(first.bytes, sizes[1]);
    assert!(stats.per_entry.windows(2).all(|w| w[0].last_used >= w[1].last_used));
    for (seed, precision, bytes) in [(50, Precision::F32, sizes[0]), (52, Precision::F16, sizes[2])] {
        let name = format!("{}.emb", key(seed).digest());
        let e = stats.per_entry.iter().find(|e| e.file_name == name).expect("listed");
        assert_eq!((e.shape, e.bytes), (Some(EntryShape { rows: ROWS, dim: DIM, precision }), bytes));
    }

    // A damaged header still counts (it occupies disk) but has no shape.
    patch(&entry_path(dir.path(), &key(50)), 0, b"garbage!");
    let stats = cache.stats().unwrap();
    let name = format!("{}.emb", key(50).digest());
    assert_eq!(stats.per_entry.iter().find(|e| e.file_name == name).unwrap().shape, None);
    assert_eq!(stats.entries, 3);

    assert_eq!(cache.clear().unwrap(), 3);
    let cleared = cache.stats().unwrap();
    assert_eq!((cleared.entries, cleared.total_bytes), (0, 0));
    assert!(cache.get(&key(52)).unwrap().is_none());
    assert_eq!(cache.clear().unwrap(), 0);
    put(&cache, 50, Precision::F32);
    assert_eq!(cache.stats().unwrap().entries, 1);
}

#[test]
fn a_cache_directory_deleted_behind_our_back_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let cache = open(&root);
    put(&cache, 60, Precision::F32);
    fs::remove_dir_all(&root).unwrap();
    assert!(cache.get(&key(60)).unwrap().is_none());
    assert_eq!(cache.stats().unwrap().entries, 0);
    assert_eq!(cache.clear().unwrap(), 0);
    put(&cache, 61, Precision::F16);
    assert!(cache.get(&key(61)).unwrap().is_some());
}
