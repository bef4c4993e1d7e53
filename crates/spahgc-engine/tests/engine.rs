//! The engine on real data: a small bundle trained on her2st C2 and C4, predicting C3.

use std::path::Path;

use ndarray::Array2;
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_bundle::{BundleSource, Grid, write_bundle};
use spahgc_cache::Precision;
use spahgc_core::{GenePanel, Normalisation, Section};
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::{Device, EncoderOptions, LazyEncoder};
use spahgc_engine::{Engine, EngineOptions, Region, RegionOptions};
use spahgc_model::{GraphInputs, ModelSettings, fit};

fn embed(encoder: &LazyEncoder, section: &Section) -> Array2<f32> {
    let centres = section.centres();
    let spots = SlideSpots {
        slide: section.image.as_ref().unwrap(),
        microns_per_pixel: section.microns_per_pixel,
        centres: &centres,
    };
    SpotEmbedder { encoder, cache: None, precision: Precision::F32 }.embed(&spots, &|_, _| {}).unwrap().embeddings
}

/// A bundle of a small SpaHGC trained on C2 and C4, written to `dir`; and section C3.
fn bundle(dir: &Path) -> Option<(std::path::PathBuf, Section, Array2<f32>)> {
    let data = spahgc_testdata::shared("her2st")?;
    let encoder_dir = spahgc_testdata::default_encoder()?;
    let options = EncoderOptions { device: Device::Cpu, ..Default::default() };
    let encoder = LazyEncoder::open(&encoder_dir, options).unwrap();
    let load = |name| spahgc_datasets::her2st::load(&data, name).unwrap();
    let (train, c3) = (vec![load("C2"), load("C4")], load("C3"));
    let embeddings: Vec<Array2<f32>> = train.iter().map(|s| embed(&encoder, s)).collect();
    let inputs: Vec<BankSection> =
        train.iter().zip(&embeddings).map(|(section, e)| BankSection { section, embeddings: e.view() }).collect();
    let panel = GenePanel::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt")).unwrap();
    let bank_path = dir.join("bank.spb");
    build_bank(&bank_path, &inputs, &panel.genes, Normalisation::MinMax, "").unwrap();
    let bank = ReferenceBank::open(&bank_path).unwrap();
    let mut settings = ModelSettings::default();
    (settings.architecture.hidden, settings.architecture.layers, settings.training.epochs) = (32, 1, 2);
    let model = fit(&inputs, &bank, &settings, &mut |_| {}).unwrap();
    let out = dir.join("bundle");
    let source = BundleSource {
        name: "test".into(),
        model: &model,
        bank: &bank_path,
        encoder: &encoder_dir,
        grid: Grid { spot_pitch_um: 200.0 },
        licence: "test".into(),
        provenance: "test".into(),
    };
    write_bundle(&out, &source).unwrap();
    let c3_embeddings = embed(&encoder, &c3);
    Some((out, c3, c3_embeddings))
}

#[test]
fn the_engine_predicts_what_evaluation_scores_from_any_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, c3, c3_embeddings)) = bundle(tmp.path()) else { return };
    let options = EngineOptions {
        encoder: EncoderOptions { device: Device::Cpu, ..Default::default() },
        cache: Some(spahgc_cache::EmbeddingCache::open(&tmp.path().join("cache"), 1 << 30).unwrap()),
        precision: Precision::F32,
    };
    let engine = Engine::open(&dir, options).unwrap();
    let slide = c3.image.clone().unwrap();
    let centres = c3.centres();
    let predicted = engine.predict_spots(&slide, c3.microns_per_pixel, &centres, None).unwrap();
    assert_eq!(predicted.expression.dim(), (c3.spots.len(), 250));
    assert_eq!(predicted.genes, engine.genes());

    // The evaluation path: the same graph and network on the same embeddings, then back to
    // expression units.
    let model = engine.bundle().model();
    let graph =
        GraphInputs::build(&centres, c3_embeddings.view(), engine.bundle().bank(), None, model.config().graph).unwrap();
    let mut expected = model.predict(&graph).unwrap();
    model.config().normalisation.invert(&mut expected).unwrap();
    expected.mapv_inplace(|v| v.max(0.0));
    let diff = (&predicted.expression - &expected).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(diff <= 1e-4, "max abs difference {diff}");

    // Four threads predicting overlapping spot sets get what sequential calls get.
    let parts: Vec<&[(f64, f64)]> = (0..4).map(|i| &centres[i * 30..i * 30 + 90]).collect();
    let sequential: Vec<_> =
        parts.iter().map(|p| engine.predict_spots(&slide, c3.microns_per_pixel, p, None).unwrap()).collect();
    let concurrent: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|p| scope.spawn(|| engine.predict_spots(&slide, c3.microns_per_pixel, p, None).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(concurrent, sequential);

    // A region of a whole-slide image: the grid spots inside it, predicted with their margin.
    let wsi = spahgc_testdata::shared("wsi").unwrap().join("cmu_small_region.svs");
    let region = Region { x: 400.0, y: 400.0, width: 1000.0, height: 800.0 };
    let all = RegionOptions { microns_per_pixel: None, tissue_only: false };
    let r = engine.predict_region(&wsi, Some(region), all).unwrap();
    // A 200 µm pitch at 0.499 µm/px: centres every 401 px from 200; 601 and 1002 lie inside.
    assert_eq!(r.ids, ["1x1", "2x1", "1x2", "2x2"]);
    assert_eq!(r.prediction.expression.dim(), (4, 250));
    assert!(r.centres.iter().all(|&(x, y)| (400.0..1400.0).contains(&x) && (400.0..1200.0).contains(&y)));
    let tissue = engine.predict_region(&wsi, None, RegionOptions { tissue_only: true, ..all }).unwrap();
    let whole = engine.predict_region(&wsi, None, all).unwrap();
    assert!(tissue.ids.len() < whole.ids.len() && tissue.ids.iter().all(|id| whole.ids.contains(id)));
    let outside = Region { x: -1.0, ..region };
    let err = engine.predict_region(&wsi, Some(outside), all).unwrap_err().to_string();
    assert!(err.contains("outside the 2220 x 2967 px slide"), "{err}");

    // Bad input is named.
    let err = engine.predict_spots(&slide, Some(-1.0), &centres, None).unwrap_err().to_string();
    assert!(err.contains("must be positive, got -1"), "{err}");
    let err = engine.predict_spots(&slide, Some(f64::NAN), &centres, None).unwrap_err().to_string();
    assert!(err.contains("must be positive"), "{err}");
    let err = engine.predict_spots(&slide, c3.microns_per_pixel, &centres[..1], None).unwrap_err().to_string();
    assert!(err.contains("at least two spots"), "{err}");
    let missing = tmp.path().join("no-such-slide.svs");
    let err = engine.predict_spots(&missing, Some(0.5), &centres, None).unwrap_err().to_string();
    assert!(err.contains("no-such-slide.svs"), "{err}");
}
