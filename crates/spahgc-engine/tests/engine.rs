//! The engine on real data: the small test bundle (trained on her2st C2 and C4) predicting C3
//! and regions of a whole-slide image.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::Array2;
use spahgc_cache::Precision;
use spahgc_core::Section;
use spahgc_encoder::{Device, EncoderOptions};
use spahgc_engine::{
    BufferError, Engine, EngineError, EngineOptions, PixelBuffer, PixelFormat, Region, RegionOptions, Request, Shard,
    SlideError,
};
use spahgc_model::GraphInputs;

/// The shared test bundle (trained on her2st C2 and C4) and section C3, which it has not seen.
fn bundle() -> Option<(PathBuf, Section)> {
    let dir = spahgc_testbundle::small()?;
    let c3 = spahgc_datasets::her2st::load(&spahgc_testdata::shared("her2st")?, "C3").unwrap();
    Some((dir, c3))
}

fn options(cache: Option<&Path>) -> EngineOptions {
    EngineOptions {
        encoder: EncoderOptions { device: Device::Cpu, ..Default::default() },
        cache: cache.map(|dir| spahgc_cache::EmbeddingCache::open(dir, 1 << 30).unwrap()),
        precision: Precision::F32,
        ..Default::default()
    }
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    (a - b).iter().fold(0f32, |m, d| m.max(d.abs()))
}

fn cmu() -> PathBuf {
    spahgc_testdata::shared("wsi").unwrap().join("cmu_small_region.svs")
}

const ALL: Request = Request { genes: None, cancel: None, progress: None };

