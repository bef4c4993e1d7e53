//! The in-memory cache of spots: each spot's embedding and, once retrieved, its reference
//! neighbours, least recently used first out. With it, a request over spots seen before does no
//! encoder or retrieval work.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;
use spahgc_bank::Neighbour;

/// One spot's patch: the slide's pixels, the resolution and the centre.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SpotKey {
    slide: Arc<str>,
    microns_per_pixel: u64,
    x: u64,
    y: u64,
}

impl SpotKey {
    pub(crate) fn new(slide: &Arc<str>, microns_per_pixel: f64, (x, y): (f64, f64)) -> Self {
        Self { slide: slide.clone(), microns_per_pixel: microns_per_pixel.to_bits(), x: x.to_bits(), y: y.to_bits() }
    }
}

/// What is known about a spot.
pub(crate) struct SpotEntry {
    pub(crate) embedding: Box<[f32]>,
    /// The bank spots most similar to the embedding, all sections eligible.
    pub(crate) neighbours: OnceLock<Vec<Neighbour>>,
}

/// Up to a fixed number of spots; none with a capacity of 0.
pub(crate) struct SpotMemory {
    spots: Option<Mutex<LruCache<SpotKey, Arc<SpotEntry>>>>,
}

impl SpotMemory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { spots: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))) }
    }

    pub(crate) fn get(&self, key: &SpotKey) -> Option<Arc<SpotEntry>> {
        self.spots.as_ref()?.lock().expect("no panics while the cache is held").get(key).cloned()
    }

    pub(crate) fn clear(&self) {
        if let Some(spots) = &self.spots {
            spots.lock().expect("no panics while the cache is held").clear();
        }
    }

    pub(crate) fn insert(&self, key: SpotKey, entry: Arc<SpotEntry>) {
        if let Some(spots) = &self.spots {
            spots.lock().expect("no panics while the cache is held").put(key, entry);
        }
    }
}
