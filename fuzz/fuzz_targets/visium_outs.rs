//! A Space Ranger `outs/` directory read by `visium::load`: `spatial/tissue_positions.csv`
//! (header) or `tissue_positions_list.csv` (none), `spatial/scalefactors_json.json`, and the
//! Matrix Market directory `filtered_feature_bc_matrix/` (`barcodes.tsv`, `features.tsv`,
//! `matrix.mtx`). The input is those five files' text, split at
//! `spahgc_fuzz::FILE_SEPARATOR`; positions go to the headed name when they start with
//! `barcode`, and an empty scale-factor file is left out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_datasets::visium;

fuzz_target!(|data: &[u8]| {
    let [positions, scale, barcodes, features, matrix] = spahgc_fuzz::split_files(data, 5)[..] else { unreachable!() };
    let outs = spahgc_fuzz::fresh_dir("visium").join("outs");
    let spatial = outs.join("spatial");
    let positions_name =
        if positions.starts_with(b"barcode") { "tissue_positions.csv" } else { "tissue_positions_list.csv" };
    spahgc_fuzz::write(&spatial.join(positions_name), positions);
    if !scale.is_empty() {
        spahgc_fuzz::write(&spatial.join("scalefactors_json.json"), scale);
    }
    let mtx = outs.join("filtered_feature_bc_matrix");
    spahgc_fuzz::write(&mtx.join("barcodes.tsv"), barcodes);
    spahgc_fuzz::write(&mtx.join("features.tsv"), features);
    spahgc_fuzz::write(&mtx.join("matrix.mtx"), matrix);
    if let Ok(section) = visium::load(&outs) {
        spahgc_fuzz::check_section(&section);
    }
});