#[test]
fn the_engine_predicts_what_evaluation_scores_from_any_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, c3)) = bundle() else { return };
    let encoder = spahgc_testbundle::cpu_encoder(&spahgc_testdata::default_encoder().unwrap());
    let c3_embeddings = spahgc_testbundle::embed(&encoder, &c3);
    let engine = Engine::open(&dir, options(Some(&tmp.path().join("cache")))).unwrap();
    let slide = c3.image.clone().unwrap();
    let centres = c3.centres();
    let predicted = engine.predict_spots(&slide, c3.microns_per_pixel, &centres, None, &ALL).unwrap();
    assert_eq!(predicted.expression.dim(), (c3.spots.len(), 250));
    assert_eq!(predicted.genes, engine.genes());
    assert_eq!((predicted.stats.encoded, predicted.stats.retrieved), (c3.spots.len(), c3.spots.len()));

    // The evaluation path: the same graph and network on the same embeddings, then back to
    // expression units.
    let model = engine.bundle().model();
    let graph =
        GraphInputs::build(&centres, c3_embeddings.view(), engine.bundle().bank(), None, model.config().graph).unwrap();
    let mut expected = model.predict(&graph).unwrap();
    model.config().normalisation.invert(&mut expected).unwrap();
    expected.mapv_inplace(|v| v.max(0.0));
    let diff = max_diff(&predicted.expression, &expected);
    assert!(diff <= 1e-4, "max abs difference {diff}");

    // Embeddings a host computed: the same prediction; shapes and positions are checked.
    let from_host = engine.predict_embeddings(&centres, c3_embeddings.view(), &ALL).unwrap();
    let diff = max_diff(&from_host.expression, &predicted.expression);
    assert!(diff <= 1e-4, "embeddings from the host: max abs difference {diff}");
    let narrow = engine.predict_embeddings(&centres, c3_embeddings.slice(ndarray::s![.., ..5]), &ALL);
    assert!(matches!(&narrow, Err(EngineError::Input(m)) if m.contains("5 dimensions")), "{narrow:?}");
    let one = engine.predict_embeddings(&centres[..1], c3_embeddings.slice(ndarray::s![..1, ..]), &ALL);
    assert!(matches!(&one, Err(EngineError::Input(m)) if m.contains("at least 2")), "{one:?}");
    let mut lost = centres.clone();
    lost[3] = (f64::NAN, 1.0);
    let nowhere = engine.predict_embeddings(&lost, c3_embeddings.view(), &ALL);
    assert!(matches!(&nowhere, Err(EngineError::Input(m)) if m.contains("centre 3")), "{nowhere:?}");

    // Again: every spot comes from memory, embedding and references alike.
    let warm = engine.predict_spots(&slide, c3.microns_per_pixel, &centres, None, &ALL).unwrap();
    assert_eq!((warm.stats.encoded, warm.stats.from_disk, warm.stats.retrieved), (0, 0, 0));
    assert_eq!(warm.stats.from_memory, c3.spots.len());
    assert_eq!(warm.expression, predicted.expression);
    // A new engine on the same disk cache encodes nothing either.
    let reopened = Engine::open(&dir, options(Some(&tmp.path().join("cache")))).unwrap();
    let from_disk = reopened.predict_spots(&slide, c3.microns_per_pixel, &centres, None, &ALL).unwrap();
    assert_eq!((from_disk.stats.encoded, from_disk.stats.from_disk), (0, c3.spots.len()));
    assert_eq!(from_disk.expression, predicted.expression);

    // Four threads predicting overlapping regions of the her2st image on one cold engine get
    // what sequential calls on another get.
    let regions: Vec<RegionOptions> = (0..4)
        .map(|i| RegionOptions {
            region: Some(Region { x: 2000.0 + 600.0 * f64::from(i), y: 2500.0, width: 2500.0, height: 2000.0 }),
            microns_per_pixel: c3.microns_per_pixel,
            tissue_only: true,
        })
        .collect();
    let sequential: Vec<_> = regions.iter().map(|r| reopened.predict_region(&slide, r, &ALL).unwrap()).collect();
    let concurrent_engine = Engine::open(&dir, options(None)).unwrap();
    let concurrent: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = regions
            .iter()
            .map(|r| scope.spawn(|| concurrent_engine.predict_region(&slide, r, &ALL).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (c, s) in concurrent.iter().zip(&sequential) {
        assert_eq!((&c.ids, &c.centres), (&s.ids, &s.centres));
        let diff = max_diff(&c.prediction.expression, &s.prediction.expression);
        assert!(diff <= 1e-4, "max abs difference {diff}");
    }
}

#[test]
fn regions_lie_on_the_slide_grid_and_pixels_predict_like_the_slide() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, _)) = bundle() else { return };
    let engine = Engine::open(&dir, options(Some(&tmp.path().join("cache")))).unwrap();
    let wsi = cmu();
    let region = Region { x: 400.0, y: 400.0, width: 1000.0, height: 800.0 };
    let keep_all = RegionOptions { region: Some(region), microns_per_pixel: None, tissue_only: false };
    let progress = std::sync::Mutex::new(Vec::new());
    let report = |done, total| progress.lock().unwrap().push((done, total));
    let r = engine.predict_region(&wsi, &keep_all, &Request { progress: Some(&report), ..ALL }).unwrap();
    // A 200 µm pitch at 0.499 µm/px: centres every 401 px from 200; 601 and 1002 lie inside.
    assert_eq!(r.ids, ["1x1", "2x1", "1x2", "2x2"]);
    assert_eq!(r.prediction.expression.dim(), (4, 250));
    assert!(r.centres.iter().all(|&(x, y)| (400.0..1400.0).contains(&x) && (400.0..1200.0).contains(&y)));
    let progress = progress.into_inner().unwrap();
    let encoded = r.prediction.stats.encoded;
    assert_eq!(progress.last(), Some(&(encoded, encoded)), "{progress:?}");

    // The region's spots lie in the first block of 12 x 12 grid cells, which with its margin
    // holds every cell of this 2220 x 2967 px slide (6 x 7 cells): the graph of the whole slide,
    // all of it embedded. The same spots given as centres: one prediction path.
    let spots_of_graph = {
        let pitch = 200.0 / 0.499;
        let cells: Vec<(f64, f64)> = (0..7)
            .flat_map(|j| (0..6).map(move |i| ((f64::from(i) + 0.5) * pitch, (f64::from(j) + 0.5) * pitch)))
            .collect();
        cells
    };
    let stats = r.prediction.stats;
    assert_eq!((stats.blocks, stats.spots, encoded), (1, spots_of_graph.len(), spots_of_graph.len()));
    let by_centres = engine.predict_spots(&wsi, None, &spots_of_graph, None, &ALL).unwrap();
    for (row, centre) in r.centres.iter().enumerate() {
        let at = spots_of_graph.iter().position(|c| (c.0 - centre.0).abs() < 1e-9 && (c.1 - centre.1).abs() < 1e-9);
        let diff = (&by_centres.expression.row(at.unwrap()) - &r.prediction.expression.row(row))
            .iter()
            .fold(0f32, |m, d| m.max(d.abs()));
        assert!(diff <= 1e-4, "{centre:?}: {diff}");
    }

    // The host reads the region's context itself and hands over the pixels, in any format.
    let mpp = r.microns_per_pixel;
    let context = engine.pixel_context(region, mpp).covering_pixels();
    let slide = spahgc_slide::open(&wsi).unwrap();
    let (rgb, (x0, y0)) = spahgc_slide::read_on_slide(slide.as_ref(), context).unwrap();
    let on_pixels = RegionOptions { microns_per_pixel: Some(mpp), ..keep_all };
    // BGRA as OpenSlide returns it, rows padded to twice their length: the stride counts.
    let stride = 8 * rgb.width() as usize;
    let mut bgra = vec![0u8; stride * rgb.height() as usize];
    for (y, row) in rgb.rows().enumerate() {
        for (x, p) in row.enumerate() {
            bgra[y * stride + 4 * x..][..4].copy_from_slice(&[p[2], p[1], p[0], 255]);
        }
    }
    let (width, height) = rgb.dimensions();
    let pixels = PixelBuffer { pixels: &bgra, width, height, stride, format: PixelFormat::Bgra8Premultiplied };
    let p = engine.predict_pixels(&pixels, (x0, y0), &on_pixels, &ALL).unwrap();
    assert_eq!((&p.ids, &p.centres), (&r.ids, &r.centres));
    let diff = max_diff(&p.prediction.expression, &r.prediction.expression);
    assert!(diff <= 1e-4, "pixels vs slide: {diff}");

    // The tissue mask leaves out glass; a warm request does no encoder or retrieval work.
    let whole = RegionOptions { region: None, ..keep_all };
    let tissue = engine.predict_region(&wsi, &RegionOptions { tissue_only: true, ..whole }, &ALL).unwrap();
    let all = engine.predict_region(&wsi, &whole, &ALL).unwrap();
    assert!(tissue.ids.len() < all.ids.len() && tissue.ids.iter().all(|id| all.ids.contains(id)));
    assert!(tissue.in_tissue.iter().all(|&t| t) && all.in_tissue.iter().any(|&t| !t));
    let again = engine.predict_region(&wsi, &whole, &ALL).unwrap();
    let stats = again.prediction.stats;
    // Nothing embedded, retrieved or run: the block's prediction is held in memory.
    assert_eq!((stats.encoded, stats.retrieved, stats.spots, stats.blocks_from_memory), (0, 0, 0, 1));
    assert_eq!(again.prediction.expression, all.prediction.expression);

    // A region of glass holds no spot on tissue: an empty prediction, not an error.
    let glass = RegionOptions {
        region: Some(Region { x: 0.0, y: 0.0, width: 401.0, height: 401.0 }),
        tissue_only: true,
        ..keep_all
    };
    let empty = engine.predict_region(&wsi, &glass, &ALL).unwrap();
    assert!(empty.ids.is_empty() && empty.prediction.expression.dim() == (0, 250));
    // The context a host reads is in whole pixels, never left of or above the slide, and holds
    // the patches of the first block and its margin (cells 0 to 13, 401 px apart) whatever part
    // of it is asked.
    let corner = engine.pixel_context(Region { x: 10.5, y: 20.25, width: 100.0, height: 100.0 }, mpp);
    assert!([corner.x, corner.y, corner.width, corner.height].iter().all(|v| v.fract() == 0.0 && *v >= 0.0));
    assert!(corner.x < 200.0 && corner.y < 200.0 && corner.x + corner.width > 13.5 * 400.8, "{corner:?}");
    assert_eq!(engine.pixel_context(Region { x: 4000.0, y: 4000.0, width: 10.0, height: 10.0 }, mpp), corner);

    // A subset of genes, in the order asked.
    let genes = ["CD74".to_string(), "ERBB2".to_string()];
    let subset = engine.predict_region(&wsi, &keep_all, &Request { genes: Some(&genes), ..ALL }).unwrap();
    assert_eq!(subset.prediction.genes, genes);
    let columns = engine.gene_columns(&genes).unwrap();
    assert_eq!(subset.prediction.expression, r.prediction.expression.select(ndarray::Axis(1), &columns));
}

