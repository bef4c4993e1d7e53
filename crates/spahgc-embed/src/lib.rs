//! Embeddings of a slide's spots, served from the on-disk cache when an identical request was
//! made before (same encoder, same slide content, same patch geometry and spots), otherwise cut
//! from the slide, encoded in batches, and cached.
//!
//! Spots come in groups, one cache entry per group: a her2st section is one group, a viewer's
//! request is the tiles of the slide-global grid it touches. Groups missing from the cache are
//! encoded together in one stream of batches. Each batch is cut on all cores and then encoded
//! with the cores to itself: a cutting thread beside the encoder's threads stalls them for more
//! time than the cutting takes.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use ndarray::{Array2, ArrayView4, Axis};
use spahgc_cache::{CacheKey, EmbeddingCache, NewEntry, Precision};
use spahgc_encoder::{EncoderError, EncoderManifest, LazyEncoder, write_tensor};
use spahgc_slide::{PatchGeometry, Slide, SlideError, content_id};

/// Version of patch cutting and pixel normalisation; part of every cache key, so bumping it
/// retires entries made the old way.
pub const PREPROCESS_VERSION: u32 = 1;

/// Errors raised while embedding spots.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Neither the caller nor the slide's metadata gives the resolution.
    #[error("slide {0} records no resolution: give its µm per pixel explicitly (--mpp)")]
    NoResolution(std::path::PathBuf),
    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// Told `(spots encoded, spots to encode)` after each encoded batch (and once when everything
/// came from the cache); returning `Break` cancels the work.
pub type Progress<'a> = &'a dyn Fn(usize, usize) -> ControlFlow<()>;

/// A [`Progress`] that watches nothing and never cancels.
pub fn quiet(_: usize, _: usize) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// Spots to embed on one slide.
#[derive(Debug, Clone, Copy)]
pub struct SlideSpots<'a> {
    pub slide: &'a Path,
    /// Level-0 resolution in µm/px; `None` takes it from the slide's metadata.
    pub microns_per_pixel: Option<f64>,
    /// Spot centres in level-0 pixels.
    pub centres: &'a [(f64, f64)],
}

/// Where embeddings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Computed,
}

/// Embeddings of the requested spots, spots × embedding dimension, in request order.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub embeddings: Array2<f32>,
    pub origin: Origin,
}

/// Embeds spots with one encoder, through an optional cache.
pub struct SpotEmbedder<'a> {
    /// Loaded only when something is not in the cache.
    pub encoder: &'a LazyEncoder,
    pub cache: Option<&'a EmbeddingCache>,
    /// Precision of new cache entries. Returned values always equal what the cache will serve
    /// later, so a cold and a warm run give identical embeddings.
    pub precision: Precision,
}

