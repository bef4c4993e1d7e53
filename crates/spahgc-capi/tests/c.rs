//! The C tests (`tests/capi.c`): compiled with `gcc -Wall -Wextra -Werror` against both
//! `libspahgc.so` and `libspahgc.a`, run on the small real bundle and real slides; the bad-input
//! group runs again under valgrind, which fails on invalid accesses and on definite leaks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where cargo put the libraries this test run built: `<target>/<profile>/deps/`, beside the
/// test binary (`cargo build` copies them up a level, but a workspace test run does not, so the
/// copy there may be stale).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().expect("<target>/<profile>/deps/<binary>").to_path_buf()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The C test program linked against the shared library, then against the static one.
struct Programs {
    shared: PathBuf,
    static_: PathBuf,
}

fn gcc(out: &Path, link: &[&str]) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/capi.c");
    let status = Command::new("gcc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(out)
        .args(link)
        .args(["-lpthread", "-lm"])
        .status()
        .expect("gcc runs");
    assert!(status.success(), "compiling {} failed", source.display());
}

fn programs() -> &'static Programs {
    static PROGRAMS: OnceLock<Programs> = OnceLock::new();
    PROGRAMS.get_or_init(|| {
        let libs = lib_dir();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi");
        // The SONAME is libspahgc.so.0: give the loader that name, as an install would.
        let so_dir = dir.join("lib");
        std::fs::create_dir_all(&so_dir).expect("a scratch directory");
        let soname = so_dir.join("libspahgc.so.0");
        let _ = std::fs::remove_file(&soname);
        std::os::unix::fs::symlink(libs.join("libspahgc.so"), &soname).expect("linking the SONAME");
        let shared = dir.join("capi_shared");
        let rpath = format!("-Wl,-rpath,{}", so_dir.display());
        gcc(&shared, &[&format!("-L{}", libs.display()), "-l:libspahgc.so", &rpath]);
        let static_ = dir.join("capi_static");
        let archive = libs.join("libspahgc.a");
        // The archive, then the native libraries `rustc --print native-static-libs` lists for it.
        let archive = archive.to_string_lossy();
        gcc(&static_, &[&archive, "-lopenslide", "-ldl", "-lgcc_s", "-lutil", "-lrt", "-Wl,-z,noexecstack"]);
        Programs { shared, static_ }
    })
}

/// Runs a C test program (optionally under `wrapper`), failing with its output unless it exits 0.
fn run(wrapper: &[&str], program: &Path, args: &[&str]) {
    let (command, rest) = match wrapper {
        [first, rest @ ..] => (Path::new(first), [rest, &[program.to_str().expect("a UTF-8 path")]].concat()),
        [] => (program, vec![]),
    };
    let output = Command::new(command)
        .args(rest)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", command.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {args:?} failed ({}):\n{text}", program.display(), output.status);
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

/// The test bundle and the small SVS slide, or `None` (after saying why).
fn data() -> Option<(String, String)> {
    let bundle = spahgc_testbundle::small()?;
    let slide = spahgc_testdata::shared("wsi")?.join("cmu_small_region.svs");
    Some((bundle.to_string_lossy().into(), slide.to_string_lossy().into()))
}

