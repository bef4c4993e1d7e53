//! `Engine::predict_region` of a real whole-slide image (`wsi/cmu_small_region.svs`, read
//! through OpenSlide) with the region rectangle, µm per pixel (or the slide's own), tissue-only
//! and genes chosen by the input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spahgc_engine::{Region, RegionOptions, Request};
use spahgc_fuzz::Resolution;

#[derive(Arbitrary, Debug)]
struct Asked {
    region: Option<[f64; 4]>,
    resolution: Option<Resolution>,
    tissue_only: bool,
    genes: Option<Vec<u8>>,
}

fn slide() -> &'static PathBuf {
    static SLIDE: OnceLock<PathBuf> = OnceLock::new();
    SLIDE.get_or_init(|| spahgc_fuzz::shared_data("wsi/cmu_small_region.svs"))
}

fuzz_target!(|asked: Asked| {
    let engine = spahgc_fuzz::engine();
    let options = RegionOptions {
        region: asked.region.map(|[x, y, width, height]| Region { x, y, width, height }),
        microns_per_pixel: asked.resolution.map(Resolution::value),
        tissue_only: asked.tissue_only,
    };
    let genes = spahgc_fuzz::gene_names(asked.genes.as_deref(), engine.genes());
    let request = Request { genes: genes.as_deref(), ..Default::default() };
    match engine.predict_region(slide(), &options, &request) {
        Ok(found) => spahgc_fuzz::check_prediction(&found, genes.as_deref(), engine.genes()),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
