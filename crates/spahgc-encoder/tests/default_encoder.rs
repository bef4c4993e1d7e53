//! The default encoder, converted by `tools/encoders/efficientnet_lite0_to_onnx.py`, checked
//! against facts that do not depend on the conversion code: ImageNet classes of known photos,
//! and agreement between two independent runtimes.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use spahgc_encoder::{BackendKind, Device, Encoder, EncoderError, EncoderOptions, locate, to_tensor};
use spahgc_slide::RgbImage;

fn model_dir() -> Option<PathBuf> {
    spahgc_testdata::default_encoder()
}

fn cpu(backend: BackendKind) -> EncoderOptions {
    EncoderOptions { backend, device: Device::Cpu, batch_size: 4, threads: None }
}

/// Resizes the shorter side to 224 px and crops the centre, as ImageNet evaluation does.
fn imagenet_view(path: &Path) -> RgbImage {
    let img = image::open(path).unwrap().into_rgb8();
    let (w, h) = img.dimensions();
    let scale = 224.0 / w.min(h) as f64;
    let (nw, nh) = ((w as f64 * scale).round() as u32, (h as f64 * scale).round() as u32);
    let resized = imageops::resize(&img, nw, nh, FilterType::Triangle);
    imageops::crop_imm(&resized, (nw - 224) / 2, (nh - 224) / 2, 224, 224).to_image()
}

fn top5(row: ndarray::ArrayView1<f32>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.truncate(5);
    idx
}

#[test]
fn imagenet_photos_get_their_classes() {
    let Some(dir) = model_dir() else { return };
    let fixtures = locate::project_file("fixtures").expect("setup installs the fixtures with the model");
    let encoder = Encoder::load(&dir, cpu(BackendKind::Ort)).unwrap();
    let patches = [imagenet_view(&fixtures.join("chelsea.png")), imagenet_view(&fixtures.join("coffee.png"))];
    let out = encoder.run(to_tensor(&patches, encoder.manifest()).unwrap().view()).unwrap();
    let logits = out.logits.expect("the default encoder exposes its classifier");
    let cat = top5(logits.row(0));
    assert!(cat.iter().any(|c| (281..=285).contains(c)), "chelsea.png top-5 {cat:?} has no cat class");
    let cup = top5(logits.row(1));
    assert!(cup.iter().any(|c| [967, 968].contains(c)), "coffee.png top-5 {cup:?} has no cup/espresso class");
    assert_eq!(out.embedding.dim(), (2, 1280));
}

#[test]
fn ort_and_tract_agree_on_real_tissue() {
    let Some(dir) = model_dir() else { return };
    let Some(her2st) = spahgc_testdata::shared("her2st") else { return };
    let slide = spahgc_slide::ImageSlide::open(&her2st.join("ST-imgs/C3.jpg")).unwrap();
    let geometry = spahgc_slide::PatchGeometry { field_of_view_um: 154.56, size_px: 224 };
    let patches: Vec<RgbImage> = [(6066.06, 1159.01), (5187.72, 1471.11), (4916.0, 1477.25)]
        .iter()
        .map(|&(x, y)| geometry.extract(&slide, 0.69, x, y).unwrap())
        .collect();
    let ort = Encoder::load(&dir, cpu(BackendKind::Ort)).unwrap().embed(&patches).unwrap();
    let tract = Encoder::load(&dir, cpu(BackendKind::Tract)).unwrap().embed(&patches).unwrap();
    let max_diff = (&ort - &tract).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(max_diff <= 1e-3, "ort and tract differ by {max_diff}");
    assert!(ort.iter().any(|&v| v > 0.1), "embeddings must not be all-zero");
}

/// A scratch copy of the model directory whose manifest `edit` rewrites.
fn altered_copy(dir: &Path, onnx: Option<&[u8]>, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = onnx.map_or_else(|| std::fs::read(dir.join("model.onnx")).unwrap(), <[u8]>::to_vec);
    std::fs::write(tmp.path().join("model.onnx"), &bytes).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["onnx_sha256"] = spahgc_encoder::sha256_hex(&bytes).into();
    edit(&mut manifest);
    std::fs::write(tmp.path().join("manifest.json"), manifest.to_string()).unwrap();
    tmp
}

#[test]
fn a_checksum_mismatch_is_refused() {
    let Some(dir) = model_dir() else { return };
    let tmp = altered_copy(&dir, None, |m| m["onnx_sha256"] = "0".repeat(64).into());
    let err = Encoder::load(tmp.path(), cpu(BackendKind::Ort)).err().unwrap();
    assert!(matches!(err, EncoderError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("model.onnx"), "{err}");
}

/// `..` and `/` are one path component each, but not a file inside the model directory.
#[test]
fn an_onnx_file_outside_the_model_directory_is_refused() {
    let Some(dir) = model_dir() else { return };
    for name in ["..", "/", ".", "sub/model.onnx", ""] {
        let tmp = altered_copy(&dir, None, |m| m["onnx_file"] = name.into());
        let err = Encoder::load(tmp.path(), cpu(BackendKind::Ort)).err().unwrap();
        assert!(err.to_string().contains("onnx_file"), "{name:?}: {err}");
    }
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let Some(dir) = model_dir() else { return };
    let tmp = altered_copy(&dir, Some(b"this is not an ONNX protobuf"), |_| {});
    for backend in [BackendKind::Ort, BackendKind::Tract] {
        let err = Encoder::load(tmp.path(), cpu(backend)).err().unwrap();
        assert!(matches!(err, EncoderError::Model { .. }), "{backend:?}: {err}");
    }
}

#[test]
fn an_input_size_that_disagrees_with_the_model_is_refused() {
    let Some(dir) = model_dir() else { return };
    let tmp = altered_copy(&dir, None, |m| m["input_size"] = 256.into());
    let err = Encoder::load(tmp.path(), cpu(BackendKind::Ort)).err().unwrap();
    assert!(err.to_string().contains("256"), "{err}");
    let err = Encoder::load(tmp.path(), cpu(BackendKind::Tract)).err().unwrap();
    assert!(matches!(err, EncoderError::Model { .. }), "{err}");
}

#[test]
fn an_explicit_gpu_that_cannot_start_is_an_error() {
    let Some(dir) = model_dir() else { return };
    // The PyPI CPU build of ONNX Runtime has no CUDA provider; `auto` falls back, `cuda` must not.
    let options = EncoderOptions { device: Device::Cuda, ..cpu(BackendKind::Ort) };
    match Encoder::load(&dir, options) {
        Err(err) => assert!(matches!(err, EncoderError::Device { .. }), "{err}"),
        Ok(encoder) => assert_eq!(encoder.provider(), "CUDA"),
    }
    let auto = Encoder::load(&dir, EncoderOptions { device: Device::Auto, ..cpu(BackendKind::Ort) }).unwrap();
    assert!(["CPU", "CUDA"].contains(&auto.provider()));
}