#[test]
fn large_regions_are_predicted_in_blocks_and_shards_join_into_the_whole() {
    let Some((dir, c3)) = bundle() else { return };
    let engine = Engine::open(&dir, options(None)).unwrap();
    let image = c3.image.clone().unwrap();
    let whole_image = RegionOptions { region: None, microns_per_pixel: c3.microns_per_pixel, tissue_only: true };
    let plan = engine.plan_region(&image, &whole_image).unwrap();
    let whole = engine.predict_region_in_blocks(&image, &whole_image, Shard::WHOLE, &ALL).unwrap();
    assert!(plan.blocks >= 3, "{plan:?}");
    assert_eq!(whole.ids.len(), plan.spots);
    assert_eq!(whole.prediction.expression.dim(), (plan.spots, 250));
    // The blocks partition the region's spots: the same spots as one graph over the whole image.
    let one_graph = engine.predict_region(&image, &whole_image, &ALL).unwrap();
    let sorted = |ids: &[String]| {
        let mut ids = ids.to_vec();
        ids.sort();
        ids
    };
    assert_eq!(sorted(&whole.ids), sorted(&one_graph.ids));

    // Three shards, concatenated in order, are the whole prediction.
    let shards: Vec<_> = (0..3)
        .map(|i| engine.predict_region_in_blocks(&image, &whole_image, Shard::new(i, 3).unwrap(), &ALL).unwrap())
        .collect();
    assert!(shards.iter().all(|s| !s.ids.is_empty()), "each shard holds blocks");
    let ids: Vec<String> = shards.iter().flat_map(|s| s.ids.clone()).collect();
    assert_eq!(ids, whole.ids);
    let views: Vec<_> = shards.iter().map(|s| s.prediction.expression.view()).collect();
    assert_eq!(ndarray::concatenate(ndarray::Axis(0), &views).unwrap(), whole.prediction.expression);
    let blocks: usize = shards.iter().map(|s| s.prediction.stats.blocks_from_memory).sum();
    assert_eq!((blocks, plan.blocks), (whole.prediction.stats.blocks, whole.prediction.stats.blocks));

    // A spot's value is its block's, whatever the region around it: block by block, as one
    // region, and within a smaller region (on a fresh engine), the same values.
    let by_id = |r: &spahgc_engine::RegionPrediction| -> std::collections::HashMap<String, Vec<f32>> {
        r.ids.iter().cloned().zip(r.prediction.expression.rows().into_iter().map(|row| row.to_vec())).collect()
    };
    let (whole_values, one_graph_values) = (by_id(&whole), by_id(&one_graph));
    assert_eq!(whole_values, one_graph_values);
    let small =
        RegionOptions { region: Some(Region { x: 2000.0, y: 2000.0, width: 2500.0, height: 2500.0 }), ..whole_image };
    let fresh = Engine::open(&dir, options(None)).unwrap();
    let direct = fresh.predict_region(&image, &small, &ALL).unwrap();
    assert!(direct.prediction.stats.blocks >= 2, "{:?}", direct.prediction.stats);
    assert!(direct.ids.len() > 10 && direct.ids.len() < whole.ids.len());
    for (id, values) in by_id(&direct) {
        assert_eq!(values, whole_values[&id], "spot {id}");
    }

    // Shards are numbered from 0, and there is at least one.
    for (text, expected) in [("0/0", "at least 1"), ("5/3", "below 3"), ("3/3", "below 3"), ("a/3", "expected I/N")] {
        let e = text.parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
    assert_eq!("2/3".parse::<Shard>().unwrap(), Shard::new(2, 3).unwrap());
}

#[test]
fn bad_requests_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, c3)) = bundle() else { return };
    let engine = Engine::open(&dir, EngineOptions { max_spots: 30, ..options(None) }).unwrap();
    let wsi = cmu();
    let slide = c3.image.clone().unwrap();
    let centres = c3.centres();
    let err = |r: Result<_, EngineError>| r.map(|_: ()| ()).unwrap_err().to_string();
    let region = |x, y, width, height| RegionOptions {
        region: Some(Region { x, y, width, height }),
        microns_per_pixel: None,
        tissue_only: false,
    };
    let on_slide = |options: &RegionOptions| err(engine.predict_region(&wsi, options, &ALL).map(drop));
    let e = on_slide(&region(-1.0, 0.0, 500.0, 500.0));
    assert!(e.contains("outside slide") && e.contains("(0,0,2220,2967)"), "{e}");
    assert!(on_slide(&region(0.0, 0.0, 0.0, 500.0)).contains("empty"));
    assert!(on_slide(&region(0.0, 0.0, -5.0, 500.0)).contains("empty"));
    assert!(on_slide(&region(0.0, 0.0, f64::NAN, 500.0)).contains("empty"));
    let e = on_slide(&region(0.0, 0.0, 2220.0, 2967.0));
    assert!(e.contains("covers 42 grid cells") && e.contains("more than the 30"), "{e}");
    let e = on_slide(&RegionOptions { microns_per_pixel: Some(0.0), ..region(0.0, 0.0, 500.0, 500.0) });
    assert!(e.contains("must be positive, got 0"), "{e}");
    let e = err(engine.predict_spots(&slide, Some(f64::NAN), &centres[..20], None, &ALL).map(drop));
    assert!(e.contains("must be positive, got NaN"), "{e}");
    let e = err(engine.predict_spots(&slide, c3.microns_per_pixel, &centres, None, &ALL).map(drop));
    assert!(e.contains("180 spots") && e.contains("more than the 30"), "{e}");
    let e = err(engine.predict_spots(&slide, c3.microns_per_pixel, &centres[..1], None, &ALL).map(drop));
    assert!(e.contains("at least two spots"), "{e}");
    let missing = tmp.path().join("no-such-slide.svs");
    let e = err(engine.predict_spots(&missing, Some(0.5), &centres[..20], None, &ALL).map(drop));
    assert!(e.contains("no-such-slide.svs"), "{e}");
    let unreadable = tmp.path().join("text.svs");
    std::fs::write(&unreadable, "not a slide").unwrap();
    let e = err(engine.predict_region(&unreadable, &region(0.0, 0.0, 10.0, 10.0), &ALL).map(drop));
    assert!(e.contains("text.svs"), "{e}");
    let genes = ["ERBB2".to_string(), "NOPE".to_string()];
    let e = err(engine
        .predict_region(&wsi, &region(400.0, 400.0, 800.0, 800.0), &Request { genes: Some(&genes), ..ALL })
        .map(drop));
    assert!(e.contains("gene NOPE is not among the 250 genes"), "{e}");

    // Pixel buffers: their geometry (a typed error, which the C ABI turns into its status) and a
    // resolution.
    let pixels = vec![255u8; 64 * 64 * 4];
    let buffer = PixelBuffer { pixels: &pixels, width: 64, height: 64, stride: 255, format: PixelFormat::Rgba8 };
    let mpp = RegionOptions { microns_per_pixel: Some(0.5), ..Default::default() };
    let e = err(engine.predict_pixels(&buffer, (0, 0), &mpp, &ALL).map(drop));
    assert!(e.contains("stride 255 bytes is less than a row of 64 Rgba8 pixels (256 bytes)"), "{e}");
    let short = PixelBuffer { pixels: &pixels[..1000], stride: 256, ..buffer };
    let e = engine.predict_pixels(&short, (0, 0), &mpp, &ALL).map(drop).unwrap_err();
    let too_short = BufferError::TooShort { len: 1000, height: 64, stride: 256, needed: 64 * 256 };
    assert!(matches!(&e, EngineError::Slide(SlideError::Buffer { source, .. }) if *source == too_short), "{e}");
    assert!(e.to_string().contains("1000 bytes"), "{e}");
    let fine = PixelBuffer { stride: 256, ..buffer };
    let e = err(engine.predict_pixels(&fine, (0, 0), &RegionOptions::default(), &ALL).map(drop));
    assert!(e.contains("give its µm per pixel"), "{e}");
    let e = err(engine
        .predict_pixels(&fine, (0, 0), &RegionOptions { microns_per_pixel: Some(-2.0), ..mpp }, &ALL)
        .map(drop));
    assert!(e.contains("must be positive, got -2"), "{e}");

    // A raised cancellation flag ends the request between batches.
    let cancel = AtomicBool::new(true);
    let e = engine.predict_region(&wsi, &region(400.0, 400.0, 800.0, 800.0), &Request { cancel: Some(&cancel), ..ALL });
    assert!(matches!(e, Err(EngineError::Cancelled)));
    cancel.store(false, Ordering::Relaxed);
    engine
        .predict_region(&wsi, &region(400.0, 400.0, 800.0, 800.0), &Request { cancel: Some(&cancel), ..ALL })
        .unwrap();
}

