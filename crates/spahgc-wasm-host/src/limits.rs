//! The sandbox's limits: a cap on the guest's linear memory and a deadline on each call, kept by
//! a thread that advances the engine's epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the epoch advances: the resolution of a call's deadline.
const TICK: Duration = Duration::from_millis(10);

/// Most elements of a guest's tables (function pointers: a few thousand in spahgc's).
const TABLE_ELEMENTS: usize = 1 << 20;

/// What one guest may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of linear memory an instance may hold.
    pub memory_bytes: usize,
    /// Most wall time one call may take (rounded up to 10 ms), host encoder time included.
    pub time: Duration,
}

impl Default for Limits {
    /// 2 GiB and 10 minutes: room for a whole-viewport request with the encoder inside.
    fn default() -> Self {
        Self { memory_bytes: 2 << 30, time: Duration::from_secs(600) }
    }
}

impl Limits {
    /// The deadline in epoch ticks.
    pub(crate) fn ticks(self) -> u64 {
        (self.time.as_nanos().div_ceil(TICK.as_nanos())).max(1) as u64
    }
}

/// Refuses memory growth past a limit and remembers that it did.
pub(crate) struct MemoryLimit {
    limit: usize,
    refused: Option<usize>,
}

impl MemoryLimit {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, refused: None }
    }

    /// The size a refused growth asked for, if one was refused.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            // An error traps at once: a guest whose allocation fails would abort anyway.
            wasmtime::bail!("memory limit of {} bytes reached", self.limit);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}

/// Advances an engine's epoch every [`TICK`] until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("spahgc-wasm-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
