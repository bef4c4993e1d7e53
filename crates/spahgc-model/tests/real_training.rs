//! Training on real her2st sections (C2 and C3, embedded with the default encoder): the loss
//! falls, a saved model predicts exactly what it predicted before saving, a seed fixes the run,
//! and bad input is refused with an error that names it.

use std::sync::OnceLock;

use ndarray::{Array2, s};
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_core::{GenePanel, Normalisation, Section};
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::{Device, EncoderOptions, LazyEncoder};
use spahgc_model::{EpochReport, GraphInputs, ModelSettings, SpaHgc, WEIGHTS_FILE, fit};

struct Fixture {
    _dir: tempfile::TempDir,
    sections: Vec<Section>,
    embeddings: Vec<Array2<f32>>,
    bank: ReferenceBank,
}

fn bank_sections<'a>(sections: &'a [Section], embeddings: &'a [Array2<f32>]) -> Vec<BankSection<'a>> {
    sections.iter().zip(embeddings).map(|(section, e)| BankSection { section, embeddings: e.view() }).collect()
}

impl Fixture {
    fn inputs(&self) -> Vec<BankSection<'_>> {
        bank_sections(&self.sections, &self.embeddings)
    }

    /// C3's graph with references from C2 only.
    fn c3_graph(&self, settings: &ModelSettings) -> GraphInputs {
        let c3 = &self.sections[1];
        GraphInputs::build(&c3.centres(), self.embeddings[1].view(), &self.bank, Some("C3"), settings.graph).unwrap()
    }
}

/// C2 and C3 with their embeddings and a bank of both on the committed panel, built once.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let data = spahgc_testdata::shared("her2st")?;
            let encoder_dir = spahgc_testdata::default_encoder()?;
            let options = EncoderOptions { device: Device::Cpu, ..Default::default() };
            let encoder = LazyEncoder::open(&encoder_dir, options).unwrap();
            let embedder = SpotEmbedder { encoder: &encoder, cache: None, precision: spahgc_cache::Precision::F32 };
            let sections: Vec<Section> =
                ["C2", "C3"].iter().map(|name| spahgc_datasets::her2st::load(&data, name).unwrap()).collect();
            let embeddings = sections
                .iter()
                .map(|section| {
                    let centres = section.centres();
                    let spots = SlideSpots {
                        slide: section.image.as_ref().unwrap(),
                        microns_per_pixel: section.microns_per_pixel,
                        centres: &centres,
                    };
                    embedder.embed(&spots, &spahgc_embed::quiet).unwrap().embeddings
                })
                .collect::<Vec<_>>();
            let panel =
                GenePanel::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt"))
                    .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bank.spb");
            build_bank(&path, &bank_sections(&sections, &embeddings), &panel.genes, Normalisation::MinMax, "").unwrap();
            let bank = ReferenceBank::open(&path).unwrap();
            Some(Fixture { _dir: dir, sections, embeddings, bank })
        })
        .as_ref()
}

/// A small network and a short run, so the test takes seconds.
fn small(epochs: usize, seed: u64) -> ModelSettings {
    let mut settings = ModelSettings::default();
    settings.architecture.hidden = 64;
    settings.architecture.layers = 2;
    settings.training.epochs = epochs;
    settings.training.learning_rate = 1e-3;
    settings.training.seed = seed;
    settings
}

fn train(f: &Fixture, settings: &ModelSettings) -> (SpaHgc, Vec<EpochReport>) {
    let mut reports = Vec::new();
    let model = fit(&f.inputs(), &f.bank, settings, &mut |r| reports.push(*r)).unwrap();
    (model, reports)
}

#[test]
fn training_lowers_the_loss_and_a_saved_model_predicts_the_same() {
    let Some(f) = fixture() else { return };
    let settings = small(20, 7);
    let (model, reports) = train(f, &settings);
    assert_eq!(reports.len(), 20);
    let (first, last) = (reports[0], reports[19]);
    assert!(last.loss < 0.8 * first.loss, "loss {} after one epoch, {} after twenty", first.loss, last.loss);
    assert!(last.mse < first.mse && last.pcc > first.pcc, "{first:?} → {last:?}");

    let graph = f.c3_graph(&settings);
    let predicted = model.predict(&graph).unwrap();
    assert_eq!(predicted.dim(), (f.sections[1].spots.len(), 250));
    assert!(predicted.iter().all(|v| v.is_finite()));

    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = SpaHgc::load(dir.path()).unwrap();
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.predict(&graph).unwrap(), predicted, "a saved model predicts bit for bit the same");

    // A weights file that does not match its config is refused.
    let weights = dir.path().join(WEIGHTS_FILE);
    let mut bytes = std::fs::read(&weights).unwrap();
    let last_byte = bytes.len() - 1;
    bytes[last_byte] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let err = SpaHgc::load(dir.path()).err().expect("a corrupted weights file fails to load").to_string();
    assert!(err.contains("SHA-256") && err.contains(WEIGHTS_FILE), "{err}");
}

#[test]
fn a_seed_fixes_the_run() {
    let Some(f) = fixture() else { return };
    let graph = f.c3_graph(&small(2, 1));
    let run = |seed| {
        let (model, reports) = train(f, &small(2, seed));
        (model.predict(&graph).unwrap(), reports)
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b, "same seed, same reports and predictions");
    assert_ne!(a.0, c.0, "another seed, another model");
}

#[test]
fn bad_input_is_named() {
    let Some(f) = fixture() else { return };
    let settings = small(1, 0);
    let (model, _) = train(f, &settings);
    let c3 = &f.sections[1];
    let centres = c3.centres();

    // Fewer spots than a graph needs.
    let err = GraphInputs::build(&centres[..1], f.embeddings[1].slice(s![..1, ..]), &f.bank, None, settings.graph);
    assert!(err.err().unwrap().to_string().contains("at least two spots"));

    // NaN in the embeddings.
    let mut nan = f.embeddings[1].clone();
    nan[[3, 5]] = f32::NAN;
    let err = GraphInputs::build(&centres, nan.view(), &f.bank, None, settings.graph).err().unwrap();
    assert!(err.to_string().contains("NaN"), "{err}");

    // Embeddings of another width than the model's.
    let graph = f.c3_graph(&settings);
    let narrow = GraphInputs::from_parts(
        graph.graph().clone(),
        f.embeddings[1].slice(s![.., ..100]),
        graph.graph().reference_features(&f.bank).slice(s![.., ..350]),
    )
    .unwrap();
    let err = model.predict(&narrow).err().unwrap().to_string();
    assert!(err.contains("100-d") && err.contains("1280-d"), "{err}");
}