#[test]
fn a_given_bank_replaces_the_bundles_own_and_may_be_sharded() {
    use spahgc_bank::{
        BankSection, EmbeddingPrecision, Normalise, ReferenceBank, build_bank, build_bank_with, join_banks,
    };
    use std::sync::Arc;

    let Some((dir, c3)) = bundle() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let open = |bank: &Path| {
        Engine::open(
            &dir,
            EngineOptions { bank: Some(Arc::new(ReferenceBank::open(bank).unwrap())), ..options(Some(&cache)) },
        )
    };
    let slide = c3.image.clone().unwrap();
    let centres: Vec<(f64, f64)> = c3.centres().into_iter().take(60).collect();
    let predict =
        |engine: &Engine| engine.predict_spots(&slide, c3.microns_per_pixel, &centres, None, &ALL).unwrap().expression;
    let own_bank = dir.join("bank.spb");
    let own = predict(&Engine::open(&dir, options(Some(&cache))).unwrap());

    // The bundle's own bank, given through a shard list of one file: the same predictions.
    let list = tmp.path().join("own.banks");
    join_banks(&list, std::slice::from_ref(&own_bank)).unwrap();
    assert_eq!(max_diff(&predict(&open(&list).unwrap()), &own), 0.0);

    // A second shard (stored as f16) holding C3's own spots changes what C3's spots retrieve,
    // and so their predictions; the engine reports the joined bank.
    let reference = ReferenceBank::open(&own_bank).unwrap();
    let encoder = spahgc_testbundle::cpu_encoder(&spahgc_testdata::default_encoder().unwrap());
    let embeddings = spahgc_testbundle::embed(&encoder, &c3);
    let c3_bank = tmp.path().join("c3.spb");
    let inputs = [BankSection { section: &c3, embeddings: embeddings.view() }];
    build_bank_with(
        &c3_bank,
        &inputs,
        Normalise::As(&reference.meta().norm),
        EmbeddingPrecision::F16,
        &reference.meta().encoder_sha256,
    )
    .unwrap();
    let joined = tmp.path().join("joined.banks");
    join_banks(&joined, &[own_bank, c3_bank]).unwrap();
    let engine = open(&joined).unwrap();
    assert_eq!(engine.bundle().bank().len(), reference.len() + c3.spots.len());
    let with_c3 = predict(&engine);
    assert!(with_c3.iter().all(|v| v.is_finite()));
    assert!(max_diff(&with_c3, &own) > 1e-3, "C3's own spots should change C3's predictions");

    // A bank normalised apart from the model's is refused, naming it.
    let fitted = tmp.path().join("fitted.spb");
    build_bank(
        &fitted,
        &inputs,
        &reference.meta().genes,
        spahgc_core::Normalisation::MinMax,
        &reference.meta().encoder_sha256,
    )
    .unwrap();
    let err = open(&fitted).err().expect("a bank normalised apart").to_string();
    assert!(err.contains("fitted.spb") && err.contains("normalisation"), "{err}");
}
