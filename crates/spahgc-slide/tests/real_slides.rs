//! Reading real slides: her2st JPEGs, Aperio SVS (JPEG and JPEG 2000 tiles), tiled TIFF.

use spahgc_slide::{PatchGeometry, Rect, SlideError, open, read_region};

fn wsi(name: &str) -> Option<std::path::PathBuf> {
    spahgc_testdata::shared("wsi").map(|d| d.join(name))
}

/// Mean of each channel; tissue is darker and redder than the white glass.
fn mean_rgb(img: &spahgc_slide::RgbImage) -> [f64; 3] {
    let n = (img.width() * img.height()) as f64;
    let mut sum = [0f64; 3];
    for p in img.pixels() {
        for c in 0..3 {
            sum[c] += f64::from(p[c]);
        }
    }
    sum.map(|s| s / n)
}

#[test]
fn aperio_svs_reads_levels_and_resolution() {
    let Some(path) = wsi("cmu_small_region.svs") else { return };
    let slide = open(&path).unwrap();
    assert_eq!(slide.dimensions(), (2220, 2967));
    let mpp = slide.microns_per_pixel().unwrap();
    assert!((mpp - 0.499).abs() < 1e-3, "{mpp}");
    let patch =
        PatchGeometry { field_of_view_um: 154.56, size_px: 224 }.extract(slide.as_ref(), mpp, 1110.0, 1480.0).unwrap();
    assert_eq!(patch.dimensions(), (224, 224));
    let [r, g, b] = mean_rgb(&patch);
    assert!(r < 240.0 && r > g && b > g, "an H&E patch is pink-purple, got mean {r:.0},{g:.0},{b:.0}");
}

#[test]
fn patches_cut_together_equal_patches_cut_alone() {
    let Some(path) = wsi("cmu_small_region.svs") else { return };
    let slide = open(&path).unwrap();
    let geometry = PatchGeometry { field_of_view_um: 154.56, size_px: 224 };
    // A row of spots at half the field of view, running off the slide's left edge.
    let centres: Vec<(f64, f64)> = (0..12).map(|i| (-60.0 + 155.0 * i as f64, 700.5)).collect();
    let together = geometry.extract_many(slide.as_ref(), 0.499, &centres).unwrap();
    for (patch, &(x, y)) in together.iter().zip(&centres) {
        assert!(*patch == geometry.extract(slide.as_ref(), 0.499, x, y).unwrap(), "patch at ({x}, {y}) differs");
    }
    // Spots far apart are read one by one, with the same result.
    let scattered = [(100.0, 100.0), (2100.0, 2900.0)];
    let apart = geometry.extract_many(slide.as_ref(), 0.499, &scattered).unwrap();
    assert!(apart[1] == geometry.extract(slide.as_ref(), 0.499, 2100.0, 2900.0).unwrap());
}

#[test]
fn a_downsampled_read_uses_the_coarser_level() {
    let Some(path) = wsi("tcga-cr-7395-01a-01-ts1.svs") else { return };
    let slide = open(&path).unwrap();
    assert_eq!(slide.dimensions(), (4443, 3567));
    assert_eq!(slide.level_downsamples().len(), 2);
    assert!(slide.microns_per_pixel().is_none(), "this slide records no MPP");
    // The whole slide at half size comes from level 1 (JPEG 2000 tiles).
    let half = read_region(slide.as_ref(), Rect { x: 0, y: 0, width: 4443, height: 3567 }, 2221, 1783).unwrap();
    let full = read_region(slide.as_ref(), Rect { x: 2000, y: 1600, width: 64, height: 64 }, 32, 32).unwrap();
    assert_eq!(half.dimensions(), (2221, 1783));
    assert_eq!(full.dimensions(), (32, 32));
}

#[test]
fn generic_tiled_tiff_and_tiny_svs_open() {
    let Some(boxes) = wsi("boxes.tiff") else { return };
    let slide = open(&boxes).unwrap();
    assert_eq!(slide.level_downsamples().len(), 4);
    let Some(small) = wsi("small.svs") else { return };
    let slide = open(&small).unwrap();
    assert_eq!(slide.dimensions(), (16, 16));
    // A patch far larger than the slide is white beyond its edges.
    let patch = read_region(slide.as_ref(), Rect { x: -8, y: -8, width: 32, height: 32 }, 32, 32).unwrap();
    assert_eq!(patch.get_pixel(0, 0).0, [255, 255, 255]);
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let Some(her2st) = spahgc_testdata::shared("her2st") else { return };
    let jpeg = std::fs::read(her2st.join("ST-imgs/C3.jpg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 2]).unwrap();
    let err = open(&truncated).err().unwrap();
    assert!(matches!(err, SlideError::Open { .. }) && err.to_string().contains("truncated"), "{err}");
    let text = dir.path().join("notes.svs");
    std::fs::write(&text, "not a slide").unwrap();
    assert!(open(&text).is_err());
    assert!(open(&dir.path().join("missing.svs")).is_err());
}

#[test]
fn the_tissue_mask_tells_stained_tissue_from_glass() {
    let Some(path) = wsi("cmu_small_region.svs") else { return };
    let slide = open(&path).unwrap();
    let (width, height) = slide.dimensions();
    let mask = spahgc_slide::TissueMask::new(slide.as_ref(), Rect { x: 0, y: 0, width, height }).unwrap();
    // The top-left corner is empty glass; the middle of the lower half is epidermis and dermis.
    assert_eq!(mask.tissue_fraction(200.0, 200.0, 150.0), 0.0);
    let middle = mask.tissue_fraction(1000.0, 2000.0, 150.0);
    assert!(middle > 0.75, "{middle}");
    assert_eq!(mask.tissue_fraction(-5000.0, 0.0, 100.0), 0.0, "outside the mask is not tissue");
    // A mask of a smaller region, at a finer scale and with its own threshold, agrees on the same place.
    let part = Rect { x: 600, y: 1600, width: 800, height: 800 };
    let local = spahgc_slide::TissueMask::new(slide.as_ref(), part).unwrap();
    let close = local.tissue_fraction(1000.0, 2000.0, 150.0);
    assert!((close - middle).abs() < 0.15, "{close} vs {middle}");
    assert_eq!(local.tissue_fraction(200.0, 200.0, 150.0), 0.0, "outside this mask");
}
