//! The engine's in-memory caches, least recently used first out: each spot's embedding and, once
//! retrieved, its reference neighbours; and each block's predicted expression. With them, a
//! request over spots seen before does no encoder or retrieval work, and one over blocks
//! predicted before runs no network either.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;
use ndarray::Array2;
use spahgc_bank::Neighbour;

use crate::grid::{BlockIndex, Cell};

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

/// One block's graph: the slide's pixels, the resolution, whether glass was skipped, the block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    slide: Arc<str>,
    microns_per_pixel: u64,
    tissue_only: bool,
    block: BlockIndex,
}

impl BlockKey {
    pub(crate) fn new(slide: &Arc<str>, microns_per_pixel: f64, tissue_only: bool, block: BlockIndex) -> Self {
        Self { slide: slide.clone(), microns_per_pixel: microns_per_pixel.to_bits(), tissue_only, block }
    }
}

/// A block's spots, predicted.
pub(crate) struct BlockPrediction {
    /// The block's spots, row by row (margin spots are not kept).
    pub(crate) cells: Vec<Cell>,
    /// Expression of every gene of the bundle, one row per cell.
    pub(crate) expression: Array2<f32>,
}

impl BlockPrediction {
    /// The row of `cell`, if it is one of the block's spots.
    pub(crate) fn row_of(&self, (i, j): Cell) -> Option<usize> {
        self.cells.binary_search_by_key(&(j, i), |&(ci, cj)| (cj, ci)).ok()
    }
}

/// Up to a fixed number of entries; none with a capacity of 0.
pub(crate) struct Memory<K, V> {
    entries: Option<Mutex<LruCache<K, Arc<V>>>>,
}

impl<K: Hash + Eq, V> Memory<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))) }
    }

    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        self.entries.as_ref()?.lock().expect("no panics while the cache is held").get(key).cloned()
    }

    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("no panics while the cache is held").clear();
        }
    }

    pub(crate) fn insert(&self, key: K, value: Arc<V>) {
        if let Some(entries) = &self.entries {
            entries.lock().expect("no panics while the cache is held").put(key, value);
        }
    }
}
