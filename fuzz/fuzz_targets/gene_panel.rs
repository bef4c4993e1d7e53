//! The gene-panel file (`spahgc panel` writes it; users edit it): `GenePanel::read`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_core::GenePanel;

fuzz_target!(|data: &[u8]| {
    let dir = spahgc_fuzz::fresh_dir("panel");
    let path = dir.join("panel.txt");
    spahgc_fuzz::write(&path, data);
    if let Ok(panel) = GenePanel::read(&path) {
        let genes = &panel.genes;
        assert!(!genes.is_empty(), "a panel read without error lists genes");
        assert!(genes.iter().all(|g| !g.is_empty() && !g.contains(char::is_whitespace) && !g.starts_with('#')));
    }
});
