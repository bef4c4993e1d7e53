//! One embedding cache shared by several processes at once, as on a cluster: four `spahgc bank
//! build` runs over overlapping her2st sections start together on an empty cache, round after
//! round, and then again with a size bound smaller than one entry, so that every write evicts
//! entries other processes are reading. Every bank equals the one a lone process builds, no
//! process dies (a reader faulting on an evicted mapping would die of SIGBUS), and the cache's
//! statistics agree with a full verification of its entries.
//!
//! `SPAHGC_CACHE_ROUNDS` sets the rounds of each phase: 2 by default, 20 for the long run that
//! docs/reliability.md reports.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{setup, spahgc, succeeds, verified_entries};

/// Each process's sections: every section is embedded by two processes at once.
const JOBS: [&str; 4] = ["C2,C3", "C3,C4", "C4,C5", "C5,C2"];

fn rounds() -> usize {
    std::env::var("SPAHGC_CACHE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

/// `spahgc bank build` of `sections` into `out`, through the cache at `cache`.
fn bank_build(data: &str, sections: &str, out: &str, cache: &Path, extra: &[&str]) -> Command {
    let panel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt");
    let args = ["bank", "build", "--her2st", data, "--sections", sections, "--panel", panel.to_str().unwrap()];
    spahgc(&[&args[..], &["--out", out], extra].concat(), cache)
}

#[test]
fn concurrent_processes_share_one_cache_and_evict_under_each_other() {
    let Some(p) = setup() else { return };
    let expected: Vec<Vec<u8>> = JOBS
        .iter()
        .enumerate()
        .map(|(i, sections)| {
            let alone = p.arg(&format!("alone-{i}.spb"));
            succeeds(&mut bank_build(&p.data, sections, &alone, &p.at(&format!("cache-alone-{i}")), &[]));
            std::fs::read(alone).unwrap()
        })
        .collect();

    // About 0.95 MiB: less than one section's entry, so each write evicts all the others.
    let tiny = ["--cache-max-gib", "0.00093"];
    for (phase, extra) in [("empty cache", &[][..]), ("bound below one entry", &tiny[..])] {
        let cache = p.at(&format!("cache-{}", phase.replace(' ', "-")));
        let started = Instant::now();
        for round in 0..rounds() {
            if phase == "empty cache" {
                let _ = std::fs::remove_dir_all(&cache);
            }
            let children: Vec<_> = JOBS
                .iter()
                .enumerate()
                .map(|(i, sections)| {
                    let out = p.arg(&format!("bank-{i}.spb"));
                    let mut build = bank_build(&p.data, sections, &out, &cache, extra);
                    (out, build.stdout(Stdio::null()).spawn().unwrap())
                })
                .collect();
            for (i, (out, child)) in children.into_iter().enumerate() {
                let ended = child.wait_with_output().unwrap();
                assert!(ended.status.success(), "{phase}, round {round}, job {}: {}", JOBS[i], ended.status);
                assert!(
                    std::fs::read(&out).unwrap() == expected[i],
                    "{phase}, round {round}: bank {} differs",
                    JOBS[i]
                );
            }
            let valid = verified_entries(&cache);
            let (stats, _) = succeeds(&mut spahgc(&["cache", "stats"], &cache));
            let entries = stats["entries"].as_array().unwrap();
            assert_eq!(entries.len() as u64, valid, "{phase}, round {round}: stats and verification disagree");
            let sizes: u64 = entries.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
            assert_eq!(stats["total_bytes"].as_u64(), Some(sizes));
            match phase {
                "empty cache" => assert_eq!(valid, 4, "one entry per section"),
                // Every write's eviction follows its rename, so the last eviction saw every entry
                // and kept only its own.
                _ => assert_eq!(valid, 1, "{phase}, round {round}: entries above the bound"),
            }
        }
        eprintln!("{phase}: {} rounds of 4 processes in {:.1?}", rounds(), started.elapsed());
    }
}
