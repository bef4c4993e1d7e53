//! The committed `include/spahgc.h` equals what cbindgen generates from the crate now; run with
//! `SPAHGC_BLESS=1` to rewrite it after changing the API.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::generate_with_config(crate_dir, config).expect("cbindgen generates the header").write(&mut fresh);
    let header = crate_dir.join("../../include/spahgc.h");
    if std::env::var("SPAHGC_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&header, &fresh).expect("writing include/spahgc.h");
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/spahgc.h is stale: run `SPAHGC_BLESS=1 cargo test --release -p spahgc-capi --test header`"
    );
}
