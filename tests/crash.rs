//! Crash safety of what `spahgc` writes: the embedding cache, a reference bank and a
//! prediction's outputs. Each writer is SIGKILLed at spread-out moments of its run, and run once
//! with a full disk (simulated by `RLIMIT_FSIZE`, with `SIGXFSZ` ignored so that a write fails
//! with an error as on a full disk instead of killing the process). After every fault: no corrupt
//! cache entry is left to be served, nothing half-written is visible under a final name, the
//! previous good state is intact, the next run completes with what an undisturbed run writes,
//! and it removes the temporaries that killed runs left once they are old.
//!
//! `SPAHGC_KILLS` sets the kills per writer: 8 by default, 50 for the long run that
//! docs/reliability.md reports.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{setup, spahgc, succeeds, verified_entries};

/// When to kill a run.
enum Moment {
    /// This long after it starts.
    After(Duration),
    /// This long after a temporary file or directory of a write appears in one of these
    /// directories (or never, if the run ends first).
    WhileWriting(Vec<PathBuf>, Duration),
}

/// Runs `command` and SIGKILLs it at `moment`; whether the kill landed before it finished.
fn killed_at(command: &mut Command, moment: &Moment) -> bool {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spahgc starts");
    match moment {
        Moment::After(delay) => std::thread::sleep(*delay),
        Moment::WhileWriting(dirs, offset) => {
            // Busy: a write to the page cache takes well under a millisecond.
            while child.try_wait().unwrap().is_none() && dirs.iter().all(|d| leftovers(d).is_empty()) {
                std::hint::spin_loop();
            }
            std::thread::sleep(*offset);
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("spahgc ends");
    match status.signal() {
        Some(libc::SIGKILL) => true,
        _ => {
            assert!(status.success(), "an undisturbed run failed: {status}");
            false
        }
    }
}

/// Runs `command` on a "full disk": no file it writes may grow beyond `bytes`.
fn with_full_disk(command: &mut Command, bytes: u64) -> Output {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit and signal are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("spahgc runs")
}

/// What a series of kills did.
struct Kills {
    landed: usize,
    attempts: usize,
    /// Kills after which a write's temporary was left behind: the kill hit the write itself.
    mid_write: usize,
}

/// Kills runs of `command` until `kills` kills have landed: every other run at a moment spread
/// over `[0, 1.1 × full)`, the others 5 µs to 160 ms after a write begins in one of `writes`
/// (the directories where the writer stages its files). `prepare` runs before each run, `check` after.
fn kill_repeatedly(
    kills: usize,
    full: Duration,
    writes: &[PathBuf],
    mut command: impl FnMut() -> Command,
    mut prepare: impl FnMut(),
    mut check: impl FnMut(),
) -> Kills {
    let left = || writes.iter().map(|d| leftovers(d).len()).sum::<usize>();
    let mut done = Kills { landed: 0, attempts: 0, mid_write: 0 };
    while done.landed < kills {
        assert!(
            done.attempts < 4 * kills,
            "only {} of {} kills landed before the run ended",
            done.landed,
            done.attempts
        );
        // The golden-ratio sequence spreads the moments evenly, reproducibly.
        let spread = (done.attempts as f64 * 0.618_033_988_75).fract();
        let moment = if done.attempts.is_multiple_of(2) {
            Moment::After(full.mul_f64(1.1 * spread))
        } else {
            // 5 µs to 160 ms into the write, evenly on a log scale: short writes and long ones.
            Moment::WhileWriting(writes.to_vec(), Duration::from_micros(5).mul_f64((15.0 * spread).exp2()))
        };
        prepare();
        let before = left();
        if killed_at(&mut command(), &moment) {
            done.landed += 1;
            done.mid_write += usize::from(left() > before);
        }
        done.attempts += 1;
        check();
    }
    done
}

fn kills() -> usize {
    std::env::var("SPAHGC_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8)
}

/// Prints what a series of kills did (the figures docs/reliability.md reports).
fn report(writer: &str, kills: &Kills, full: Duration, aged: usize) {
    eprintln!(
        "{writer}: {} kills ({} of them mid-write) in {} runs of {full:.2?}; {aged} leftovers removed by the next run",
        kills.landed, kills.mid_write, kills.attempts
    );
}

/// The shard directories of a cache, where its writes stage their entries.
fn shard_dirs(cache: &Path) -> Vec<PathBuf> {
    let shards = std::fs::read_dir(cache.join("v1")).unwrap().map(|e| e.unwrap().path());
    shards.filter(|p| p.is_dir()).collect()
}

/// Every file under `dir` (relative path → bytes), skipping the hidden temporaries of
/// interrupted writes.
fn visible_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            for (sub, bytes) in visible_files(&path) {
                files.insert(Path::new(path.file_name().unwrap()).join(sub), bytes);
            }
        } else {
            files.insert(PathBuf::from(path.file_name().unwrap()), std::fs::read(&path).unwrap());
        }
    }
    files
}

/// The hidden temporaries that interrupted writes left in `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let hidden = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().starts_with(spahgc_core::TEMPORARY_PREFIX);
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(hidden).collect()
}

/// Makes the leftovers in `dir` look two hours old, as after a crash long ago, and returns how
/// many there are.
fn age_leftovers(dir: &Path) -> usize {
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 60 * 60);
    let found = leftovers(dir);
    for path in &found {
        std::fs::File::open(path).unwrap().set_modified(long_ago).unwrap();
    }
    found.len()
}

fn removes_entries(cache: &Path) {
    succeeds(&mut spahgc(&["cache", "clear"], cache));
}

