//! The install script, the pkg-config file, the CMake package, the C++ example and the README's
//! C example, built against an install into a scratch PREFIX.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn succeeds(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn installed_library_builds_the_examples() {
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let Some(wsi) = spahgc_testdata::shared("wsi") else { return };
    let slide = wsi.join("cmu_small_region.svs");
    let scratch = tempfile::tempdir().unwrap();
    let prefix = scratch.path().join("prefix");
    // Cargo already built the library for this test; the script must not wait on cargo's lock.
    let built = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    succeeds(
        Command::new(repo().join("scripts/install-capi.sh"))
            .arg(&prefix)
            .env("SPAHGC_NO_BUILD", "1")
            .env("SPAHGC_LIB_DIR", built),
    );
    let lib = prefix.join("lib");
    assert!(lib.join("libspahgc.so.0").exists() && lib.join("spahgc/onnxruntime/libonnxruntime.so").exists());

    // The README's example, compiled with pkg-config's flags, run from outside the repository.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let example = readme.split("```c\n").nth(1).and_then(|s| s.split("```").next()).expect("a C example");
    let source = scratch.path().join("predict.c");
    std::fs::write(&source, example).unwrap();
    let flags = succeeds(
        Command::new("pkg-config").args(["--cflags", "--libs", "spahgc"]).env("PKG_CONFIG_PATH", lib.join("pkgconfig")),
    );
    let program = scratch.path().join("predict");
    succeeds(
        Command::new("gcc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
            .arg(&source)
            .args(flags.split_whitespace())
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(&program),
    );
    let out = succeeds(Command::new(&program).arg(&bundle).arg(&slide).current_dir(scratch.path()));
    assert!(out.contains("x 250 genes"), "{out}");

    // The C++ example through CMake.
    if Command::new("cmake").arg("--version").output().is_err() {
        spahgc_testdata::missing("cmake is not installed (scripts/setup.sh installs it)");
        return;
    }
    let build = scratch.path().join("build");
    succeeds(
        Command::new("cmake")
            .arg("-S")
            .arg(repo().join("examples/cpp"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
    );
    succeeds(Command::new("cmake").arg("--build").arg(&build));
    let out = succeeds(Command::new(build.join("predict_region")).arg(&bundle).arg(&slide).current_dir(scratch.path()));
    assert!(out.contains("x 250 genes"), "{out}");
}