impl SpotEmbedder<'_> {
    /// Embeds the spots of a slide file as one group.
    pub fn embed(&self, spots: &SlideSpots, progress: Progress) -> Result<Embedded, EmbedError> {
        // With the resolution given, a cache hit never opens (decodes) the slide.
        let slide_id = self.cache.map(|_| content_id(spots.slide)).transpose()?;
        if let (Some(mpp), Some(id)) = (spots.microns_per_pixel, &slide_id)
            && let Some(hit) = self.cached(id, mpp, spots.centres)?
        {
            let _ = progress(spots.centres.len(), spots.centres.len());
            return Ok(hit);
        }
        let slide = spahgc_slide::open(spots.slide)?;
        let mpp = spots
            .microns_per_pixel
            .or_else(|| slide.microns_per_pixel())
            .ok_or_else(|| EmbedError::NoResolution(spots.slide.into()))?;
        let mut groups = self.embed_groups(slide.as_ref(), slide_id.as_deref(), mpp, &[spots.centres], progress)?;
        Ok(groups.pop().expect("one group in, one out"))
    }

    /// Embeds each group of spots of an opened slide whose content id is `slide_id` (`None`:
    /// not cached on disk). Groups in the cache are read from it; the others are encoded
    /// together and stored, one cache entry per group. A cache that cannot be read or written
    /// (full disk, permissions) is logged and bypassed: it never fails a request.
    pub fn embed_groups(
        &self,
        slide: &dyn Slide,
        slide_id: Option<&str>,
        microns_per_pixel: f64,
        groups: &[&[(f64, f64)]],
        progress: Progress,
    ) -> Result<Vec<Embedded>, EmbedError> {
        let mut found = Vec::with_capacity(groups.len());
        for group in groups {
            found.push(match slide_id {
                Some(id) => self.cached(id, microns_per_pixel, group)?,
                None => None,
            });
        }
        let missing: Vec<usize> = (0..groups.len()).filter(|&g| found[g].is_none()).collect();
        let centres: Vec<(f64, f64)> = missing.iter().flat_map(|&g| groups[g].iter().copied()).collect();
        if centres.is_empty() {
            let _ = progress(0, 0);
        } else {
            let mut computed = self.compute(slide, microns_per_pixel, &centres, progress)?;
            if self.precision == Precision::F16 {
                computed.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
            }
            let mut start = 0;
            for &g in &missing {
                let rows = computed.slice_axis(Axis(0), (start..start + groups[g].len()).into()).to_owned();
                start += groups[g].len();
                found[g] = Some(Embedded { embeddings: rows, origin: Origin::Computed });
            }
            if let (Some(cache), Some(id)) = (self.cache, slide_id) {
                let manifest = self.encoder.manifest();
                let keys: Vec<CacheKey> =
                    missing.iter().map(|&g| cache_key(manifest, id, microns_per_pixel, groups[g])).collect();
                let entries: Vec<NewEntry> = missing
                    .iter()
                    .zip(&keys)
                    .map(|(&g, key)| {
                        let rows = &found[g].as_ref().expect("computed above").embeddings;
                        let values = rows.as_slice().expect("freshly built arrays are contiguous");
                        NewEntry { key, rows: rows.nrows(), dim: rows.ncols(), values }
                    })
                    .collect();
                // The cache only saves time: a full disk or an unwritable directory costs the
                // next request a recomputation, not this request its answer.
                if let Err(e) = cache.put_many(&entries, self.precision) {
                    tracing::warn!(error = %e, "embeddings not cached; they will be computed again next time");
                }
            }
        }
        Ok(found.into_iter().map(|e| e.expect("every group found or computed")).collect())
    }

    /// The cached embeddings of `centres`, if any.
    fn cached(&self, slide_id: &str, mpp: f64, centres: &[(f64, f64)]) -> Result<Option<Embedded>, EmbedError> {
        let Some(cache) = self.cache else { return Ok(None) };
        let hit = match cache.get(&cache_key(self.encoder.manifest(), slide_id, mpp, centres)) {
            Ok(Some(hit)) => hit,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "cache entry unreadable; computing the embeddings");
                return Ok(None);
            }
        };
        let embeddings = Array2::from_shape_vec((hit.rows(), hit.dim()), hit.to_f32_vec())
            .map_err(|e| EncoderError::Inference(format!("cache entry shape: {e}")))?;
        Ok(Some(Embedded { embeddings, origin: Origin::Cache }))
    }

    /// Cuts and encodes every spot, batch after batch; each batch is cut on all cores while the
    /// encoder waits, and encoded while nothing else runs.
    fn compute(
        &self,
        slide: &dyn Slide,
        mpp: f64,
        centres: &[(f64, f64)],
        progress: Progress,
    ) -> Result<Array2<f32>, EmbedError> {
        let encoder = self.encoder.get()?;
        let manifest = encoder.manifest();
        let geometry = geometry(manifest);
        let mut rows = Vec::with_capacity(centres.len() * manifest.embedding_dim);
        // A lazily decoded slide decodes every patch's pixels now, on all cores, rather than
        // batch by batch.
        let rects = centres.iter().map(|&(x, y)| geometry.rect_around(x, y, mpp)).collect::<Result<Vec<_>, _>>()?;
        slide.prefetch(&rects)?;
        let size = manifest.input_size as usize;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // One tensor's memory, refilled batch after batch: the same pages, not fresh ones the
        // kernel must zero at first touch.
        let mut values = Vec::new();
        let mut done = 0;
        // Batches of equal size, at most the encoder's: a short last batch runs the network
        // on a few patches at a time, at a higher cost per patch.
        let batch = centres.len().div_ceil(centres.len().div_ceil(encoder.batch_size()).max(1)).max(1);
        for chunk in centres.chunks(batch) {
            values.resize(chunk.len() * 3 * size * size, 0.0);
            cut_in_parallel(chunk, &mut values, threads, |spots, part| {
                Ok(write_tensor(&geometry.extract_many(slide, mpp, spots)?, manifest, part)?)
            })?;
            let tensor = ArrayView4::from_shape((chunk.len(), 3, size, size), &values)
                .map_err(|e| EncoderError::Inference(format!("batch tensor: {e}")))?;
            rows.extend(encoder.run(tensor)?.embedding.iter());
            done += chunk.len();
            if progress(done, centres.len()).is_break() {
                return Err(EmbedError::Cancelled);
            }
        }
        Array2::from_shape_vec((centres.len(), manifest.embedding_dim), rows)
            .map_err(|e| EncoderError::Inference(format!("embedding shape: {e}")).into())
    }
}

