//! Embeddings of a slide's spots, served from the on-disk cache when an identical request was
//! made before (same encoder, same slide content, same patch geometry and spots), otherwise cut
//! from the slide, encoded in batches, and cached.
//!
//! Spots come in groups, one cache entry per group: a her2st section is one group, a viewer's
//! request is the tiles of the slide-global grid it touches. Groups missing from the cache are
//! encoded together in one stream of batches, and patch cutting for the next batch runs on a
//! second thread while the encoder works on the current one, so reading hides behind inference.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Mutex, mpsc};

use ndarray::{Array2, Array4, Axis};
use spahgc_cache::{CacheKey, EmbeddingCache, Precision};
use spahgc_encoder::{EncoderError, EncoderManifest, LazyEncoder, to_tensor_in};
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
            for g in missing {
                let rows = computed.slice_axis(Axis(0), (start..start + groups[g].len()).into()).to_owned();
                start += groups[g].len();
                if let (Some(cache), Some(id)) = (self.cache, slide_id) {
                    let values = rows.as_slice().expect("freshly built arrays are contiguous");
                    let key = cache_key(self.encoder.manifest(), id, microns_per_pixel, groups[g]);
                    // The cache only saves time: a full disk or an unwritable directory costs the
                    // next request a recomputation, not this request its answer.
                    if let Err(e) = cache.put(&key, rows.nrows(), rows.ncols(), values, self.precision) {
                        tracing::warn!(error = %e, "embeddings not cached; they will be computed again next time");
                    }
                }
                found[g] = Some(Embedded { embeddings: rows, origin: Origin::Computed });
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

    /// Cuts and encodes every spot, cutting batch n+1 while batch n is encoded.
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
        let batch = encoder.batch_size();
        let mut rows = Vec::with_capacity(centres.len() * manifest.embedding_dim);
        // A lazily decoded slide decodes every patch's pixels now, on all cores, rather than
        // batch by batch on the cutting thread while the encoder wants those cores.
        let rects = centres.iter().map(|&(x, y)| geometry.rect_around(x, y, mpp)).collect::<Result<Vec<_>, _>>()?;
        slide.prefetch(&rects)?;
        // Tensors go back to the cutting thread once encoded, to be filled again.
        let spare = Mutex::new(Vec::<Vec<f32>>::new());
        let spare_buffer = || spare.lock().unwrap_or_else(|p| p.into_inner());
        let cut = |chunk: &[(f64, f64)]| -> Result<Array4<f32>, EmbedError> {
            let buffer = spare_buffer().pop().unwrap_or_default();
            Ok(to_tensor_in(&geometry.extract_many(slide, mpp, chunk)?, manifest, buffer)?)
        };
        let mut done = 0;
        let mut encode = |tensor: Array4<f32>| -> Result<(), EmbedError> {
            rows.extend(encoder.run(tensor.view())?.embedding.iter());
            done += tensor.dim().0;
            spare_buffer().push(tensor.into_raw_vec_and_offset().0);
            match progress(done, centres.len()) {
                ControlFlow::Break(()) => Err(EmbedError::Cancelled),
                ControlFlow::Continue(()) => Ok(()),
            }
        };
        std::thread::scope(|scope| {
            let (send, receive) = mpsc::sync_channel::<Result<Array4<f32>, EmbedError>>(1);
            let cutter = std::thread::Builder::new().name("spahgc-cut".into()).spawn_scoped(scope, move || {
                for chunk in centres.chunks(batch) {
                    let tensor = cut(chunk);
                    let failed = tensor.is_err();
                    if send.send(tensor).is_err() || failed {
                        return;
                    }
                }
            });
            match cutter {
                // Returning early drops the receiver, which stops the cutting thread.
                Ok(_) => receive.into_iter().try_for_each(|tensor| encode(tensor?)),
                // Where no thread can start (WebAssembly), cutting and encoding take turns.
                Err(_) => centres.chunks(batch).try_for_each(|chunk| encode(cut(chunk)?)),
            }
        })?;
        Array2::from_shape_vec((centres.len(), manifest.embedding_dim), rows)
            .map_err(|e| EncoderError::Inference(format!("embedding shape: {e}")).into())
    }
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
