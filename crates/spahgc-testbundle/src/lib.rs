//! A small but real model bundle for tests of everything that opens bundles (engine, C ABI,
//! bindings): SpaHGC (hidden 32, one layer, two epochs) trained on her2st C2 and C4 with the
//! default encoder, a 200 µm grid.
//!
//! It is built once per target directory (`target/test-bundle/`) and shared by every test
//! process; a file lock makes concurrent tests wait for the first build instead of repeating it,
//! and a bundle that no longer opens (an older format) is rebuilt.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use spahgc_bank::{BankSection, ReferenceBank, build_bank};
use spahgc_bundle::{Bundle, BundleSource, Grid, write_bundle};
use spahgc_cache::Precision;
use spahgc_core::{GenePanel, Normalisation, Section};
use spahgc_embed::{SlideSpots, SpotEmbedder};
use spahgc_encoder::{Device, EncoderOptions, LazyEncoder};
use spahgc_model::{ModelSettings, fit};

/// Grid pitch of the test bundle, in µm.
pub const SPOT_PITCH_UM: f64 = 200.0;

/// The test bundle's directory, built now if needed; `None` (after saying why) when the shared
/// data or the default encoder is missing.
pub fn small() -> Option<PathBuf> {
    let data = spahgc_testdata::shared("her2st")?;
    let encoder_dir = spahgc_testdata::default_encoder()?;
    let root = target_dir().join("test-bundle");
    std::fs::create_dir_all(&root).expect("the target directory is writable");
    let lock = std::fs::File::create(root.join(".lock")).expect("lock file");
    lock.lock().expect("locking the test bundle");
    let dir = root.join("bundle");
    if Bundle::open(&dir).is_err() {
        build(&data, &encoder_dir, &dir);
    }
    Some(dir)
}

/// A square of `side` × `side` grid pitches of the test bundle on `section`'s image, centred
/// `shift` pitches right of the mean of its spot centres: `(x, y, width)` in level-0 pixels.
pub fn square_on(section: &Section, side: f64, shift: f64) -> (f64, f64, f64) {
    let pitch = SPOT_PITCH_UM / section.microns_per_pixel.expect("her2st sections have a resolution");
    let centres = section.centres();
    let n = centres.len() as f64;
    let (cx, cy) = centres.iter().fold((0.0, 0.0), |(x, y), c| (x + c.0 / n, y + c.1 / n));
    let width = side * pitch;
    (cx + shift * pitch - width / 2.0, cy - width / 2.0, width)
}

/// The embeddings of a section's spots with the default encoder (no cache).
pub fn embed(encoder: &LazyEncoder, section: &Section) -> Array2<f32> {
    let centres = section.centres();
    let spots = SlideSpots {
        slide: section.image.as_ref().expect("her2st sections have images"),
        microns_per_pixel: section.microns_per_pixel,
        centres: &centres,
    };
    let embedder = SpotEmbedder { encoder, cache: None, precision: Precision::F32 };
    embedder.embed(&spots, &spahgc_embed::quiet).expect("embedding a her2st section").embeddings
}

/// The default encoder on the CPU.
pub fn cpu_encoder(dir: &Path) -> LazyEncoder {
    LazyEncoder::open(dir, EncoderOptions { device: Device::Cpu, ..Default::default() }).expect("the default encoder")
}

fn build(data: &Path, encoder_dir: &Path, out: &Path) {
    let encoder = cpu_encoder(encoder_dir);
    let train: Vec<Section> =
        ["C2", "C4"].iter().map(|name| spahgc_datasets::her2st::load(data, name).expect("her2st section")).collect();
    let embeddings: Vec<Array2<f32>> = train.iter().map(|s| embed(&encoder, s)).collect();
    let inputs: Vec<BankSection> =
        train.iter().zip(&embeddings).map(|(section, e)| BankSection { section, embeddings: e.view() }).collect();
    let panel = GenePanel::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../panels/her2st-250.txt"))
        .expect("the committed panel");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let bank_path = scratch.path().join("bank.spb");
    build_bank(&bank_path, &inputs, &panel.genes, Normalisation::MinMax, &encoder.manifest().onnx_sha256)
        .expect("building the bank");
    let bank = ReferenceBank::open(&bank_path).expect("opening the bank");
    let mut settings = ModelSettings::default();
    (settings.architecture.hidden, settings.architecture.layers, settings.training.epochs) = (32, 1, 2);
    let model = fit(&inputs, &bank, &settings, &mut |_| {}).expect("training");
    let source = BundleSource {
        name: "test".into(),
        model: &model,
        bank: &bank_path,
        encoder: encoder_dir,
        grid: Grid { spot_pitch_um: SPOT_PITCH_UM },
        licence: "test".into(),
        provenance: "spahgc-testbundle: her2st C2, C4; hidden 32, 1 layer, 2 epochs".into(),
    };
    write_bundle(out, &source).expect("writing the bundle");
}

/// The target directory this test binary was built into.
fn target_dir() -> PathBuf {
    // Test binaries live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors().nth(3).map(Path::to_path_buf).expect("<target>/<profile>/deps/<binary>")
}
