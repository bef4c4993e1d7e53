//! Embeddings of a slide's spots, served from the on-disk cache when an identical request was
//! made before (same encoder, same slide content, same patch geometry and spots), otherwise cut
//! from the slide, encoded in batches, and cached.
//!
//! Patch cutting for the next batch runs on a second thread while the encoder works on the
//! current one, so reading the slide hides behind inference.

use std::path::Path;
use std::sync::mpsc;

use ndarray::{Array2, Array4};
use spahgc_cache::{CacheError, CacheKey, EmbeddingCache, Precision};
use spahgc_encoder::{EncoderError, EncoderManifest, LazyEncoder, to_tensor};
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
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Neither the caller nor the slide's metadata gives the resolution.
    #[error("slide {0} records no resolution: give its µm per pixel explicitly (--mpp)")]
    NoResolution(std::path::PathBuf),
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
    /// Embeds `spots`; `progress(done, total)` is called after each encoded batch.
    pub fn embed(&self, spots: &SlideSpots, progress: &dyn Fn(usize, usize)) -> Result<Embedded, EmbedError> {
        let manifest = self.encoder.manifest();
        let geometry = PatchGeometry { field_of_view_um: manifest.field_of_view_um, size_px: manifest.input_size };
        let slide_id = self.cache.map(|_| content_id(spots.slide)).transpose()?;
        let cached = |mpp: f64| -> Result<Option<Embedded>, EmbedError> {
            let (Some(cache), Some(slide_id)) = (self.cache, &slide_id) else { return Ok(None) };
            let Some(hit) = cache.get(&cache_key(manifest, slide_id, &geometry, mpp, spots.centres))? else {
                return Ok(None);
            };
            progress(spots.centres.len(), spots.centres.len());
            let embeddings = Array2::from_shape_vec((hit.rows(), hit.dim()), hit.to_f32_vec())
                .map_err(|e| EncoderError::Inference(format!("cache entry shape: {e}")))?;
            Ok(Some(Embedded { embeddings, origin: Origin::Cache }))
        };
        // With the resolution given, a cache hit never opens (decodes) the slide.
        if let Some(mpp) = spots.microns_per_pixel
            && let Some(hit) = cached(mpp)?
        {
            return Ok(hit);
        }
        let slide = spahgc_slide::open(spots.slide)?;
        let mpp = spots
            .microns_per_pixel
            .or_else(|| slide.microns_per_pixel())
            .ok_or_else(|| EmbedError::NoResolution(spots.slide.into()))?;
        if spots.microns_per_pixel.is_none()
            && let Some(hit) = cached(mpp)?
        {
            return Ok(hit);
        }
        let mut embeddings = self.compute(slide.as_ref(), mpp, &geometry, spots.centres, progress)?;
        if let (Some(cache), Some(slide_id)) = (self.cache, &slide_id) {
            if self.precision == Precision::F16 {
                embeddings.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
            }
            let values = embeddings.as_slice().expect("freshly built arrays are contiguous");
            let key = cache_key(manifest, slide_id, &geometry, mpp, spots.centres);
            cache.put(&key, embeddings.nrows(), embeddings.ncols(), values, self.precision)?;
        }
        Ok(Embedded { embeddings, origin: Origin::Computed })
    }

    /// Cuts and encodes every spot, cutting batch n+1 while batch n is encoded.
    fn compute(
        &self,
        slide: &dyn Slide,
        mpp: f64,
        geometry: &PatchGeometry,
        centres: &[(f64, f64)],
        progress: &dyn Fn(usize, usize),
    ) -> Result<Array2<f32>, EmbedError> {
        let encoder = self.encoder.get()?;
        let manifest = encoder.manifest();
        let batch = encoder.batch_size();
        let mut rows = Vec::with_capacity(centres.len() * manifest.embedding_dim);
        std::thread::scope(|scope| {
            let (send, receive) = mpsc::sync_channel::<Result<Array4<f32>, EmbedError>>(1);
            scope.spawn(move || {
                for chunk in centres.chunks(batch) {
                    let tensor = geometry
                        .extract_many(slide, mpp, chunk)
                        .map_err(EmbedError::from)
                        .and_then(|patches| Ok(to_tensor(&patches, manifest)?));
                    let failed = tensor.is_err();
                    if send.send(tensor).is_err() || failed {
                        return;
                    }
                }
            });
            let mut done = 0;
            for tensor in receive {
                let tensor = tensor?;
                let out = encoder.run(tensor.view())?;
                rows.extend(out.embedding.iter());
                done += tensor.dim().0;
                progress(done, centres.len());
            }
            Ok::<(), EmbedError>(())
        })?;
        Array2::from_shape_vec((centres.len(), manifest.embedding_dim), rows)
            .map_err(|e| EncoderError::Inference(format!("embedding shape: {e}")).into())
    }
}

fn cache_key(
    manifest: &EncoderManifest,
    slide_id: &str,
    geometry: &PatchGeometry,
    mpp: f64,
    centres: &[(f64, f64)],
) -> CacheKey {
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