fn full_disk_error(out: &Output) -> String {
    assert!(!out.status.success(), "a run on a full disk succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("File too large"), "{stderr}");
    stderr
}

#[test]
fn killed_or_starved_embedding_leaves_no_corrupt_cache_entry() {
    let Some(p) = setup() else { return };
    let (cache, out) = (p.at("cache"), p.arg("c3.npy"));
    let embed = || spahgc(&["embed", "--her2st", &p.data, "--section", "C3", "--out", &out], &cache);
    let (_, full) = succeeds(&mut embed());
    let expected = std::fs::read(&out).unwrap();
    let mut writes = shard_dirs(&cache);
    writes.push(p.scratch.path().to_path_buf());
    let done = kill_repeatedly(
        kills(),
        full,
        &writes,
        embed,
        || removes_entries(&cache),
        || {
            assert!(verified_entries(&cache) <= 1);
            assert_eq!(std::fs::read(&out).unwrap(), expected, "the previous embeddings stay whole");
        },
    );
    let aged = writes.iter().map(|d| age_leftovers(d)).sum();
    report("embedding", &done, full, aged);
    let (summary, _) = succeeds(&mut embed());
    assert_eq!(summary["source"], "computed");
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    for dir in &writes {
        assert_eq!(leftovers(dir), Vec::<PathBuf>::new(), "the next write removes old leftovers");
    }
    assert_eq!(succeeds(&mut embed()).0["source"], "cache");
    assert_eq!(std::fs::read(&out).unwrap(), expected, "the cache serves what was computed");

    // A full disk: the cache is skipped with a warning and the answer still comes; the output
    // file cannot be written, which is an error naming it, and the previous one stays.
    removes_entries(&cache);
    let starved = with_full_disk(&mut embed(), 64 << 10);
    let stderr = full_disk_error(&starved);
    assert!(stderr.contains("not cached") && stderr.contains(&out), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    assert_eq!(verified_entries(&cache), 0);
    let without_out = with_full_disk(&mut spahgc(&["embed", "--her2st", &p.data, "--section", "C3"], &cache), 64 << 10);
    assert!(without_out.status.success(), "{}", String::from_utf8_lossy(&without_out.stderr));
    assert!(String::from_utf8_lossy(&without_out.stderr).contains("not cached"));
    assert_eq!(verified_entries(&cache), 0);
}

#[test]
fn killed_or_starved_bank_build_leaves_the_previous_bank() {
    let Some(p) = setup() else { return };
    let (cache, bank) = (p.at("cache"), p.arg("bank.spb"));
    let panel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    let panel = panel.to_str().unwrap();
    let build = || {
        let args = ["bank", "build", "--her2st", &p.data, "--sections", "C3,C5", "--panel", panel, "--out", &bank];
        spahgc(&args, &cache)
    };
    succeeds(&mut build()); // fills the cache
    let (_, full) = succeeds(&mut build());
    let expected = std::fs::read(&bank).unwrap();
    let done = kill_repeatedly(
        kills(),
        full,
        &[p.scratch.path().to_path_buf()],
        build,
        || {},
        || {
            assert_eq!(std::fs::read(&bank).unwrap(), expected, "the bank is the previous one, whole");
            assert_eq!(verified_entries(&cache), 2);
        },
    );
    let aged = age_leftovers(p.scratch.path());
    report("bank", &done, full, aged);
    succeeds(&mut build());
    assert_eq!(std::fs::read(&bank).unwrap(), expected);
    assert_eq!(leftovers(p.scratch.path()), Vec::<PathBuf>::new(), "the next write removes old leftovers");
    succeeds(&mut spahgc(&["bank", "info", &bank], &cache));

    let stderr = full_disk_error(&with_full_disk(&mut build(), 256 << 10));
    assert!(stderr.contains("bank.spb"), "{stderr}");
    assert_eq!(std::fs::read(&bank).unwrap(), expected);
}

#[test]
fn killed_or_starved_prediction_leaves_the_previous_outputs() {
    let Some(p) = setup() else { return };
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let (cache, out) = (p.at("cache"), p.at("predictions").join("C3"));
    let out_arg = out.to_string_lossy().into_owned();
    let bundle = bundle.to_string_lossy().into_owned();
    let predict = || {
        let args = ["predict", "--bundle", &bundle, "--her2st", &p.data, "--section", "C3", "--out", &out_arg];
        let mut command = spahgc(&args, &cache);
        command.arg("--force");
        command
    };
    succeeds(&mut predict()); // fills the cache
    let (_, full) = succeeds(&mut predict());
    // run.json records the run's duration; everything else is the same every time.
    let without_run = |mut files: BTreeMap<PathBuf, Vec<u8>>| {
        let run = files.remove(Path::new("run.json")).expect("run.json is written with the outputs");
        let run: serde_json::Value = serde_json::from_slice(&run).unwrap();
        assert_eq!(run["summary"]["status"], "ok");
        files
    };
    let expected = without_run(visible_files(&out));
    assert!(expected.len() >= 4, "{:?}", expected.keys());
    let done = kill_repeatedly(
        kills(),
        full,
        &[out.parent().unwrap().to_path_buf()],
        predict,
        || {},
        || assert!(without_run(visible_files(&out)) == expected, "the outputs are the previous ones, all of them"),
    );
    let aged = age_leftovers(out.parent().unwrap());
    report("prediction", &done, full, aged);
    succeeds(&mut predict());
    assert!(without_run(visible_files(&out)) == expected);
    assert_eq!(leftovers(out.parent().unwrap()), Vec::<PathBuf>::new(), "the next write removes old leftovers");

    let stderr = full_disk_error(&with_full_disk(&mut predict(), 64 << 10));
    assert!(stderr.contains(&out_arg), "{stderr}");
    assert!(without_run(visible_files(&out)) == expected);
}
