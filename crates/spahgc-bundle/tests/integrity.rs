//! No byte of a bundle can change unnoticed: flipping one byte of any file — the manifest
//! included — makes opening fail with an error that names that file.

use std::path::{Path, PathBuf};

use spahgc_bundle::Bundle;

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