/// A run of spots and its part of a batch's tensor.
type Run<'a> = (&'a [(f64, f64)], &'a mut [f32]);

/// Runs `fill` on up to `threads` runs of `spots` at once, each with its run's equal share of
/// `values`. This thread takes every run no other thread has started (all of them where no
/// thread starts, as in WebAssembly).
fn cut_in_parallel<F>(spots: &[(f64, f64)], values: &mut [f32], threads: usize, fill: F) -> Result<(), EmbedError>
where
    F: Fn(&[(f64, f64)], &mut [f32]) -> Result<(), EmbedError> + Sync,
{
    let per_thread = spots.len().div_ceil(threads.max(1)).max(1);
    let per_spot = values.len() / spots.len().max(1);
    let runs: Vec<Mutex<Option<Run>>> =
        spots.chunks(per_thread).zip(values.chunks_mut(per_thread * per_spot)).map(|r| Mutex::new(Some(r))).collect();
    let failure = Mutex::new(None);
    let run = |k: usize| {
        let taken = runs[k].lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Err(e)) = taken.map(|(spots, part)| fill(spots, part)) {
            failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        }
    };
    // The scope waits for its threads (and passes on their panics) without joining them one by
    // one: the WebAssembly guest's libc has no pthread_join.
    std::thread::scope(|scope| {
        let run = &run;
        for k in 1..runs.len() {
            let _ = std::thread::Builder::new().name("spahgc-cut".into()).spawn_scoped(scope, move || run(k));
        }
        (0..runs.len()).for_each(run);
    });
    failure.into_inner().unwrap_or_else(|p| p.into_inner()).map_or(Ok(()), Err)
}

/// How an encoder's patches are cut.
fn geometry(manifest: &EncoderManifest) -> PatchGeometry {
    PatchGeometry { field_of_view_um: manifest.field_of_view_um, size_px: manifest.input_size }
}

fn cache_key(manifest: &EncoderManifest, slide_id: &str, mpp: f64, centres: &[(f64, f64)]) -> CacheKey {
    let geometry = geometry(manifest);
    CacheKey {
        encoder_sha256: manifest.onnx_sha256.to_ascii_lowercase(),
        slide_id: slide_id.into(),
        field_of_view_um: geometry.field_of_view_um,
        patch_size_px: geometry.size_px,
        microns_per_pixel: mpp,
        preprocess_version: PREPROCESS_VERSION,
        centres: centres.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_of_spots_fills_its_own_part_of_the_tensor() {
        for (spots, threads) in [(1, 2), (5, 2), (32, 2), (7, 3), (4, 1), (3, 8)] {
            let centres: Vec<(f64, f64)> = (0..spots).map(|i| (i as f64, 0.0)).collect();
            let mut values = vec![-1.0f32; spots * 3];
            cut_in_parallel(&centres, &mut values, threads, |run, part| {
                for (centre, slot) in run.iter().zip(part.chunks_exact_mut(3)) {
                    slot.fill(centre.0 as f32);
                }
                Ok(())
            })
            .unwrap();
            let expected: Vec<f32> = (0..spots).flat_map(|i| [i as f32; 3]).collect();
            assert_eq!(values, expected, "{spots} spots on {threads} threads");
        }
        // A run's error is the call's.
        let centres = [(0.0, 0.0), (1.0, 0.0)];
        let failed = cut_in_parallel(&centres, &mut [0.0; 2], 2, |run, _| {
            if run[0].0 < 0.5 { Ok(()) } else { Err(EmbedError::Cancelled) }
        });
        assert!(matches!(failed, Err(EmbedError::Cancelled)));
    }
}