/// A copy of the bundle with its network weights damaged.
fn corrupt_copy(bundle: &Path, scratch: &Path) -> PathBuf {
    let copy = scratch.join("corrupt");
    for file in ["manifest.json", "bank.spb", "model/config.json", "model/weights.safetensors", "encoder/manifest.json"]
    {
        std::fs::create_dir_all(copy.join(file).parent().unwrap()).unwrap();
        std::fs::copy(bundle.join(file), copy.join(file)).expect("copying the bundle");
    }
    std::fs::copy(bundle.join("encoder/model.onnx"), copy.join("encoder/model.onnx")).unwrap();
    let weights = copy.join("model/weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"garbage!");
    std::fs::write(&weights, bytes).unwrap();
    copy
}

#[test]
fn bad_inputs_are_refused_with_a_status_and_a_message() {
    let Some((bundle, slide)) = data() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let corrupt = corrupt_copy(Path::new(&bundle), scratch.path());
    let cache = scratch.path().join("cache");
    let args = |cache: &Path| {
        let corrupt = corrupt.to_string_lossy().into_owned();
        let cache = cache.to_string_lossy().into_owned();
        vec!["bad".to_string(), bundle.clone(), corrupt, slide.clone(), env!("CARGO_PKG_VERSION").into(), cache]
    };
    let args = args(&cache);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for program in [&programs().shared, &programs().static_] {
        run(&[], program, &args);
        run(&[], program, &["uaf", &bundle]);
    }
    // Under valgrind: the same calls, the slide's embeddings now in the cache so that the
    // encoder never loads (it would take minutes there).
    if Command::new("valgrind").arg("--version").output().is_err() {
        spahgc_testdata::missing("valgrind is not installed (scripts/setup.sh installs it)");
        return;
    }
    let suppressions =
        format!("--suppressions={}", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valgrind.supp").display());
    let valgrind = [
        "valgrind",
        "--error-exitcode=99",
        "--leak-check=full",
        "--show-leak-kinds=definite",
        "--errors-for-leak-kinds=definite",
        "--quiet",
        &suppressions,
    ];
    run(&valgrind, &programs().shared, &args);
}

/// Eight threads on one engine through the C ABI for `SPAHGC_SOAK_SECONDS` (20 by default; 600
/// for the long run docs/reliability.md reports): every answer equals the sequential one and
/// resident memory stays flat (the program checks both).
#[test]
fn a_soak_of_eight_threads_answers_as_one_thread_does() {
    let Some((bundle, slide)) = data() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache").to_string_lossy().into_owned();
    let seconds = std::env::var("SPAHGC_SOAK_SECONDS").unwrap_or_else(|_| "20".into());
    run(&[], &programs().shared, &["soak", &bundle, &slide, &cache, &seconds]);
}

#[test]
fn a_her2st_region_matches_the_cli() {
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let Some(her2st) = spahgc_testdata::shared("her2st") else { return };
    let section = spahgc_datasets::her2st::load(&her2st, "C3").expect("her2st C3");
    let image = section.image.clone().expect("her2st sections have images");
    let (mpp, region) = (
        section.microns_per_pixel.expect("her2st sections have a resolution").to_string(),
        ["2500", "2500", "3000", "3000"],
    );
    let scratch = tempfile::tempdir().unwrap();
    let cli = lib_dir().parent().expect("<target>/<profile>").join("spahgc");
    let csv = match cli.is_file() {
        true => {
            let out = scratch.path().join("cli");
            let status = Command::new(&cli)
                .args(["predict", "--bundle"])
                .arg(&bundle)
                .arg("--slide")
                .arg(&image)
                .args(["--region", &region.join(","), "--mpp", &mpp, "--keep-background", "--no-cache"])
                .args(["--device", "cpu", "--out"])
                .arg(&out)
                .status()
                .expect("running the CLI");
            assert!(status.success(), "spahgc predict failed");
            out.join("expression.csv").to_string_lossy().into_owned()
        }
        false => {
            spahgc_testdata::missing(&format!("{} is not built (cargo build --release -p spahgc-cli)", cli.display()));
            "-".into()
        }
    };
    let (bundle, image) = (bundle.to_string_lossy(), image.to_string_lossy());
    let args = [&["predict", &bundle, &image, &mpp], &region[..], &[&csv]].concat();
    run(&[], &programs().shared, &args);
    run(&[], &programs().static_, &args);
}

#[test]
fn cancellation_and_threads() {
    let Some((bundle, slide)) = data() else { return };
    for program in [&programs().shared, &programs().static_] {
        run(&[], program, &["cancel", &bundle, &slide]);
        run(&[], program, &["threads", &bundle, &slide]);
    }
}
