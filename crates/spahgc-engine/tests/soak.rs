//! Concurrency soak: eight threads share one engine for `SPAHGC_SOAK_SECONDS` (60 by default,
//! CI's one-minute version; 600 for the long run docs/reliability.md reports). Each draws from a
//! fixed mix of requests — regions of her2st C3 and of a whole-slide image, the same C3 regions
//! as pixel buffers, gene subsets, the gene list, and requests cancelled before or while they
//! run — and every answer must equal what a lone, sequential run gave. The memory caches hold
//! fewer spots and grid blocks than the mix touches, so spots are evicted, read back from the
//! disk cache and recomputed, and blocks predicted again, throughout. Resident memory after the warm-up may grow by less than 5 % by the end.
//! It is read with every thread held between requests and after `malloc_trim`: with eight
//! requests in flight it swings by a tenth either way, so only memory the engine keeps — caches,
//! arenas, anything leaked — is compared. The warm-up lasts a third of the run and at least until
//! every thread has run each request of the mix about four times, so a slow machine compares the
//! same phases as a fast one.
//!
//! glibc is held to two allocator arenas, as docs/reliability.md advises hosts that predict on
//! many threads (`MALLOC_ARENA_MAX=2`): under its default of one arena per busy thread, ten
//! minutes grow by 5.6 % and twenty by 11.6 % through fragmentation. A `MALLOC_ARENA_MAX` set in
//! the environment is left as it is (`MALLOC_ARENA_MAX=0` measures glibc's default).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use spahgc_cache::{EmbeddingCache, Precision};
use spahgc_encoder::{Device, EncoderOptions};
use spahgc_engine::{
    Engine, EngineError, EngineOptions, PixelBuffer, PixelFormat, Region, RegionOptions, RegionPrediction, Request,
};

const THREADS: usize = 8;

/// Lets the monitor hold every worker between two requests, to read memory with none in flight.
#[derive(Default)]
struct Pause {
    requested: AtomicBool,
    /// Workers waiting in [`Pause::between_requests`] or gone (returned or panicked).
    idle: AtomicUsize,
}

impl Pause {
    /// Called by a worker before each request: waits while the monitor holds the workers.
    fn between_requests(&self) {
        if self.requested.load(Ordering::SeqCst) {
            self.idle.fetch_add(1, Ordering::SeqCst);
            while self.requested.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(2));
            }
            self.idle.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Holds the workers, reads `measure` once none has a request in flight, and lets them go on.
    fn held<T>(&self, measure: impl FnOnce() -> T) -> T {
        self.requested.store(true, Ordering::SeqCst);
        while self.idle.load(Ordering::SeqCst) < THREADS {
            sleep(Duration::from_millis(5));
        }
        let value = measure();
        self.requested.store(false, Ordering::SeqCst);
        value
    }
}

/// Counts its worker as idle for good when the worker ends, even by a panic.
struct Gone<'a>(&'a Pause);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_add(1, Ordering::SeqCst);
    }
}

/// One request of the mix.
struct Job {
    /// The slide file; `None`: the pixels below.
    slide: Option<PathBuf>,
    pixels: Option<(spahgc_slide::RgbImage, (u64, u64))>,
    options: RegionOptions,
    genes: Option<Vec<String>>,
}

impl Job {
    fn run(&self, engine: &Engine, cancel: Option<&AtomicBool>) -> Result<RegionPrediction, EngineError> {
        let request = Request { genes: self.genes.as_deref(), cancel, progress: None };
        match (&self.slide, &self.pixels) {
            (Some(slide), _) => engine.predict_region(slide, &self.options, &request),
            (None, Some((rgb, origin))) => {
                let (width, height) = rgb.dimensions();
                let stride = 3 * width as usize;
                let buffer = PixelBuffer { pixels: rgb.as_raw(), width, height, stride, format: PixelFormat::Rgb8 };
                engine.predict_pixels(&buffer, *origin, &self.options, &request)
            }
            (None, None) => unreachable!("a job has a slide or pixels"),
        }
    }
}

