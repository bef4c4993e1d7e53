//! The embedding pipeline on real slides: cache hits equal fresh computation, in both precisions.

use std::ops::ControlFlow;
use std::path::PathBuf;

use spahgc_cache::{EmbeddingCache, Precision};
use spahgc_embed::{EmbedError, Origin, SlideSpots, SpotEmbedder, quiet};
use spahgc_encoder::{Device, EncoderOptions, LazyEncoder};

fn encoder() -> Option<LazyEncoder> {
    let dir = spahgc_testdata::default_encoder()?;
    let options = EncoderOptions { device: Device::Cpu, batch_size: 4, ..Default::default() };
    Some(LazyEncoder::open(&dir, options).unwrap())
}

fn c3() -> Option<(PathBuf, Vec<(f64, f64)>)> {
    let dir = spahgc_testdata::shared("her2st")?;
    let section = spahgc_datasets::her2st::load(&dir, "C3").unwrap();
    // Ten spots: more than two batches of four, the last one partial.
    let centres = section.spots.iter().take(10).map(|s| (s.x, s.y)).collect();
    Some((section.image.unwrap(), centres))
}

#[test]
fn cached_embeddings_equal_computed_ones_in_both_precisions() {
    let (Some(encoder), Some((image, centres))) = (encoder(), c3()) else { return };
    let spots = SlideSpots { slide: &image, microns_per_pixel: Some(0.69), centres: &centres };
    let uncached = SpotEmbedder { encoder: &encoder, cache: None, precision: Precision::F32 }.embed(&spots, &quiet);
    let uncached = uncached.unwrap().embeddings;
    for precision in [Precision::F32, Precision::F16] {
        let dir = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::open(dir.path(), u64::MAX).unwrap();
        let embedder = SpotEmbedder { encoder: &encoder, cache: Some(&cache), precision };
        let progress = std::sync::Mutex::new(Vec::new());
        let cold = embedder
            .embed(&spots, &|done, total| {
                progress.lock().unwrap().push((done, total));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(cold.origin, Origin::Computed);
        assert_eq!(*progress.lock().unwrap(), vec![(4, 10), (8, 10), (10, 10)]);
        let warm = embedder.embed(&spots, &quiet).unwrap();
        assert_eq!(warm.origin, Origin::Cache);
        assert_eq!(warm.embeddings, cold.embeddings, "{precision:?}: a hit serves what the cold run returned");
        let max_diff = (&cold.embeddings - &uncached).iter().fold(0f32, |m, d| m.max(d.abs()));
        let tolerance = if precision == Precision::F16 { 1e-2 } else { 0.0 };
        assert!(max_diff <= tolerance, "{precision:?}: {max_diff}");
        // Other spots of the same slide are another entry.
        let fewer = SlideSpots { centres: &centres[..9], ..spots };
        assert_eq!(embedder.embed(&fewer, &quiet).unwrap().origin, Origin::Computed);
    }
    assert!(encoder.loaded().is_some());
}

#[test]
fn a_slide_without_resolution_needs_one() {
    let Some(encoder) = encoder() else { return };
    let Some(wsi) = spahgc_testdata::shared("wsi") else { return };
    let slide = wsi.join("tcga-cr-7395-01a-01-ts1.svs");
    let spots = SlideSpots { slide: &slide, microns_per_pixel: None, centres: &[(1000.0, 1000.0)] };
    let err = SpotEmbedder { encoder: &encoder, cache: None, precision: Precision::F32 }.embed(&spots, &quiet);
    assert!(matches!(err, Err(EmbedError::NoResolution(_))));
}

#[test]
fn groups_are_cached_one_entry_each_and_encoded_together() {
    let (Some(encoder), Some((image, centres))) = (encoder(), c3()) else { return };
    let slide = spahgc_slide::open(&image).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = EmbeddingCache::open(dir.path(), u64::MAX).unwrap();
    let embedder = SpotEmbedder { encoder: &encoder, cache: Some(&cache), precision: Precision::F32 };
    let whole = embedder.embed_groups(slide.as_ref(), Some("c3"), 0.69, &[&centres], &quiet).unwrap();
    // The first group is a cache hit now; the second is new and encoded on its own.
    let (first, second) = (&centres[..10], &centres[3..7]);
    let calls = std::sync::Mutex::new(Vec::new());
    let groups = embedder
        .embed_groups(slide.as_ref(), Some("c3"), 0.69, &[first, second], &|done, total| {
            calls.lock().unwrap().push((done, total));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!((groups[0].origin, groups[1].origin), (Origin::Cache, Origin::Computed));
    assert_eq!(*calls.lock().unwrap(), vec![(4, 4)], "only the new group is encoded");
    assert_eq!(groups[0].embeddings, whole[0].embeddings);
    let max_diff = (&groups[1].embeddings - &whole[0].embeddings.slice(ndarray::s![3..7, ..]))
        .iter()
        .fold(0f32, |m, d| m.max(d.abs()));
    assert!(max_diff < 1e-5, "a spot's embedding does not depend on its batch: {max_diff}");
    assert_eq!(cache.stats().unwrap().entries, 2);
    // Without a slide id nothing is read from or written to the disk cache.
    let uncached = embedder.embed_groups(slide.as_ref(), None, 0.69, &[first], &quiet).unwrap();
    assert_eq!(uncached[0].origin, Origin::Computed);
    assert_eq!(cache.stats().unwrap().entries, 2);
}

#[test]
fn the_progress_callback_cancels_between_batches() {
    let (Some(encoder), Some((image, centres))) = (encoder(), c3()) else { return };
    let slide = spahgc_slide::open(&image).unwrap();
    let embedder = SpotEmbedder { encoder: &encoder, cache: None, precision: Precision::F32 };
    let calls = std::sync::Mutex::new(0);
    let result = embedder.embed_groups(slide.as_ref(), None, 0.69, &[&centres], &|_, _| {
        *calls.lock().unwrap() += 1;
        ControlFlow::Break(())
    });
    assert!(matches!(result, Err(EmbedError::Cancelled)));
    assert_eq!(*calls.lock().unwrap(), 1, "no batch is encoded after the cancelling call");
}
