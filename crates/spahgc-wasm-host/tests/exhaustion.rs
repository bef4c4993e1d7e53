//! Sandbox exhaustion: calls that run past the time limit, then calls that ask for more than the
//! memory limit, each followed by a good call, leave a sandbox that answers as before, the host's
//! resident memory flat, and the guest still shut in its pre-open.
//!
//! It runs the host-encoder component: on a 2-core machine it compiles in about 3 s and a fresh
//! instance answers its first call in under 1 s, against 26 s and 2.5 s for the self-contained
//! one. CI runs 6 rounds per phase (about 20 s); the long version, 100 of each (about 5 min):
//! `SPAHGC_SANDBOX_ROUNDS=100 cargo test --release -p spahgc-wasm-host --test exhaustion -- --nocapture`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HOST_ENCODER, context_pixels, cpu, predict_rgb, region, runtime};
use spahgc_encoder::Encoder;
use spahgc_engine::{Engine, EngineOptions, RegionOptions, RegionPrediction};
use spahgc_slide::RgbImage;
use spahgc_wasm_host::{GUEST_BUNDLE_DIR, Limits, Sandbox, SandboxOptions, WasmError};

/// Rounds per phase unless `SPAHGC_SANDBOX_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 6;
/// Rounds before resident memory is first measured: allocators and caches settle in them.
const WARM_UP_ROUNDS: usize = 2;
const TIME_LIMIT: Duration = Duration::from_millis(20);
const MEMORY_LIMIT: usize = 400 << 20;
/// Resident memory may grow by this fraction over the rounds after the warm-up ...
const RESIDENT_GROWTH: f64 = 0.05;
/// ... plus this many bytes.
const RESIDENT_SLACK: usize = 32 << 20;

/// This process's resident set size in bytes.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).unwrap()
}

/// Runs `rounds` rounds of a `bad` call then a `good` one on `sandbox`, prints their mean times,
/// and checks that resident memory after the last round is within bounds of that after the
/// warm-up rounds.
fn rounds_of(
    phase: &str,
    rounds: usize,
    sandbox: &mut Sandbox,
    mut bad: impl FnMut(&mut Sandbox),
    mut good: impl FnMut(&mut Sandbox),
) {
    let (mut bad_time, mut good_time) = (Duration::ZERO, Duration::ZERO);
    let mut warm = resident_bytes();
    for round in 1..=rounds {
        let start = Instant::now();
        bad(sandbox);
        let broken = Instant::now();
        good(sandbox);
        bad_time += broken - start;
        good_time += broken.elapsed();
        if round == WARM_UP_ROUNDS {
            warm = resident_bytes();
        }
    }
    let end = resident_bytes();
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    let mean_ms = |total: Duration| total.as_secs_f64() * 1e3 / rounds as f64;
    eprintln!(
        "{phase}: {rounds} rounds, bad call {:.1} ms, good call {:.1} ms (means); resident {:.1} MiB after \
         {WARM_UP_ROUNDS} rounds, {:.1} MiB after {rounds}",
        mean_ms(bad_time),
        mean_ms(good_time),
        mib(warm),
        mib(end),
    );
    let bound = (warm as f64 * (1.0 + RESIDENT_GROWTH)) as usize + RESIDENT_SLACK;
    assert!(end <= bound, "{phase}: resident memory grew from {warm} to {end} bytes (bound {bound})");
}

/// The same spots and values as `expected`.
fn assert_same(found: &RegionPrediction, expected: &RegionPrediction) {
    assert_eq!(found.ids, expected.ids);
    assert_eq!(found.prediction.expression, expected.prediction.expression);
}

#[test]
fn repeated_limit_breaches_leave_the_sandbox_usable_and_host_memory_flat() {
    let Some((bundle, c3)) = common::bundle_and_c3() else { return };
    let Some(hosted) = runtime(HOST_ENCODER) else { return };
    let rounds = std::env::var("SPAHGC_SANDBOX_ROUNDS")
        .map_or(DEFAULT_ROUNDS, |v| v.parse().expect("SPAHGC_SANDBOX_ROUNDS is a number of rounds"));
    let slide = c3.image.clone().unwrap();
    let native = Engine::open(&bundle, EngineOptions { encoder: cpu(), ..Default::default() }).unwrap();
    let encoder = Arc::new(Encoder::load(&native.bundle().encoder_dir(), cpu()).unwrap());
    let options = SandboxOptions { host_encoder: Some(encoder), ..Default::default() };
    let mut sandbox = Sandbox::open(hosted.clone(), &bundle, options.clone()).unwrap();

    // The host reads the pixels once; every call gets the same.
    let good = region(&c3, 2.0);
    let (good_pixels, good_origin) = context_pixels(&mut sandbox, &slide, &good);
    let slow = region(&c3, 3.0);
    let (slow_pixels, slow_origin) = context_pixels(&mut sandbox, &slide, &slow);
    let expected = predict_rgb(&mut sandbox, &good_pixels, good_origin, &good).unwrap();
    let good_call = |sandbox: &mut Sandbox| {
        assert_same(&predict_rgb(sandbox, &good_pixels, good_origin, &good).unwrap(), &expected);
    };

    let past_deadline = |sandbox: &mut Sandbox| {
        sandbox.set_limits(Limits { time: TIME_LIMIT, ..Limits::default() });
        let cut = predict_rgb(sandbox, &slow_pixels, slow_origin, &slow);
        assert!(matches!(cut, Err(WasmError::TimeLimit(t)) if t == TIME_LIMIT), "{cut:?}");
        sandbox.set_limits(Limits::default());
    };
    rounds_of("time limit", rounds, &mut sandbox, past_deadline, good_call);

    // A buffer the sandbox can take in, but not hold twice over while decoding it.
    let limits = Limits { memory_bytes: MEMORY_LIMIT, ..Limits::default() };
    let mut small = Sandbox::open(hosted, &bundle, SandboxOptions { limits, ..options }).unwrap();
    let side = 8000;
    let huge = RgbImage::from_raw(side, side, vec![200u8; 3 * (side * side) as usize]).unwrap();
    let whole = RegionOptions { region: None, ..good };
    let over_memory = |sandbox: &mut Sandbox| {
        let refused = predict_rgb(sandbox, &huge, (0, 0), &whole);
        assert!(matches!(refused, Err(WasmError::MemoryLimit { limit, .. }) if limit == MEMORY_LIMIT), "{refused:?}");
    };
    rounds_of("memory limit", rounds, &mut small, over_memory, good_call);

    for sandbox in [&mut sandbox, &mut small] {
        sandbox.probe_open(GUEST_BUNDLE_DIR).unwrap();
        let refused = sandbox.probe_open("/etc");
        assert!(matches!(refused, Err(WasmError::Bundle(_))), "{refused:?}");
    }
}