/// A square of `side` × `side` grid pitches centred `shift` pitches right of the middle of C3's
/// spots.
fn c3_region(c3: &spahgc_core::Section, side: f64, shift: f64) -> RegionOptions {
    let (x, y, width) = spahgc_testbundle::square_on(c3, side, shift);
    let region = Region { x, y, width, height: width };
    RegionOptions { region: Some(region), microns_per_pixel: c3.microns_per_pixel, tissue_only: false }
}

/// Two arenas for glibc's allocator unless the environment chooses; before the test's threads
/// start (glibc counts its arenas against the limit when a thread first allocates).
fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes no pointers; glibc applies M_ARENA_MAX to arenas made from now on.
        let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        assert_eq!(set, 1, "glibc refused M_ARENA_MAX");
    }
}

/// This process's resident anonymous memory (`RssAnon`: its heap and stacks, not the mapped
/// files such as cache entries and libraries), in bytes.
fn resident_bytes() -> u64 {
    // SAFETY: malloc_trim takes no pointers; glibc locks each arena while it trims it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Asserts that `found` has `expected`'s spots and genes, and returns the largest difference of
/// their values.
fn same(found: &RegionPrediction, expected: &RegionPrediction) -> f32 {
    assert_eq!(found.ids, expected.ids);
    assert_eq!(found.prediction.genes, expected.prediction.genes);
    let (a, b) = (&found.prediction.expression, &expected.prediction.expression);
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The mix: C3 regions by file and by pixels, with and without a gene subset, and two regions of
/// the Aperio slide.
fn jobs(engine: &Engine, c3: &spahgc_core::Section, wsi: &Path) -> Vec<Job> {
    let slide = c3.image.clone().unwrap();
    let subset = Some(vec!["ERBB2".to_string(), "CD74".to_string(), "FN1".to_string()]);
    let mut jobs = Vec::new();
    for (i, shift) in [-3.0, -1.0, 1.0, 3.0].into_iter().enumerate() {
        let options = c3_region(c3, 3.0, shift);
        let genes = if i % 2 == 0 { None } else { subset.clone() };
        let context = engine.pixel_context(options.region.unwrap(), options.microns_per_pixel.unwrap());
        let opened = spahgc_slide::open(&slide).unwrap();
        let pixels = spahgc_slide::read_on_slide(opened.as_ref(), context.covering_pixels()).unwrap();
        jobs.push(Job { slide: None, pixels: Some(pixels), options, genes: subset.clone() });
        jobs.push(Job { slide: Some(slide.clone()), pixels: None, options, genes });
    }
    for (x, genes) in [(700.0, None), (1300.0, subset)] {
        let region = Region { x, y: 700.0, width: 700.0, height: 700.0 };
        let options = RegionOptions { region: Some(region), microns_per_pixel: None, tissue_only: false };
        jobs.push(Job { slide: Some(wsi.to_path_buf()), pixels: None, options, genes });
    }
    jobs
}

#[test]
fn eight_threads_on_one_engine_answer_as_one_and_memory_stays_flat() {
    limit_allocator_arenas();
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let (Some(her2st), Some(wsi)) = (spahgc_testdata::shared("her2st"), spahgc_testdata::shared("wsi")) else {
        return;
    };
    let c3 = spahgc_datasets::her2st::load(&her2st, "C3").unwrap();
    let seconds = std::env::var("SPAHGC_SOAK_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let duration = Duration::from_secs(seconds);
    let cache_dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        encoder: EncoderOptions { device: Device::Cpu, ..Default::default() },
        cache: Some(EmbeddingCache::open(cache_dir.path(), 1 << 30).unwrap()),
        precision: Precision::F32,
        memory_spots: 1200,
        ..Default::default()
    };
    let engine = Engine::open(&bundle, options).unwrap();
    let jobs = jobs(&engine, &c3, &wsi.join("cmu_small_region.svs"));
    let expected: Vec<RegionPrediction> = jobs.iter().map(|job| job.run(&engine, None).unwrap()).collect();
    let all_genes = engine.genes().to_vec();
    assert!(expected.iter().all(|e| !e.ids.is_empty()));

    let done = [(); 4].map(|_| AtomicUsize::new(0)); // answered, gene lists, cancelled, raced
    // Turns every thread together takes before the warm-up may end: each request of the mix, on
    // each thread, about four times.
    let warm_up_turns = 4 * THREADS * jobs.len();
    let turns = AtomicUsize::new(0);
    let max_diff = std::sync::Mutex::new(0f32);
    let stop = AtomicBool::new(false);
    let pause = Pause::default();
    let started = Instant::now();
    let (warm, end) = std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (engine, jobs, expected, all_genes) = (&engine, &jobs, &expected, &all_genes);
            let (done, max_diff, stop, turns, pause) = (&done, &max_diff, &stop, &turns, &pause);
            scope.spawn(move || {
                let _gone = Gone(pause);
                let mut turn = thread;
                while !stop.load(Ordering::Relaxed) {
                    pause.between_requests();
                    turn += THREADS + 1;
                    turns.fetch_add(1, Ordering::Relaxed);
                    let (index, kind) = (turn % jobs.len(), turn % 7);
                    let (job, expected) = (&jobs[index], &expected[index]);
                    match kind {
                        0 => {
                            assert_eq!(engine.genes(), &all_genes[..]);
                            done[1].fetch_add(1, Ordering::Relaxed);
                        }
                        1 => {
                            let raised = AtomicBool::new(true);
                            assert!(matches!(job.run(engine, Some(&raised)), Err(EngineError::Cancelled)));
                            done[2].fetch_add(1, Ordering::Relaxed);
                        }
                        2 => {
                            // Cancelled from another thread while it runs: either answer is right.
                            let flag = AtomicBool::new(false);
                            let result = std::thread::scope(|inner| {
                                inner.spawn(|| {
                                    std::thread::sleep(Duration::from_millis(turn as u64 % 40));
                                    flag.store(true, Ordering::Relaxed);
                                });
                                job.run(engine, Some(&flag))
                            });
                            match result {
                                Ok(found) => {
                                    let diff = same(&found, expected);
                                    let mut max = max_diff.lock().unwrap();
                                    *max = max.max(diff);
                                }
                                Err(EngineError::Cancelled) => {}
                                Err(e) => panic!("a request cancelled while it ran failed: {e}"),
                            }
                            done[3].fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            let diff = same(&job.run(engine, None).unwrap(), expected);
                            let mut max = max_diff.lock().unwrap();
                            *max = max.max(diff);
                            done[0].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        let warming = || started.elapsed() < duration / 3 || turns.load(Ordering::Relaxed) < warm_up_turns;
        while warming() && started.elapsed() < duration * 10 {
            sleep(Duration::from_millis(250));
        }
        let warm = pause.held(resident_bytes);
        let warmed = started.elapsed();
        while started.elapsed() < duration.max(warmed + duration / 2) {
            sleep(Duration::from_millis(250));
        }
        let end = pause.held(resident_bytes);
        stop.store(true, Ordering::Relaxed);
        (warm, end)
    });
    let max_diff = *max_diff.lock().unwrap();
    let [answered, gene_lists, cancelled, raced] = done.map(|d| d.into_inner());
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "soak: {THREADS} threads, {:.0?}: {answered} answered requests, {raced} cancelled while running (answered or \
         cancelled), {cancelled} cancelled before, {gene_lists} gene lists; max difference {max_diff:e}; resident \
         memory with no request in flight {:.1} MiB after warm-up, {:.1} MiB at the end",
        started.elapsed(),
        mib(warm),
        mib(end)
    );
    let turns = turns.into_inner();
    assert!(
        turns >= warm_up_turns,
        "{turns} turns in {:.0?}, short of the warm-up's {warm_up_turns}",
        started.elapsed()
    );
    assert!(answered >= jobs.len(), "only {answered} requests answered");
    assert!(max_diff <= 1e-5, "an answer differs from the sequential one by {max_diff}");
    assert!(end as f64 <= warm as f64 * 1.05, "resident memory grew from {warm} to {end} bytes");
}
