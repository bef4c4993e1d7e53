//! No byte of a bundle can change unnoticed: flipping one byte of any file — the manifest
//! included — makes opening fail with an error that names that file.

use std::path::{Path, PathBuf};

use sha2::Digest;
use spahgc_bundle::{Bundle, MANIFEST_CHECKSUM};

/// Every file under `dir`, by path relative to it (`/`-separated).
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            found.extend(files(&path, &format!("{name}/")));
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in files(from, "") {
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&file), target).unwrap();
    }
}

#[test]
fn a_flipped_byte_in_any_file_is_refused_naming_the_file() {
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let copy: PathBuf = scratch.path().join("bundle");
    copy_dir(&bundle, &copy);
    Bundle::open(&copy).expect("an unchanged copy opens");

    let names = files(&copy, "");
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        let path = copy.join(name);
        let original = std::fs::read(&path).unwrap();
        for at in [0, original.len() / 3, original.len() / 2, original.len() - 1] {
            let mut flipped = original.clone();
            flipped[at] ^= 0x01;
            std::fs::write(&path, &flipped).unwrap();
            let refused = Bundle::open(&copy).err().map(|e| e.to_string());
            let message = refused.unwrap_or_else(|| panic!("{name}: byte {at} flipped, yet the bundle opened"));
            assert!(message.contains(name.as_str()), "{name}, byte {at}: {message}");
        }
        std::fs::write(&path, &original).unwrap();
    }
    Bundle::open(&copy).expect("the restored copy opens");
}

/// `manifest.json` with `edit` applied and its checksum recomputed, as a careless or hostile
/// writer would leave it.
fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    manifest[MANIFEST_CHECKSUM] = "".into();
    let empty = serde_json::to_string_pretty(&manifest).unwrap();
    let sum = format!("{:x}", sha2::Sha256::digest(empty.as_bytes()));
    let field = |value: &str| format!("\"{MANIFEST_CHECKSUM}\": \"{value}\"");
    std::fs::write(&path, empty.replacen(&field(""), &field(&sum), 1)).unwrap();
}

/// Found while writing the fuzz target of the manifest (`fuzz/fuzz_targets/bundle_manifest.rs`),
/// whose checks it asserts: a manifest with a right checksum could list files outside the
/// bundle (which opening would hash) and a grid pitch the engine divides by.
#[test]
fn a_manifest_with_a_right_checksum_but_unusable_fields_is_refused() {
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let copy: PathBuf = scratch.path().join("bundle");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 6] = [
        ("../bank.spb", |m| m["files"]["../bank.spb"] = m["files"]["bank.spb"].clone()),
        ("/etc/hostname", |m| m["files"]["/etc/hostname"] = "0".repeat(64).into()),
        ("spot_pitch_um", |m| m["grid"]["spot_pitch_um"] = 0.0.into()),
        ("spot_pitch_um", |m| m["grid"]["spot_pitch_um"] = (-200.0).into()),
        ("spot_pitch_um", |m| m["grid"]["spot_pitch_um"] = 1e-320.into()),
        ("no gene", |m| m["genes"] = serde_json::json!([])),
    ];
    for (expected, edit) in cases {
        copy_dir(&bundle, &copy);
        rewrite_manifest(&copy, |_| {});
        Bundle::open(&copy).expect("a manifest rewritten unchanged opens");
        rewrite_manifest(&copy, edit);
        let err = Bundle::open(&copy).err().map(|e| e.to_string()).unwrap_or_else(|| panic!("{expected}: opened"));
        assert!(err.contains(expected) && err.contains("manifest.json"), "{expected}: {err}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
}
