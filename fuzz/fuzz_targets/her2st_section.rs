//! A her2st section: the counts TSV (`ST-cnts/<S>.tsv.gz`, gzip-compressed here) and the
//! spot-selection TSV (`ST-spotfiles/<S>_selection.tsv`), read by `her2st::load`. The input is
//! the two files' text, split at `spahgc_fuzz::FILE_SEPARATOR`.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use spahgc_datasets::her2st;

fuzz_target!(|data: &[u8]| {
    let files = spahgc_fuzz::split_files(data, 2);
    let dir = spahgc_fuzz::fresh_dir("her2st");
    let mut counts = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    counts.write_all(files[0]).unwrap();
    spahgc_fuzz::write(&dir.join("ST-cnts/S.tsv.gz"), &counts.finish().unwrap());
    spahgc_fuzz::write(&dir.join("ST-spotfiles/S_selection.tsv"), files[1]);
    spahgc_fuzz::write(&dir.join("ST-imgs/S.jpg"), b"");
    if let Ok(section) = her2st::load(&dir, "S") {
        spahgc_fuzz::check_section(&section);
    }
});
